"""RUN --mount pieces without a build: specs, cache directories, the agent relay, heredocs."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from builder.errors import BadMount, CacheError, UsageError
from builder.frontend import commands
from builder.frontend.syntax import Heredoc
from builder.ops.run import _Masker, run_command
from builder.ops.sshagent import agent_relay
from builder.plan.mounts import RunMount, key_fields, parse_mount, plan_mounts
from builder.secrets import SecretSource, parse_secret_flag, parse_ssh_flag, read_secret
from cache.mounts import CacheMounts, mount_hex

ENV = {"DIR": "/cache/go", "NAME": "mod", "EMPTY": ""}


def _parse(value: str, workdir: str = "/") -> RunMount:
    return parse_mount(value, lambda word: _expand(word), workdir)


def _expand(word: str) -> str:
    for name, value in ENV.items():
        word = word.replace("${" + name + "}", value).replace("$" + name, value)
    return word


# -- specs ------------------------------------------------------------------------------


def test_defaults_per_type() -> None:
    assert _parse("target=/src") == RunMount("bind", "/src", readonly=True)
    assert _parse("type=cache,target=/root/.cache") == RunMount(
        "cache", "/root/.cache", id="/root/.cache", readonly=False)
    assert _parse("type=tmpfs,dst=/t,size=64m") == RunMount("tmpfs", "/t", size=64 << 20)
    secret = _parse("type=secret,id=token")
    assert (secret.target, secret.id, secret.readonly, secret.env) == (
        "/run/secrets/token", "token", True, None)
    assert _parse("type=secret,env=TOKEN,id=t").target is None
    assert _parse("type=secret,target=/etc/key").id == "key"
    assert _parse("type=secret,source=a/b").target == "/run/secrets/b"
    ssh = plan_mounts(("type=ssh", "type=ssh,id=work"), _expand, "/")
    assert [(m.id, m.target) for m in ssh] == [
        ("default", "/run/buildkit/ssh_agent.0"), ("work", "/run/buildkit/ssh_agent.1")]


def test_fields_are_expanded_after_splitting_and_keys_are_case_blind() -> None:
    mount = _parse("TYPE=Cache,Target=$DIR,id=${NAME}-x,SHARING=Locked,uid=1000,gid=50,mode=0700")
    assert (mount.type, mount.target, mount.id, mount.sharing) == (
        "cache", "/cache/go", "mod-x", "locked")
    assert (mount.uid, mount.gid, mount.mode) == (1000, 50, 0o700)
    # A quoted CSV field may hold a comma.
    assert _parse('type=bind,"source=a,b",target=/x').source == "a,b"


def test_relative_targets_live_under_the_working_directory() -> None:
    assert _parse("type=cache,target=go/pkg", "/src").target == "/src/go/pkg"
    assert _parse("type=cache,target=go/pkg", "/src").id == "go/pkg"
    assert _parse("type=tmpfs", "/work").target == "/work"  # no target: the workdir itself
    assert _parse("type=bind,target=/a/../b/./c").target == "/b/c"


def test_readonly_flags_and_go_booleans() -> None:
    assert _parse("target=/x,rw").readonly is False
    assert _parse("target=/x,readwrite=true").readonly is False
    assert _parse("type=cache,target=/x,ro").readonly is True
    assert _parse("type=cache,target=/x,readonly=T").readonly is True
    assert _parse("type=secret,id=a,required").required is True
    assert _parse("type=ssh,required=false").required is False


@pytest.mark.parametrize(("value", "message"), [
    ("type=volume,target=/v", 'unsupported mount type "volume"'),
    ("type=cachee,target=/v", "did you mean cache?"),
    ("type=cache,targte=/v", "did you mean target?"),
    ("type=cache,target=/v,sharing=group", 'unsupported sharing value "group"'),
    ("type=bind,target=/v,sharing=shared", "invalid cache sharing set for bind mount"),
    ("type=bind,target=/v,uid=1", 'uid not allowed for "bind" type mounts'),
    ("type=tmpfs,target=/v,mode=0700", 'mode not allowed for "tmpfs" type mounts'),
    ("type=cache,target=/v,mode=0800", "invalid value 0800 for mode"),
    ("type=cache,target=/v,uid=-1", "invalid value -1 for uid"),
    ("type=cache,target=/v,size=1m", "unexpected key 'size' for mount type 'cache'"),
    ("type=tmpfs,target=/v,size=lots", "invalid value for size: lots"),
    ("type=bind,target=/v,required", "unexpected key 'required' for mount type 'bind'"),
    ("type=bind,target=/v,ro=yes", "invalid value for ro: yes"),
    ("type=bind,target=/v,bare", "invalid field 'bare' must be a key=value pair"),
    ("type=cache", 'invalid mount target "/"'),
    ("type=cache,target=$EMPTY", 'invalid mount target "/"'),
    ("type=secret", "invalid secret mount. one of source, target required"),
    ("type=secret,id=a,source=b", "both source and id can't be set"),
    ("type=secret,id=a,from=x", "secret mount should not have a from"),
    ("type=ssh,source=x", "ssh does not support source"),
    ("type=bind,from=${STAGE},target=/x", "'from' doesn't support variable expansion"),
    ('type=bind,"target=/x', "failed to parse csv mounts"),
])
def test_refusals(value: str, message: str) -> None:
    with pytest.raises(BadMount) as caught:
        _parse(value)
    assert message in str(caught.value)


def test_ram_units_are_powers_of_1024() -> None:
    assert _parse("type=tmpfs,target=/t,size=1024").size == 1024
    assert _parse("type=tmpfs,target=/t,size=2k").size == 2048
    assert _parse("type=tmpfs,target=/t,size=1.5GiB").size == 3 << 29
    assert _parse("type=tmpfs,target=/t,size=1 mb").size == 1 << 20


def test_key_fields_name_the_spec_but_never_a_value() -> None:
    fields = key_fields(_parse("type=secret,id=token,env=TOKEN"))
    assert "id=token" in fields and "env=TOKEN" in fields
    assert key_fields(_parse("type=cache,target=/a")) != key_fields(_parse("type=cache,target=/b"))


# -- --secret and --ssh -----------------------------------------------------------------


def test_secret_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("API_TOKEN", "from-env")
    monkeypatch.delenv("NOT_SET", raising=False)
    (tmp_path / "file").write_bytes(b"value\n")
    (tmp_path / "NOT_SET").write_bytes(b"a file named as the id\n")
    assert parse_secret_flag("id=a,src=file") == SecretSource("a", "file", str(tmp_path / "file"))
    assert parse_secret_flag("id=a,env=API_TOKEN") == SecretSource("a", "env", "API_TOKEN")
    assert parse_secret_flag("type=env,id=a,src=API_TOKEN") == SecretSource("a", "env",
                                                                            "API_TOKEN")
    assert parse_secret_flag("id=API_TOKEN") == SecretSource("API_TOKEN", "env", "API_TOKEN")
    assert parse_secret_flag("id=NOT_SET") == SecretSource("NOT_SET", "file",
                                                           str(tmp_path / "NOT_SET"))
    assert read_secret(parse_secret_flag("id=a,src=file")) == b"value\n"
    assert read_secret(parse_secret_flag("id=a,env=API_TOKEN")) == b"from-env"
    assert read_secret(SecretSource("a", "file", str(tmp_path / "missing"))) is None
    for bad in ("src=file", "id=a,colour=red", "id=a,type=vault", "id=a,src=f,env=V", "id"):
        with pytest.raises(UsageError):
            parse_secret_flag(bad)


def test_a_secret_file_must_be_there_and_small_when_the_flag_is_read(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    with pytest.raises(UsageError, match=f"--secret id=x,src={missing}: {missing}: No such file"):
        parse_secret_flag(f"id=x,src={missing}")
    big = tmp_path / "big"
    big.write_bytes(b"x" * (500 * 1024 + 1))
    with pytest.raises(UsageError, match="is larger than 512000 bytes"):
        parse_secret_flag(f"id=x,src={big}")


def test_ssh_flag_wants_a_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "agent.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    try:
        assert parse_ssh_flag(f"default={path}").socket == str(path)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(path))
        assert parse_ssh_flag("work").id == "work"
        (tmp_path / "key").write_text("not a socket")
        with pytest.raises(UsageError, match="not an agent socket"):
            parse_ssh_flag(f"default={tmp_path / 'key'}")
        monkeypatch.delenv("SSH_AUTH_SOCK")
        with pytest.raises(UsageError, match="SSH_AUTH_SOCK"):
            parse_ssh_flag("default")
    finally:
        listener.close()


# -- cache directories ------------------------------------------------------------------


def test_cache_directory_follows_the_shared_layout(tmp_path: Path) -> None:
    caches = CacheMounts(tmp_path)
    seeded: list[Path] = []

    def initialize(data: Path) -> None:
        seeded.append(data)
        (data / "seed").write_text("x")

    directory = caches.directory("/root/.cache", initialize=initialize)
    assert directory == tmp_path / "cachemounts" / mount_hex("/root/.cache")
    assert (directory / "id").read_text() == "/root/.cache"
    assert (directory / "data" / "seed").read_text() == "x"
    assert (directory / "lock").is_file()
    assert caches.directory("/root/.cache", initialize=initialize) == directory
    assert len(seeded) == 1  # only a new directory is initialized
    assert os.listdir(tmp_path / "tmp") == []  # assembled in tmp, renamed into place
    (directory / "data" / "big").write_bytes(b"y" * 100_000)
    before = time.time()
    caches.directory("/root/.cache")
    (entry,) = caches.entries()
    assert (entry.id, entry.path) == ("/root/.cache", directory)
    assert entry.bytes >= 100_000 and entry.last_used >= before - 1
    caches.remove("/root/.cache")
    assert caches.entries() == [] and not directory.exists()
    caches.remove("never-made")  # nothing to do


def test_cache_locks_shared_exclusive_and_private(tmp_path: Path) -> None:
    caches = CacheMounts(tmp_path)
    with caches.use("id", "shared") as first, caches.use("id", "shared") as second:
        assert first == second is not None  # shared users together
        with caches.use("id", "try-exclusive") as private:
            assert private is None  # busy: the caller takes a directory of its own
        with pytest.raises(CacheError, match="in use"):
            caches.remove("id")
    order: list[str] = []
    released = threading.Event()

    def holder() -> None:
        with caches.use("id", "exclusive"):
            order.append("first in")
            released.wait(5)
            order.append("first out")

    thread = threading.Thread(target=holder)
    thread.start()
    while not order:
        time.sleep(0.01)
    waiter = threading.Thread(target=lambda: _enter_and_note(caches, order))
    waiter.start()
    time.sleep(0.2)
    assert order == ["first in"]  # the second locked user waits
    released.set()
    thread.join()
    waiter.join()
    assert order == ["first in", "first out", "second in"]


def _enter_and_note(caches: CacheMounts, order: list[str]) -> None:
    with caches.use("id", "exclusive"):
        order.append("second in")


def test_a_cancelled_wait_gives_up(tmp_path: Path) -> None:
    caches = CacheMounts(tmp_path)
    with (
        caches.use("id", "exclusive"),
        pytest.raises(CacheError, match="cancelled"),
        caches.use("id", "exclusive", cancelled=lambda: True),
    ):
        pass


# -- the agent relay --------------------------------------------------------------------


def test_agent_relay_carries_both_ways_with_the_asked_mode(tmp_path: Path) -> None:
    upstream = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(upstream))
    server.listen()

    def echo() -> None:
        connection, _ = server.accept()
        with connection:
            data = connection.recv(100)
            connection.sendall(b"agent says " + data)

    thread = threading.Thread(target=echo)
    thread.start()
    try:
        with agent_relay(str(upstream), tmp_path / "tmp", mode=0o660, uid=1000, gid=50) as path:
            info = os.stat(path)
            assert stat.S_ISSOCK(info.st_mode)
            assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o660, 1000, 50)
            client = socket.socket(socket.AF_UNIX)
            client.connect(str(path))
            client.sendall(b"hello")
            assert client.recv(100) == b"agent says hello"
            client.close()
        assert not path.exists()
    finally:
        thread.join()
        server.close()


def test_what_a_step_wrote_last_reaches_the_agent_though_the_relay_closes_at_once(
    tmp_path: Path,
) -> None:
    # A write-and-exit client (busybox logger), then the step ends and the relay is
    # closed straight away: the bytes still in the socket buffer must go through.
    upstream = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(upstream))
    server.listen()
    received: list[bytes] = []

    def record() -> None:
        connection, _ = server.accept()
        with connection:
            received.append(b"".join(iter(lambda: connection.recv(4096), b"")))

    thread = threading.Thread(target=record)
    thread.start()
    try:
        for _ in range(20):  # the race was lost now and then, not every time
            received.clear()
            with agent_relay(str(upstream), tmp_path / "tmp", mode=0o600, uid=0, gid=0) as path:
                client = socket.socket(socket.AF_UNIX)
                client.connect(str(path))
                client.sendall(b"last words" * 1000)
                client.close()
            thread.join()
            assert received == [b"last words" * 1000]
            thread = threading.Thread(target=record)
            thread.start()
    finally:
        # The last listener waits for a connection that will not come: give it one.
        with socket.socket(socket.AF_UNIX) as poke:
            poke.connect(str(upstream))
        thread.join()
        server.close()


# -- heredocs and masking ---------------------------------------------------------------


def _run(command: str, *heredocs: Heredoc) -> commands.Run:
    from builder.errors import SourceLocation

    return commands.Run(original="RUN " + command, location=SourceLocation("Dockerfile", 1, 1),
                        command=(command,), prepends_shell=True, heredocs=heredocs, mounts=(),
                        network="default", security="sandbox", devices=(), flags_used=())


SHELL = ("/bin/sh", "-c")


def test_lone_heredoc_runs_its_body_or_its_shebang_file() -> None:
    plain = run_command(_run("<<EOF", Heredoc("EOF", 0, True, False, "echo hi\n")), SHELL)
    assert plain.argv == ("/bin/sh", "-c", "echo hi\n") and plain.script is None
    chomped = run_command(_run("<<-EOF", Heredoc("EOF", 0, True, True, "\techo hi\n")), SHELL)
    assert chomped.argv[-1] == "echo hi\n"
    fd = run_command(_run("3<<EOF", Heredoc("EOF", 3, True, False, "echo fd\n")), SHELL)
    assert fd.argv[-1] == "echo fd\n"
    shebang = run_command(_run("<<'PY'", Heredoc("PY", 0, False, False,
                                                  "#!/usr/bin/env python3\nprint(1)\n")), SHELL)
    assert shebang.argv == ("/bin/sh", "-c", "/dev/pipes/PY")
    assert shebang.script is not None
    assert shebang.script.target == "/dev/pipes/PY" and shebang.script.mode == 0o755
    assert shebang.script.content == b"#!/usr/bin/env python3\nprint(1)\n"


def test_other_heredocs_go_to_the_shell_whole() -> None:
    docs = (Heredoc("A", 0, True, False, "a\n"), Heredoc("B", 0, True, True, "\tb\n"))
    command = run_command(_run("cat <<A >/a && cat <<-B >/b", *docs), SHELL)
    assert command.argv[-1] == "cat <<A >/a && cat <<-B >/b\na\nA\n\tb\nB"
    assert run_command(_run("<<EOF bash", Heredoc("EOF", 0, True, False, "x\n")),
                       SHELL).argv[-1] == "<<EOF bash\nx\nEOF"


def test_masker_hides_values_split_across_chunks() -> None:
    out: list[bytes] = []
    masker = _Masker([b"s3cr3t-value", b""], out.append)
    for chunk in (b"before s3cr", b"3t-va", b"lue after s3cr3t-value", b"\nend s3c"):
        masker.feed(chunk)
    masker.flush()
    assert b"".join(out) == b"before **** after ****\nend s3c"
    passthrough: list[bytes] = []
    plain = _Masker([], passthrough.append)
    plain.feed(b"as is")
    assert passthrough == [b"as is"]
