"""RUN --mount end to end: cache, bind, tmpfs, secret and ssh mounts in real builds.

The Dockerfiles assert what the step sees (``RUN test ...``); the tests
judge what is left behind: the exported tree, the cache directories, and
every byte under the pybuild root for a secret's value.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache.mounts import CacheMounts, mount_hex
from tests.e2e.conftest import Runner, make_context, summary_counts

pytestmark = pytest.mark.root


def _tree(path: Path) -> list[str]:
    return sorted(str(entry.relative_to(path)) for entry in path.rglob("*"))


def test_cache_mount_persists_across_builds_and_stays_out_of_the_image(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path
) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\n"
        "RUN --mount=type=cache,target=/var/cache/app "
        "echo run >> /var/cache/app/log && cat /var/cache/app/log\n"
        "RUN --mount=type=cache,target=/c,id=shaped,uid=1000,gid=50,mode=0710 "
        "test \"$(stat -c '%u %g %a' /c)\" = '1000 50 710'\n"
        "RUN --mount=type=cache,target=/one,id=together echo hi > /one/f\n"
        "RUN --mount=type=cache,target=/two,id=together,ro test \"$(cat /two/f)\" = hi "
        "&& ! touch /two/g\n"
        "RUN --mount=type=cache,target=/three,id=together,source=deep/er touch /three/x\n"
        "RUN test ! -e /var/cache && test ! -e /c && test ! -e /one && test ! -e /two\n"
    ))
    tree = tmp_path / "tree"
    first = pybuild("build", "--progress", "plain", "-o", str(tree), str(context))
    assert first.returncode == 0, first.stderr
    caches = CacheMounts(pybuild_root)
    # The id defaults to the target; the directory follows the shared contract.
    directory = pybuild_root / "cachemounts" / mount_hex("/var/cache/app")
    assert (directory / "id").read_text() == "/var/cache/app"
    assert (directory / "data" / "log").read_text() == "run\n"
    assert {entry.id for entry in caches.entries()} >= {"/var/cache/app", "shaped", "together"}
    assert (caches.path("together") / "data" / "deep" / "er" / "x").is_file()
    assert "var" not in _tree(tree) and "c" not in _tree(tree) and "one" not in _tree(tree)
    # A rebuild that runs the steps again finds what the first one left.
    second = pybuild("build", "--progress", "plain", "--no-cache", str(context))
    assert second.returncode == 0, second.stderr
    assert (directory / "data" / "log").read_text() == "run\nrun\n"
    assert re.search(r"#1 \S+ run\n#1 \S+ run\n", second.stderr), second.stderr
    caches.remove("/var/cache/app")
    assert not directory.exists()


def test_cache_mount_seeded_from_a_stage_and_its_sharing_modes(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path
) -> None:
    context = make_context(tmp_path, (
        "FROM busybox AS deps\n"
        "RUN mkdir -p /seed/sub && echo seeded > /seed/sub/file\n"
        "FROM busybox AS left\n"
        "RUN --mount=type=cache,id=serial,target=/c,sharing=locked "
        "mkdir /c/busy && sleep 1 && rmdir /c/busy && echo left > /left\n"
        "FROM busybox AS right\n"
        "RUN --mount=type=cache,id=serial,target=/c,sharing=locked "
        "mkdir /c/busy && sleep 1 && rmdir /c/busy && echo right > /right\n"
        "FROM busybox AS mine\n"
        "RUN --mount=type=cache,id=own,target=/p,sharing=private "
        "mkdir /p/busy && sleep 1 && rmdir /p/busy && echo mine > /mine\n"
        "FROM busybox AS yours\n"
        "RUN --mount=type=cache,id=own,target=/p,sharing=private "
        "mkdir /p/busy && sleep 1 && rmdir /p/busy && echo yours > /yours\n"
        "FROM busybox\n"
        "COPY --from=left /left /left\n"
        "COPY --from=right /right /right\n"
        "COPY --from=mine /mine /mine\n"
        "COPY --from=yours /yours /yours\n"
        "RUN --mount=type=cache,id=seeded,from=deps,source=/seed,target=/s "
        "test \"$(cat /s/sub/file)\" = seeded\n"
    ))
    result = pybuild("build", "--progress", "plain", str(context))
    assert result.returncode == 0, result.stderr
    seeded = CacheMounts(pybuild_root).path("seeded") / "data"
    assert (seeded / "sub" / "file").read_text() == "seeded\n"
    # Two steps never had one directory at once: a second user of a locked
    # cache waited, one of a private cache got a fresh directory instead.
    assert not (CacheMounts(pybuild_root).path("serial") / "data" / "busy").exists()


def test_bind_mounts_from_stage_image_and_context(
    pybuild: Runner, tmp_path: Path
) -> None:
    context = make_context(tmp_path, (
        "FROM busybox AS src\n"
        "RUN mkdir -p /data && echo fromstage > /data/f && ln -s f /data/rel "
        "&& ln -s /etc/passwd /data/abs\n"
        "FROM busybox\n"
        "WORKDIR /work\n"
        "RUN --mount=type=bind,from=src,source=/data,target=mnt "
        "test \"$(cat /work/mnt/f /work/mnt/rel)\" = \"$(printf 'fromstage\\nfromstage')\" "
        "&& ! touch /work/mnt/x\n"
        # An absolute symlink inside a bind resolves in the step's root, never the host's.
        "RUN --mount=type=bind,from=src,source=/data/abs,target=/abs grep -q '^app:' /abs\n"
        "RUN --mount=type=bind,from=src,source=/data,target=/rw,rw "
        "echo scribble > /rw/f && echo new > /rw/new\n"
        "RUN --mount=type=bind,from=src,source=/data,target=/again "
        "test \"$(cat /again/f)\" = fromstage && test ! -e /again/new\n"
        "RUN --mount=type=bind,from=busybox,source=/bin,target=/img test -x /img/busybox\n"
        "RUN --mount=type=bind,target=/ctx test \"$(cat /ctx/hello)\" = hello "
        "&& test ! -e /ctx/ignored && test \"$(stat -c %u /ctx/hello)\" = 0\n"
        "RUN --mount=type=bind,source=sub,target=/only test \"$(ls /only)\" = inner\n"
        # A source's symlinks resolve inside the context: ".." stops at its root and
        # an absolute link starts there.
        "RUN --mount=type=bind,source=up/sub,target=/u --mount=type=bind,source=abs,target=/a "
        "test \"$(ls /u)\" = inner && test \"$(ls /a)\" = inner\n"
        "RUN test ! -e /work/mnt && test ! -e /abs && test ! -e /ctx && test ! -e /rw "
        "&& test ! -e /u\n"
    ), {"hello": "hello", "ignored": "secret-ish", ".dockerignore": "ignored\n",
        "sub/inner": "x"})
    (context / "up").symlink_to("../../..")
    (context / "abs").symlink_to("/sub")
    tree = tmp_path / "tree"
    result = pybuild("build", "--progress", "plain", "-o", str(tree), str(context))
    assert result.returncode == 0, result.stderr
    assert _tree(tree / "work") == []


def test_bind_of_the_context_is_keyed_by_what_it_reads(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\n"
        "RUN --mount=type=bind,source=app,target=/app cat /app/main > /built\n"
        "RUN echo after > /after\n"
    ), {"app/main": "one", "other": "x", ".dockerignore": "app/ignored\n"})
    assert summary_counts(pybuild("build", "--progress", "plain", str(context)).stderr) == (2, 0)
    (context / "other").write_text("changed outside the bound source")
    (context / "app" / "ignored").write_text("ignored by .dockerignore")
    assert summary_counts(pybuild("build", "--progress", "plain", str(context)).stderr) == (0, 2)
    (context / "app" / "main").write_text("two")
    assert summary_counts(pybuild("build", "--progress", "plain", str(context)).stderr) == (2, 0)


def test_tmpfs_mount_and_nested_targets_leave_nothing_behind(
    pybuild: Runner, tmp_path: Path
) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\n"
        "RUN --mount=type=tmpfs,target=/scratch/deep/er,size=1m "
        "echo x > /scratch/deep/er/f && df /scratch/deep/er | grep -q ' 1024 ' "
        "&& echo kept > /tmp/kept\n"
        "RUN --mount=type=cache,target=/new/parent/cache --mount=type=tmpfs,target=/tmp/t true\n"
    ))
    tree = tmp_path / "tree"
    result = pybuild("build", "--progress", "plain", "-o", str(tree), str(context))
    assert result.returncode == 0, result.stderr
    names = _tree(tree)
    assert "tmp/kept" in names
    assert not [name for name in names if name.split("/")[0] in ("scratch", "new")]
    assert "tmp/t" not in names


def test_secrets_reach_the_step_and_nothing_else(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path
) -> None:
    value = "pybuild-secret-value-7f3a"
    secret_file = tmp_path / "token.txt"
    secret_file.write_text(value)
    digest = hashlib.sha256(value.encode()).hexdigest()  # the Dockerfile must not hold it
    context = make_context(tmp_path, (
        "FROM busybox\n"
        "RUN --mount=type=secret,id=token "
        f"test \"$(sha256sum < /run/secrets/token)\" = '{digest}  -' "
        "&& test \"$(stat -c '%a %u' /run/secrets/token)\" = '400 0' && cat /run/secrets/token\n"
        "RUN --mount=type=secret,id=token,target=/etc/tok,mode=0440,uid=1000,gid=50 "
        "test \"$(stat -c '%a %u %g' /etc/tok)\" = '440 1000 50' && ! echo x > /etc/tok\n"
        "RUN --mount=type=secret,id=fromenv,env=TOKEN,required "
        "test \"${#TOKEN}\" = 17 && test ! -e /run/secrets/fromenv && echo \"$TOKEN\"\n"
        "RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent\n"
        "RUN test ! -e /run && test ! -e /etc/tok\n"
    ))
    result = pybuild(
        "build", "--progress", "plain", "-t", "secretive",
        "--secret", f"id=token,src={secret_file}", "--secret", "id=fromenv,env=PYBUILD_TEST_TOKEN",
        str(context), env={"PYBUILD_TEST_TOKEN": "env-secret-value1"},
    )
    assert result.returncode == 0, result.stderr
    # Printed by the step, but masked in what pybuild shows and keeps.
    assert value not in result.stderr + result.stdout and "****" in result.stderr
    assert "env-secret-value1" not in result.stderr
    # A changed value does not change the key (the value is never hashed).
    secret_file.write_text("another value")
    again = pybuild("build", "--progress", "plain", "--secret", f"id=token,src={secret_file}",
                    "--secret", "id=fromenv,env=PYBUILD_TEST_TOKEN", str(context),
                    env={"PYBUILD_TEST_TOKEN": "other-env"})
    assert again.returncode == 0, again.stderr
    assert summary_counts(again.stderr) == (0, 5)
    inspected = pybuild("inspect", "secretive").stdout + pybuild("history", "secretive").stdout
    assert value not in inspected
    for path in pybuild_root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            assert value.encode() not in data, path
            assert b"env-secret-value1" not in data, path


@pytest.fixture
def agent_socket(tmp_path: Path) -> Iterator[tuple[Path, list[bytes]]]:
    """A unix socket server standing in for ssh-agent: records what each connection sent."""
    path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    server.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                chunks = []
                try:
                    while chunk := connection.recv(4096):
                        chunks.append(chunk)
                except OSError:
                    pass
                received.append(b"".join(chunks))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path, received
    finally:
        stop.set()
        thread.join()
        server.close()


def test_ssh_mount_relays_to_the_agent_socket(
    pybuild: Runner, tmp_path: Path, agent_socket: tuple[Path, list[bytes]]
) -> None:
    path, received = agent_socket
    context = make_context(tmp_path, (
        "FROM busybox\n"
        "RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" "
        "&& test \"$SSH_AUTH_SOCK\" = /run/buildkit/ssh_agent.0 "
        "&& test \"$(stat -c '%a %u' $SSH_AUTH_SOCK)\" = '600 0'\n"
        "RUN --mount=type=ssh,id=work,uid=1000,mode=0660 test -S /run/buildkit/ssh_agent.0 "
        "&& test \"$(stat -c '%a %u' /run/buildkit/ssh_agent.0)\" = '660 1000'\n"
        # busybox's logger falls back to a stream socket at /dev/log: a real
        # connection through the relay, answered by the test's server.
        "RUN --mount=type=ssh,target=/dev/log logger -t pybuild hello-agent\n"
        "RUN test ! -e /run\n"
    ))
    result = pybuild("build", "--progress", "plain", "--ssh", f"default={path}",
                     "--ssh", f"work={path}", str(context))
    assert result.returncode == 0, result.stderr
    assert any(b"hello-agent" in message for message in received), received
    missing = make_context(tmp_path, "FROM busybox\nRUN --mount=type=ssh,required echo no\n")
    refused = pybuild("build", "--progress", "plain", str(missing))
    assert refused.returncode != 0 and "Dockerfile:2" in refused.stderr
    assert "no SSH agent for id default" in refused.stderr


def test_bad_mounts_are_errors_naming_the_line(pybuild: Runner, tmp_path: Path) -> None:
    # The full list of refusals and their messages is in tests/ops/test_mounts.py.
    for mount, message in (
        ("type=volume,target=/v", 'unsupported mount type "volume"'),
        ("type=cache,target=/c,colour=red", "unexpected key 'colour'"),
        ("type=bind,from=7,target=/x", "stage index out of range"),
        ("type=cache", 'invalid mount target "/"'),
        ("type=bind,source=nope,target=/n", '"/nope": not found'),
        ("type=secret,id=needed,required=true", "secret needed not found"),
    ):
        context = make_context(tmp_path, f"FROM busybox\nRUN true\nRUN --mount={mount} true\n")
        result = pybuild("build", "--progress", "plain", str(context))
        assert result.returncode != 0, mount
        assert "Dockerfile:3" in result.stderr and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_a_secret_file_that_is_not_there_is_refused_before_the_build(
    pybuild: Runner, tmp_path: Path
) -> None:
    # As buildx: the file is checked when the flag is read, used by a step or not.
    context = make_context(tmp_path, "FROM busybox\nRUN true\n")
    missing = tmp_path / "nonexistent"
    result = pybuild("build", "--progress", "plain", "--secret", f"id=x,src={missing}",
                     str(context))
    assert result.returncode != 0
    assert f"--secret id=x,src={missing}: {missing}: No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr and "RUN true" not in result.stderr


def test_mount_fields_expand_build_args_and_env(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path
) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\n"
        "ARG DIR=/cache/go\n"
        "ENV ID=gomod\n"
        "RUN --mount=type=cache,target=$DIR,id=${ID}-x touch $DIR/ok\n"
    ))
    result = pybuild("build", "--progress", "plain", str(context))
    assert result.returncode == 0, result.stderr
    assert (CacheMounts(pybuild_root).path("gomod-x") / "data" / "ok").is_file()
