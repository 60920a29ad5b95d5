"""Whole builds through the CLI, on a busybox base: the Dockerfile asserts, the store is judged.

A ``RUN test ...`` line is the check (as BuildKit's own integration tests
do); skopeo and umoci judge what lands in the store.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.image.store import ImageStore
from tests.e2e.conftest import Runner, make_context, summary_counts

pytestmark = pytest.mark.root


def _digest(stderr: str) -> str:
    # The summary line's digest (build-check warnings may follow it).
    match = re.search(r"^pybuild: \d+ steps, .*(sha256:[0-9a-f]{64})$", stderr, re.MULTILINE)
    assert match, stderr
    return match.group(1)


def _mounts_under(path: Path) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if str(path) in line]


def test_single_stage_build_then_fully_cached(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\n"
        "COPY foo /etc/foo\n"
        "RUN cp /etc/foo /etc/bar && test \"$(cat /etc/bar)\" = hello\n"
        "ENV GREETING=hi\n"
        "WORKDIR /app\n"
        'CMD ["sh"]\n'
    ), {"foo": "hello\n"})
    first = pybuild("build", "--progress", "plain", "-t", "app", str(context))
    assert first.returncode == 0, first.stderr
    assert summary_counts(first.stderr) == (3, 0)
    second = pybuild("build", "--progress", "plain", "-t", "app", str(context))
    assert second.returncode == 0, second.stderr
    assert summary_counts(second.stderr) == (0, 3)
    assert "#2 CACHED" in second.stderr
    # A fully cached rebuild writes the very same image (docker keeps the ID too).
    assert _digest(second.stderr) == _digest(first.stderr)
    assert _mounts_under(tmp_path) == []


def test_changed_file_and_build_arg_miss_only_dependent_steps(
    pybuild: Runner, tmp_path: Path
) -> None:
    # Every RUN after an ARG sees it (as BuildKit's docs say), so the ARG
    # comes after the steps that must stay cached.
    dockerfile = (
        "FROM busybox\n"
        "RUN echo independent > /a\n"
        "COPY foo /foo\n"
        "ARG V=1\n"
        "RUN echo $V > /v\n"
    )
    context = make_context(tmp_path, dockerfile, {"foo": "one"})
    assert pybuild("build", "--progress", "plain", str(context)).returncode == 0
    (context / "foo").write_text("two")
    changed = pybuild("build", "--progress", "plain", str(context))
    assert summary_counts(changed.stderr) == (2, 1)
    arg = pybuild("build", "--progress", "plain", "--build-arg", "V=2", str(context))
    assert summary_counts(arg.stderr) == (1, 2)


def test_state_is_visible_in_later_runs(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\n"
        "ENV A=1\n"
        "WORKDIR /work/dir\n"
        "RUN test \"$A\" = 1 && test \"$(pwd)\" = /work/dir\n"
        "USER app\n"
        "RUN test \"$(id -u)\" = 1000 && test \"$(id -G)\" = \"1000 50\"\n"
        "USER root\n"
        'SHELL ["/bin/sh", "-ec"]\n'
        "RUN test \"$0\" = /bin/sh\n"
        "ARG B=two\n"
        "RUN test \"$B\" = two\n"
    ))
    result = pybuild("build", "--progress", "plain", str(context))
    assert result.returncode == 0, result.stderr


def test_multistage_copy_from_and_target(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, (
        "FROM busybox AS base\n"
        "RUN echo built > /etc/bar\n"
        "FROM busybox AS unused\n"
        "RUN exit 1\n"
        "FROM scratch\n"
        "COPY --from=base /etc/bar /bar\n"
    ))
    result = pybuild("build", "--progress", "plain", "-t", "multi", str(context))
    assert result.returncode == 0, result.stderr
    assert "exit 1" not in result.stderr


def test_whiteouts_and_opaque_dirs_reach_the_image(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path
) -> None:
    if shutil.which("umoci") is None:
        pytest.skip("umoci is not installed")
    context = make_context(tmp_path, (
        "FROM busybox\n"
        "RUN mkdir -p /d/sub && echo x > /d/sub/f && echo y > /gone\n"
        "RUN rm /gone && rm -r /d && mkdir /d && echo z > /d/new\n"
    ))
    assert pybuild("build", "-t", "wh", str(context)).returncode == 0
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{pybuild_root}:wh:latest", str(bundle)],
                   check=True, capture_output=True)
    rootfs = bundle / "rootfs"
    assert not (rootfs / "gone").exists()
    assert sorted(path.name for path in (rootfs / "d").iterdir()) == ["new"]
    assert (rootfs / "d" / "new").read_text() == "z\n"


def test_failing_run_reports_exit_code_and_output(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox\nRUN echo about to fail && exit 3\n")
    result = pybuild("build", "--progress", "plain", str(context))
    assert result.returncode == 1
    assert "exit code: 3" in result.stderr
    assert "about to fail" in result.stderr
    assert "Dockerfile:2" in result.stderr
    assert "Traceback" not in result.stderr
    assert _mounts_under(tmp_path) == []


def test_store_is_an_oci_layout_skopeo_reads(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path
) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    context = make_context(tmp_path, (
        "FROM busybox\nLABEL a=b\nEXPOSE 8080\nENTRYPOINT [\"sh\"]\n"
        "RUN echo hi > /hi\n"
    ))
    assert pybuild("build", "-t", "judged:1", str(context)).returncode == 0
    inspected = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci:{pybuild_root}:judged:1"],
        capture_output=True, text=True, check=True,
    )
    config = json.loads(inspected.stdout)
    assert config["config"]["Labels"] == {"a": "b"}
    assert config["config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert config["config"]["Entrypoint"] == ["sh"]
    assert "Cmd" not in config["config"]
    assert len(config["rootfs"]["diff_ids"]) == 2
    history = [entry.get("empty_layer", False) for entry in config["history"]]
    assert history[-4:] == [True, True, True, False]


def test_images_inspect_history_tag_rmi(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox\nRUN touch /x\n")
    assert pybuild("build", "-t", "one", str(context)).returncode == 0
    assert pybuild("tag", "one", "two:latest").returncode == 0
    listing = pybuild("images").stdout
    assert "one:latest" in listing and "two:latest" in listing
    inspected = json.loads(pybuild("inspect", "two").stdout)
    assert inspected[0]["Config"]["rootfs"]["diff_ids"]
    history = pybuild("history", "one").stdout
    assert "RUN /bin/sh -c touch /x" in history
    assert pybuild("rmi", "one").returncode == 0
    assert "one:latest" not in pybuild("images").stdout


def test_dockerfile_from_stdin_and_shorthand(pybuild_root: Path, tmp_path: Path) -> None:
    from tests.e2e.conftest import _run

    context = make_context(tmp_path, "unused\n")
    result = _run(["-t", "stdin", "--root", str(pybuild_root), "-f", "-", str(context)],
                  stdin="FROM busybox\nRUN true\n")
    assert result.returncode == 0, result.stderr


def test_unknown_base_image_is_a_located_error(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM nosuchimage:1\nRUN true\n")
    result = pybuild("build", str(context))
    assert result.returncode == 1
    assert "Dockerfile:1" in result.stderr and "nosuchimage" in result.stderr
    assert "Traceback" not in result.stderr


def test_dockerignore_add_tar_chown_and_onbuild(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path
) -> None:
    import tarfile

    context = make_context(tmp_path, "FROM busybox\n", {
        "keep/a.txt": "a", "keep/secret.key": "no", "notes.md": "no",
        ".dockerignore": "*.md\n**/*.key\n",
    })
    with tarfile.open(context / "payload.tar.gz", "w:gz") as archive:
        for name, text in (("inner/x", "x"), ("inner/y", "y")):
            data = (tmp_path / name.replace("/", "_"))
            data.write_text(text)
            archive.add(data, arcname=name)
    (context / "Dockerfile").write_text(
        "FROM busybox AS parent\n"
        "ONBUILD RUN echo triggered > /onbuild\n"
    )
    assert pybuild("build", "-t", "parent", str(context)).returncode == 0
    (context / "Dockerfile").write_text(
        "FROM parent\n"
        "RUN test \"$(cat /onbuild)\" = triggered\n"
        "COPY . /ctx/\n"
        "RUN test -f /ctx/keep/a.txt && test ! -e /ctx/keep/secret.key"
        " && test ! -e /ctx/notes.md\n"
        "ADD payload.tar.gz /unpacked/\n"
        "RUN test \"$(cat /unpacked/inner/x)\" = x\n"
        "COPY --chown=app:staff keep/a.txt /owned\n"
        "RUN test \"$(stat -c %u:%g /owned)\" = 1000:50\n"
        "USER app\n"
        "WORKDIR /home/app/made\n"
        "RUN test \"$(stat -c %u /home/app/made)\" = 1000\n"
    )
    result = pybuild("build", "--progress", "plain", str(context))
    assert result.returncode == 0, result.stderr


def test_copy_from_an_image_and_load_of_an_oci_archive(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path
) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    context = make_context(tmp_path, "FROM busybox\nRUN echo from-image > /marker\n")
    assert pybuild("build", "-t", "source", str(context)).returncode == 0
    archive = tmp_path / "source.tar"
    subprocess.run(["skopeo", "copy", f"oci:{pybuild_root}:source:latest",
                    f"oci-archive:{archive}:loaded:1"], check=True, capture_output=True)
    loaded = pybuild("load", str(archive))
    assert loaded.returncode == 0, loaded.stderr
    (context / "Dockerfile").write_text(
        "FROM busybox\nCOPY --from=loaded:1 /marker /copied\n"
        "RUN test \"$(cat /copied)\" = from-image\n"
    )
    result = pybuild("build", "--progress", "plain", str(context))
    assert result.returncode == 0, result.stderr


def test_run_gets_home_from_passwd_unless_env_sets_it(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\n"
        "RUN test \"$HOME\" = /root\n"
        "USER app\n"
        "RUN test \"$HOME\" = /home/app\n"
        "ENV HOME=/elsewhere\n"
        "RUN test \"$HOME\" = /elsewhere\n"
    ))
    result = pybuild("build", "--progress", "plain", str(context))
    assert result.returncode == 0, result.stderr


def test_unchanged_rebuild_is_answered_by_the_journal(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path
) -> None:
    context = make_context(tmp_path, "FROM busybox\nCOPY foo /foo\nRUN cat /foo\n", {"foo": "x"})
    import os
    import time as clock

    old = clock.time() - 10
    os.utime(context / "foo", (old, old))
    first = pybuild("build", "--progress", "plain", "-t", "j", str(context))
    assert first.returncode == 0, first.stderr
    assert list((pybuild_root / "journal").iterdir())
    replayed = pybuild("build", "--progress", "plain", "-t", "j", str(context))
    assert summary_counts(replayed.stderr) == (0, 2)
    assert _digest(replayed.stderr) == _digest(first.stderr)
    assert "#2 [2/2] RUN cat /foo\n#2 CACHED" in replayed.stderr
    # --no-cache never takes the journal's word for it.
    forced = pybuild("build", "--progress", "plain", "--no-cache", "-t", "j", str(context))
    assert summary_counts(forced.stderr) == (2, 0)
    # Another tag changes the store's index: no replay, a real (cached) build.
    assert pybuild("tag", "busybox", "other").returncode == 0
    rebuilt = pybuild("build", "--progress", "plain", "-t", "j", str(context))
    assert summary_counts(rebuilt.stderr) == (0, 2)
    assert "DONE" in rebuilt.stderr or "CACHED" in rebuilt.stderr


def test_ctrl_c_stops_a_running_step_and_leaves_nothing_behind(
    pybuild_root: Path, tmp_path: Path
) -> None:
    import os
    import signal
    import sys
    import time as clock

    from tests.conftest import REPO

    marker = f"pybuild-ctrl-c-{os.getpid()}"
    context = make_context(tmp_path, (
        # The shell stays (and keeps the marker in its command line) while
        # sleep runs, because something follows it.
        "FROM busybox AS one\nRUN sleep 60 && echo " + marker + "\n"
        "FROM busybox AS two\nRUN sleep 61 && echo " + marker + "\n"
        "FROM scratch\nCOPY --from=one /etc/passwd /a\nCOPY --from=two /etc/passwd /b\n"
    ))
    process = subprocess.Popen(
        [sys.executable, "-m", "builder", "build", "--root", str(pybuild_root),
         "--progress", "plain", str(context)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = clock.time() + 30
    while clock.time() < deadline:
        running = subprocess.run(["pgrep", "-f", f"sleep 6. && echo {marker}"],
                                 check=False, capture_output=True, text=True).stdout.split()
        if len(running) >= 2:
            break
        clock.sleep(0.1)
    process.send_signal(signal.SIGINT)
    started = clock.time()
    _, stderr = process.communicate(timeout=30)
    assert clock.time() - started < 10, stderr
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    leftover = subprocess.run(["pgrep", "-f", marker], check=False, capture_output=True)
    assert leftover.returncode == 1
    assert _mounts_under(pybuild_root) == []


def test_outputs_iidfile_and_save(pybuild: Runner, tmp_path: Path) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    context = make_context(tmp_path, "FROM busybox\nRUN echo out > /out\n")
    iid = tmp_path / "iid"
    oci_tar = tmp_path / "image.oci.tar"
    tree = tmp_path / "tree"
    result = pybuild("build", "-t", "exported", "--iidfile", str(iid),
                     "-o", f"type=oci,dest={oci_tar},compression=zstd", "-o", str(tree),
                     str(context))
    assert result.returncode == 0, result.stderr
    digest = iid.read_text()
    assert digest.startswith("sha256:")
    inspected = subprocess.run(["skopeo", "inspect", f"oci-archive:{oci_tar}"],
                               capture_output=True, text=True, check=True)
    assert json.loads(inspected.stdout)["Layers"]
    assert (tree / "out").read_text() == "out\n"
    saved = tmp_path / "saved.tar"
    assert pybuild("save", "--format", "docker", "-o", str(saved), "exported").returncode == 0
    docker = subprocess.run(["skopeo", "inspect", f"docker-archive:{saved}"],
                            capture_output=True, text=True, check=True)
    assert "exported" in docker.stdout or json.loads(docker.stdout)["Layers"]
    bad = pybuild("build", "-o", "type=nope,dest=x", str(context))
    assert bad.returncode != 0 and "type" in bad.stderr and "Traceback" not in bad.stderr


def test_build_records_and_rawjson_progress(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox\nCOPY foo /foo\nRUN cat /foo\nENV A=1\n",
                       {"foo": "x"})
    first = pybuild("build", "--progress", "rawjson", str(context))
    assert first.returncode == 0, first.stderr
    events = [json.loads(line) for line in first.stderr.splitlines()]
    kinds = [event["event"] for event in events]
    assert kinds.count("started") == 3 and kinds.count("done") == 3
    assert kinds[-1] == "summary"
    log = next(event for event in events if event["event"] == "log")
    assert log["data"].strip() == "x" and log["line"] == 3
    second = pybuild("build", "--progress", "rawjson", str(context))
    cached = [json.loads(line) for line in second.stderr.splitlines()]
    assert [event["event"] for event in cached].count("cached") == 2
    listing = json.loads(pybuild("builds", "--format", "json").stdout)
    assert [(row["ran"], row["cached"]) for row in listing[:2]] == [(0, 2), (2, 0)]
    shown = json.loads(pybuild("builds", "show", listing[0]["id"][:6], "--format", "json").stdout)
    steps = shown["step_records"]
    assert [step["hit"] for step in steps] == [1, 1, -1]
    assert steps[1]["instruction"] == "RUN cat /foo" and steps[1]["line"] == 3
    assert steps[1]["cache_key"] == json.loads(
        pybuild("builds", "show", listing[1]["id"], "--format", "json").stdout
    )["step_records"][1]["cache_key"]
    table = pybuild("builds").stdout
    assert listing[0]["id"] in table and "2/2" in table


def test_explain_diff_and_compare_name_what_changed(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\nARG LEVEL=1\nCOPY app/ /app/\nRUN echo $LEVEL > /level\n"
    ), {"app/main.txt": "one", "app/other.txt": "same"})
    first = pybuild("build", "--progress", "plain", str(context))
    assert first.returncode == 0, first.stderr
    (context / "app" / "main.txt").write_text("two")
    second = pybuild("build", "--progress", "plain", "--explain", str(context))
    assert second.returncode == 0, second.stderr
    assert "content changed: app/main.txt" in second.stderr
    assert "other.txt" not in second.stderr.split("explain:", 1)[1]
    assert "an earlier step missed" in second.stderr
    third = pybuild("build", "--progress", "plain", "--explain", "--build-arg", "LEVEL=2",
                    str(context))
    assert "build arg changed: LEVEL" in third.stderr
    assert "LEVEL=2" not in third.stderr.split("explain:", 1)[1]  # values never shown
    ids = [row["id"] for row in json.loads(pybuild("builds", "--format", "json").stdout)]
    diff = pybuild("builds", "diff", ids[2], ids[1])
    assert "content changed: app/main.txt" in diff.stdout, diff.stdout
    compare = json.loads(pybuild("builds", "compare", ids[1], ids[0], "--format", "json").stdout)
    states = [(row["first"], row["second"]) for row in compare["steps"]]
    assert states == [("-", "-"), ("RUN", "CACHED"), ("RUN", "RUN")]
    assert compare["totals"][ids[0]]["hits"] == 1
    table = pybuild("builds", "compare", ids[1], ids[0]).stdout
    assert "time saved by the cache" in table


def test_chmod_and_chown_make_source_mode_and_owner_irrelevant(
    pybuild: Runner, tmp_path: Path
) -> None:
    import os

    context = make_context(tmp_path, (
        "FROM busybox\nCOPY --chmod=0644 --chown=app:app f /f\nCOPY g /g\n"
    ), {"f": "same", "g": "same"})
    assert pybuild("build", "--progress", "plain", "--no-cache", str(context)).returncode == 0
    # Checkout noise: modes and owners change, contents do not.
    os.chmod(context / "f", 0o755)
    os.chown(context / "f", 1234, 1234)
    os.chown(context / "g", 1234, 1234)
    noise = pybuild("build", "--progress", "plain", str(context))
    assert summary_counts(noise.stderr) == (0, 2), noise.stderr
    # Without --chmod the mode is part of what COPY produces: a change misses.
    os.chmod(context / "g", 0o700)
    changed = pybuild("build", "--progress", "plain", str(context))
    assert summary_counts(changed.stderr) == (1, 1), changed.stderr


def test_metadata_file_matches_the_schema_and_hides_arg_values(
    pybuild: Runner, tmp_path: Path
) -> None:
    import jsonschema

    from tests.conftest import REPO

    schema = json.loads((REPO / "docs" / "metadata.schema.json").read_text())
    context = make_context(tmp_path, "FROM busybox\nARG TOKEN\nRUN test -n \"$TOKEN\"\nENV A=1\n")
    metadata = tmp_path / "metadata.json"
    result = pybuild("build", "-t", "meta", "--build-arg", "TOKEN=s3cr3t-value",
                     "--metadata-file", str(metadata), str(context))
    assert result.returncode == 0, result.stderr
    text = metadata.read_text()
    document = json.loads(text)
    jsonschema.validate(document, schema)
    assert document["image.name"] == "meta:latest"
    assert document["containerimage.digest"] == _digest(result.stderr)
    assert [step["result"] for step in document["pybuild.build"]["step_records"]] == [
        "-", "run", "-"
    ]
    assert "s3cr3t-value" not in text
    again = pybuild("build", "-t", "meta", "--build-arg", "TOKEN=s3cr3t-value",
                    "--metadata-file", str(metadata), str(context))
    assert again.returncode == 0
    assert json.loads(metadata.read_text())["pybuild.build"]["hit_rate"] == 1.0


def test_an_imported_base_is_unpacked_once_before_the_first_build(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path
) -> None:
    # The fixture imported busybox: its layer is already a snapshot, as buildah keeps
    # a base extracted, and the first build mounts that very snapshot.
    store = ImageStore(pybuild_root)
    (diff_id,) = store.config(store.resolve("busybox:latest")).diff_ids
    snapshot = pybuild_root / "snapshots" / diff_id.removeprefix("sha256:") / "fs"
    assert (snapshot / "bin" / "busybox").is_file()
    before = snapshot.stat().st_ino
    context = make_context(tmp_path, "FROM busybox\nRUN cat /bin/busybox > /copy\n")
    result = pybuild("build", "--progress", "plain", str(context))
    assert result.returncode == 0, result.stderr
    assert snapshot.stat().st_ino == before
