"""Sharing the cache between machines: --cache-to on one root, --cache-from on an empty one.

Every "machine" is a pybuild root holding the same busybox image (the
second gets it by save/load, as two machines pulling one base would).  The
RUN steps write random bytes, so a second build that has the first build's
bytes did not run them: it reused the first build's layers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.cachexport.document import CONFIG_MEDIA_TYPE
from cache.index import CacheIndex
from cache.records import BuildRecord, BuildRecords
from tests.conftest import REPO
from tests.e2e.conftest import summary_counts
from tests.registry.conftest import LiveRegistry, start_registry

pytestmark = pytest.mark.root

# Two stages: the final one copies from the first, so the first stage's own
# layers are needed by nothing once COPY --from hits (and must not be fetched).
MULTISTAGE = (
    "FROM busybox AS build\n"
    "RUN head -c 16 /dev/urandom | od -An -tx1 > /build-stamp && echo built > /built\n"
    "RUN head -c 64 /dev/urandom > /build-only\n"
    "FROM busybox\n"
    "RUN head -c 16 /dev/urandom | od -An -tx1 > /stamp\n"
    "COPY --from=build /built /built\n"
    "ENV GREETING=hi\n"
    "WORKDIR /app\n"
    "RUN cp /stamp /app/copy\n"
)


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command, *rest = args
    return subprocess.run(
        [sys.executable, "-m", "builder", command, "--root", str(root), *rest],
        capture_output=True, text=True, cwd=REPO, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stderr


def _digest(stderr: str) -> str:
    match = re.search(r"^pybuild: \d+ steps, .*(sha256:[0-9a-f]{64})$", stderr, re.MULTILINE)
    assert match, stderr
    return match.group(1)


def _context(tmp_path: Path, name: str, dockerfile: str) -> Path:
    context = tmp_path / name
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    return context


def _last_build(root: Path) -> BuildRecord:
    records = BuildRecords(root / "cache.db")
    latest = records.recent(1)[0]
    record = records.get(latest.id)
    assert record is not None
    return record


@pytest.fixture
def empty_root(pybuild_root: Path, tmp_path: Path) -> Path:
    """A second root with nothing but the same busybox image as the first."""
    archive = tmp_path / "busybox.tar"
    _ok(_cli(pybuild_root, "save", "busybox", "-o", str(archive)))
    second = tmp_path / "second-root"
    _ok(_cli(second, "load", "-i", str(archive)))
    return second


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRegistry]:
    yield from start_registry(tmp_path_factory.mktemp("cache-registry"))


def _build(root: Path, context: Path, *flags: str, out: Path | None = None) -> str:
    output = ("-o", f"type=local,dest={out}") if out is not None else ()
    return _ok(_cli(root, "build", "--progress", "plain", *flags, *output, str(context)))


def _steps_by_stage(record: BuildRecord) -> dict[str, list[tuple[int, str]]]:
    """Per stage: (hit, source) of each keyed step."""
    stages: dict[str, list[tuple[int, str]]] = {}
    for step in record.step_records:
        if step.hit != -1:
            stages.setdefault(step.stage, []).append((step.hit, step.source))
    return stages


def _layer_of(root: Path, record: BuildRecord, instruction_start: str) -> str:
    """The diff_id of the layer the step starting with ``instruction_start`` made."""
    (step,) = [s for s in record.step_records if s.instruction.startswith(instruction_start)]
    entry = CacheIndex(root / "cache.db").lookup(step.cache_key)
    assert entry is not None and entry.diff_id
    return entry.diff_id


def _has_blob(root: Path, digest: str) -> bool:
    return (root / "blobs" / "sha256" / digest.removeprefix("sha256:")).is_file()


def test_local_cache_max_gives_an_empty_root_every_hit_without_running(
    pybuild_root: Path, empty_root: Path, tmp_path: Path
) -> None:
    context = _context(tmp_path, "context", MULTISTAGE)
    cache = tmp_path / "cache"
    first = _build(pybuild_root, context, "--cache-to", f"type=local,dest={cache},mode=max",
                   out=tmp_path / "out1")
    assert summary_counts(first) == (6, 0)
    layout = json.loads((cache / "index.json").read_text())
    assert (cache / "oci-layout").is_file() and len(layout["manifests"]) == 1

    second = _build(empty_root, context, "--cache-from", f"type=local,src={cache}",
                    out=tmp_path / "out2")
    assert summary_counts(second) == (0, 6)
    # The same layers and the same history: the very same image.
    assert _digest(second) == _digest(first)
    assert (tmp_path / "out2" / "stamp").read_text() == (tmp_path / "out1" / "stamp").read_text()
    assert (tmp_path / "out2/app/copy").read_text() == (tmp_path / "out1/stamp").read_text()
    record = _last_build(empty_root)
    assert record.cached == 6 and record.ran == 0
    assert {step.source for step in record.step_records if step.hit == 1} == {
        f"import:{cache}"
    }
    # Lazy: the build stage's own layers are read by nothing (COPY --from hit).
    first_record = _last_build(pybuild_root)
    for step in ("RUN head -c 16 /dev/urandom | od -An -tx1 > /build-stamp",
                 "RUN head -c 64"):
        assert not _has_blob(empty_root, _layer_of(pybuild_root, first_record, step))
    assert _has_blob(empty_root, _layer_of(pybuild_root, first_record,
                                           "RUN head -c 16 /dev/urandom | od -An -tx1 > /stamp"))


def test_registry_cache_min_and_max(
    pybuild_root: Path, empty_root: Path, tmp_path: Path, registry: LiveRegistry
) -> None:
    context = _context(tmp_path, "context", MULTISTAGE)
    min_ref, max_ref = f"{registry.host}/cx/app:min", f"{registry.host}/cx/app:max"
    first = _build(pybuild_root, context, "--cache-to", f"type=registry,ref={min_ref}",
                   "--cache-to", f"type=registry,ref={max_ref},mode=max", out=tmp_path / "out1")
    assert summary_counts(first) == (6, 0)
    # The cache is an OCI manifest with pybuild's own config type.
    manifests = registry.storage / "docker/registry/v2/repositories/cx/app/_manifests/tags"
    assert {path.name for path in manifests.iterdir()} == {"min", "max"}

    # min: only the final stage's steps travel; the build stage runs again.
    second = _build(empty_root, context, "--cache-from", f"type=registry,ref={min_ref}",
                    out=tmp_path / "out2")
    assert summary_counts(second) == (2, 4)
    stages = _steps_by_stage(_last_build(empty_root))
    assert stages["build"] == [(0, ""), (0, "")]
    assert stages["1"] == [(1, f"import:{min_ref}")] * 4
    assert (tmp_path / "out2/stamp").read_text() == (tmp_path / "out1/stamp").read_text()

    # max, on a third empty root: everything travels.
    third_root = tmp_path / "third-root"
    _ok(_cli(third_root, "load", "-i", str(tmp_path / "busybox.tar")))
    third = _build(third_root, context, "--cache-from", max_ref, out=tmp_path / "out3")
    assert summary_counts(third) == (0, 6)
    assert _digest(third) == _digest(first)
    assert (tmp_path / "out3/stamp").read_text() == (tmp_path / "out1/stamp").read_text()
    assert all(step.source == f"import:{max_ref}"
               for step in _last_build(third_root).step_records if step.hit == 1)


def test_inline_cache_through_a_registry_and_a_loaded_image(
    pybuild_root: Path, empty_root: Path, tmp_path: Path, registry: LiveRegistry
) -> None:
    dockerfile = (
        "FROM busybox\n"
        "RUN head -c 16 /dev/urandom | od -An -tx1 > /stamp\n"
        "RUN cp /stamp /copy\n"
    )
    context = _context(tmp_path, "context", dockerfile)
    image = f"{registry.host}/cx/inline:1"
    first = _build(pybuild_root, context, "--cache-to", "type=inline", "-t", image, "--push",
                   out=tmp_path / "out1")
    assert summary_counts(first) == (2, 0)
    config = json.loads(_ok_stdout(_cli(pybuild_root, "inspect", image)))[0]["Config"]
    assert config["pybuild.cache.v1"]["mode"] == "min"
    assert len(config["pybuild.cache.v1"]["records"]) == 2

    second = _build(empty_root, context, "--cache-from", f"type=registry,ref={image}",
                    "--cache-to", "type=inline", out=tmp_path / "out2")
    assert summary_counts(second) == (0, 2)
    assert _digest(second) == _digest(first)  # the same records, in the same config
    assert (tmp_path / "out2/copy").read_text() == (tmp_path / "out1/stamp").read_text()

    # A local image with an inline cache (saved, then loaded elsewhere) serves too.
    archive = tmp_path / "app.tar"
    _ok(_cli(pybuild_root, "save", image, "-o", str(archive)))
    third_root = tmp_path / "third-root"
    _ok(_cli(third_root, "load", "-i", str(tmp_path / "busybox.tar")))
    _ok(_cli(third_root, "load", "-i", str(archive)))
    third = _build(third_root, context, "--cache-from", f"type=image,ref={image}",
                   out=tmp_path / "out3")
    assert summary_counts(third) == (0, 2)
    assert (tmp_path / "out3/copy").read_text() == (tmp_path / "out1/stamp").read_text()


def _ok_stdout(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cache_from_is_a_per_step_fallback_chain(
    pybuild_root: Path, empty_root: Path, tmp_path: Path
) -> None:
    short = "FROM busybox\nRUN head -c 16 /dev/urandom | od -An -tx1 > /a\n"
    longer = short + "RUN head -c 16 /dev/urandom | od -An -tx1 > /b\n"
    cache_a, cache_b = tmp_path / "cache-a", tmp_path / "cache-b"
    _build(pybuild_root, _context(tmp_path, "short", short),
           "--cache-to", f"type=local,dest={cache_a}")
    _build(pybuild_root, _context(tmp_path, "longer", longer),
           "--cache-to", f"type=local,dest={cache_b}", out=tmp_path / "out1")

    missing = tmp_path / "no-cache-here"
    second = _build(empty_root, _context(tmp_path, "again", longer),
                    "--cache-from", f"type=local,src={missing}",
                    "--cache-from", f"type=local,src={cache_a}",
                    "--cache-from", f"type=local,src={cache_b}", out=tmp_path / "out2")
    assert f"warning: --cache-from {missing}" in second  # a missing cache is skipped
    assert summary_counts(second) == (0, 2)
    record = _last_build(empty_root)
    # Each step from the first cache in the list that has it.
    assert [step.source for step in record.step_records] == [
        f"import:{cache_a}", f"import:{cache_b}"
    ]
    for name in ("a", "b"):
        assert (tmp_path / "out2" / name).read_text() == (tmp_path / "out1" / name).read_text()


def test_builds_with_cache_flags_are_not_answered_by_the_journal(
    pybuild_root: Path, empty_root: Path, tmp_path: Path
) -> None:
    context = _context(tmp_path, "context", "FROM busybox\nRUN echo hi > /hi\n")
    cache = tmp_path / "cache"
    for _ in range(2):
        _build(pybuild_root, context, "--cache-to", f"type=local,dest={cache}")
        assert _last_build(pybuild_root).step_records[0].source in ("", "local")
    # A second identical build ran the engine (the journal would record no source)
    # and exported again: the cache is there even after deleting it in between.
    assert _last_build(pybuild_root).step_records[0].source == "local"
    (cache / "index.json").unlink()
    _build(pybuild_root, context, "--cache-to", f"type=local,dest={cache}")
    assert (cache / "index.json").is_file()
    for _ in range(2):
        _build(empty_root, context, "--cache-from", f"type=local,src={cache}")
    assert _last_build(empty_root).step_records[0].source == "local"


def test_cache_mounts_travel_with_cache_mounts_true(
    pybuild_root: Path, empty_root: Path, tmp_path: Path, registry: LiveRegistry
) -> None:
    writer = _context(tmp_path, "writer", (
        "FROM busybox\n"
        "RUN --mount=type=cache,id=cx-mount,target=/cache "
        "head -c 16 /dev/urandom | od -An -tx1 > /cache/value && cp /cache/value /seen\n"
    ))
    ref = f"{registry.host}/cx/mounts:cache"
    _build(pybuild_root, writer, "--cache-to", f"type=registry,ref={ref},cache-mounts=true",
           out=tmp_path / "out1")
    reader = _context(tmp_path, "reader", (
        "FROM busybox\n"
        "RUN --mount=type=cache,id=cx-mount,target=/cache cp /cache/value /restored\n"
    ))
    second = _build(empty_root, reader, "--cache-from", ref, out=tmp_path / "out2")
    assert summary_counts(second) == (1, 0)
    assert (tmp_path / "out2/restored").read_text() == (tmp_path / "out1/seen").read_text()


def test_bad_cache_flags_are_one_line_errors(pybuild_root: Path, tmp_path: Path) -> None:
    context = _context(tmp_path, "context", "FROM busybox\n")
    for flag, value, message in (
        ("--cache-to", "type=local", "dest is required"),
        ("--cache-to", "type=inline,mode=max", "only mode=min"),
        ("--cache-from", "type=local,dest=x", "unknown key 'dest'"),
        ("--cache-to", "type=s3,bucket=x", "type=s3: not supported"),
    ):
        result = _cli(pybuild_root, "build", flag, value, str(context))
        assert result.returncode == 1
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert "Traceback" not in result.stderr
    unreachable = _cli(pybuild_root, "build", "--cache-to", f"type=local,dest={context}/Dockerfile",
                       str(context))
    assert unreachable.returncode == 1 and "--cache-to" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_registry_cache_manifest_has_pybuild_config_type(
    pybuild_root: Path, tmp_path: Path, registry: LiveRegistry
) -> None:
    import urllib.request

    context = _context(tmp_path, "context", "FROM busybox\nRUN echo x > /x\n")
    ref = f"{registry.host}/cx/shape:latest"
    _build(pybuild_root, context, "--cache-to", f"type=registry,ref={ref}")
    request = urllib.request.Request(
        f"http://{registry.host}/v2/cx/shape/manifests/latest",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        manifest = json.loads(response.read())
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+gzip"
    ]


def test_a_miss_after_imported_hits_runs_on_their_fetched_layers(
    pybuild_root: Path, empty_root: Path, tmp_path: Path
) -> None:
    first_file = "FROM busybox\nRUN head -c 16 /dev/urandom | od -An -tx1 > /a\n"
    cache = tmp_path / "cache"
    _build(pybuild_root, _context(tmp_path, "first", first_file + "RUN cp /a /b\n"),
           "--cache-to", f"type=local,dest={cache}", out=tmp_path / "out1")
    changed = _context(tmp_path, "changed", first_file + "RUN cp /a /c\n")
    second = _build(empty_root, changed, "--cache-from", f"type=local,src={cache}",
                    out=tmp_path / "out2")
    assert summary_counts(second) == (1, 1)
    assert (tmp_path / "out2/c").read_text() == (tmp_path / "out1/a").read_text()
