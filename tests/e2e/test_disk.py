"""`pybuild du`, `prune`, `build --gc-keep-storage` and `--no-cache-filter`, through the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.e2e.conftest import Runner, summary_counts

pytestmark = pytest.mark.root


def _context(tmp_path: Path, name: str, dockerfile: str) -> Path:
    context = tmp_path / name
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    return context


def _digest(stderr: str) -> str:
    match = re.search(r"(sha256:[0-9a-f]{64})\s*$", stderr)
    assert match, stderr
    return match.group(1)


def _layers(pybuild: Runner, name: str) -> list[str]:
    inspected = pybuild("inspect", name)
    assert inspected.returncode == 0, inspected.stderr
    layers: list[str] = json.loads(inspected.stdout)[0]["Config"]["rootfs"]["diff_ids"]
    return layers


def _du(pybuild: Runner) -> dict[str, dict[str, object]]:
    result = pybuild("du", "--format", "json")
    assert result.returncode == 0, result.stderr
    return {item["name"]: item for item in json.loads(result.stdout)["items"]}


def test_du_and_prune_say_what_is_reclaimable_and_why(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path
) -> None:
    tagged = _context(tmp_path, "tagged", "FROM busybox\nRUN echo kept > /kept\n")
    untagged = _context(tmp_path, "untagged",
                        "FROM busybox\nRUN dd if=/dev/zero of=/zeros bs=1k count=300\n")
    assert pybuild("build", "-t", "app", str(tagged)).returncode == 0
    built = pybuild("build", "--progress", "plain", str(untagged))
    assert built.returncode == 0, built.stderr
    image = _digest(built.stderr)

    table = pybuild("du")
    assert table.returncode == 0, table.stderr
    assert "kept: layer of tagged image app:latest" in table.stdout
    assert "kept: tagged image busybox:latest" in table.stdout
    assert "prune: untagged image" in table.stdout
    assert "prune --all: build cache" in table.stdout
    assert re.search(r"^snapshots\s+\S+", table.stdout, re.MULTILINE)
    assert re.search(r"^Reclaimable: \S+ by prune, \S+ by prune --all$", table.stdout,
                     re.MULTILINE)
    items = _du(pybuild)
    assert items[image]["status"] == "dangling"
    zeros_layer = _layers(pybuild, image)[-1]
    assert items[zeros_layer]["status"] == "cache"
    assert int(items[zeros_layer]["size"]) > 300 * 1024  # type: ignore[call-overload]

    dry = pybuild("prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would remove:")
    assert image[:19] in dry.stdout and "untagged image" in dry.stdout
    assert zeros_layer[:19] not in dry.stdout  # build cache: only --all takes it
    assert _du(pybuild).keys() == items.keys()  # a dry run removes nothing

    assert pybuild("prune", "--all", "--filter", "until=1h").stdout.startswith("Total: reclaimed 0B")
    pruned = pybuild("prune", "--all")
    assert pruned.returncode == 0, pruned.stderr
    assert "removed:" in pruned.stdout and "build cache" in pruned.stdout
    after = _du(pybuild)
    assert image not in after and zeros_layer not in after
    assert all(item["status"] == "kept" for item in after.values())
    # The tagged image still builds from cache, the pruned one runs again.
    assert summary_counts(pybuild("build", "--progress", "plain", "-t", "app",
                            str(tagged)).stderr) == (0, 1)
    assert summary_counts(pybuild("build", "--progress", "plain", str(untagged)).stderr) == (1, 0)


def test_bad_prune_flags_are_one_line_errors(pybuild: Runner) -> None:
    for args, message in (
        (["--filter", "label=x"], "--filter 'label=x': pybuild supports only until=DURATION"),
        (["--filter", "until=soon"], "--filter 'until=soon': time: invalid duration"),
        (["--keep-storage", "10XB"], "--keep-storage '10XB': invalid size"),
    ):
        result = pybuild("prune", *args)
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith(f"error: {message}"), result.stderr
        assert "Traceback" not in result.stderr


def test_a_running_build_keeps_the_cache_it_uses_from_a_concurrent_prune(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path
) -> None:
    first = _context(tmp_path, "first", "FROM busybox\nRUN echo shared > /shared\n")
    built = pybuild("build", "--progress", "plain", str(first))
    assert built.returncode == 0, built.stderr
    shared_layer = _layers(pybuild, _digest(built.stderr))[-1]
    second = _context(tmp_path, "second",
                      "FROM busybox\nRUN echo shared > /shared\nRUN sleep 3\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "builder", "build", "--root", str(pybuild_root), "--progress",
         "plain", str(second)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not str(_du(pybuild)[shared_layer]["reason"]).startswith(
                "in use by a running build"):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        pruned = pybuild("prune", "--all")
        assert pruned.returncode == 0, pruned.stderr
        assert shared_layer[:19] not in pruned.stdout
    finally:
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert summary_counts(stderr) == (1, 1)
    assert shared_layer in _layers(pybuild, _digest(stderr))
    verify = pybuild("cache", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_gc_keep_storage_prunes_least_recently_used_cache_after_a_build(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path
) -> None:
    old = _context(tmp_path, "old", "FROM busybox\nRUN dd if=/dev/zero of=/old bs=1k count=500\n")
    built = pybuild("build", "--progress", "plain", str(old))
    assert built.returncode == 0, built.stderr
    old_layer = _layers(pybuild, _digest(built.stderr))[-1]
    new = _context(tmp_path, "new", "FROM busybox\nRUN echo new > /new\n")
    # What was used within a second of a running build's start counts as its own.
    time.sleep(1.5)
    gc = pybuild("build", "--progress", "plain", "--gc-keep-storage", "1", "-t", "new", str(new))
    assert gc.returncode == 0, gc.stderr
    assert re.search(r"^gc: removed \d+ items", gc.stderr, re.MULTILINE), gc.stderr
    items = _du(pybuild)
    assert old_layer not in items
    assert _layers(pybuild, "new")[-1] in items  # what this build made stays
    assert summary_counts(pybuild("build", "--progress", "plain", str(old)).stderr) == (1, 0)

    # The same policy from ROOT/config.json.
    (pybuild_root / "config.json").write_text('{"gc": {"keepStorage": "1KB"}}')
    time.sleep(1.5)
    after = pybuild("build", "--progress", "plain", "-t", "new2", str(new))
    assert after.returncode == 0, after.stderr
    assert "gc: removed" in after.stderr
    (pybuild_root / "config.json").write_text('{"gc": {"keepStorage": "plenty"}}')
    refused = pybuild("build", "--progress", "plain", str(new))
    assert refused.returncode == 1
    assert "config.json: gc.keepStorage: invalid size" in refused.stderr
    bad_flag = pybuild("build", "--gc-keep-storage", "lots", str(new))
    assert bad_flag.returncode == 1
    assert "--gc-keep-storage 'lots': invalid size" in bad_flag.stderr


def test_no_cache_filter_reruns_only_the_named_stages(
    pybuild: Runner, tmp_path: Path
) -> None:
    context = _context(tmp_path, "stages", (
        "FROM busybox AS base\n"
        "RUN echo base > /base\n"
        "FROM base AS app\n"
        "RUN echo app > /app\n"
        "RUN echo app2 > /app2\n"
        "FROM busybox\n"
        "COPY --from=app /app /app\n"
        "RUN echo final > /final\n"
    ))
    assert summary_counts(pybuild("build", "--progress", "plain", "-t", "s", str(context)).stderr) \
        == (5, 0)
    again = pybuild("build", "--progress", "plain", "--no-cache-filter", "app", "-t", "s",
                    str(context))
    assert again.returncode == 0, again.stderr
    assert summary_counts(again.stderr) == (2, 3)  # app's two steps ran, the journal did not answer
    both = pybuild("build", "--progress", "plain", "--no-cache-filter", "base,APP", "-t", "s",
                   str(context))
    assert summary_counts(both.stderr) == (3, 2)
    by_index = pybuild("build", "--progress", "plain", "--no-cache-filter", "2",
                       "--no-cache-filter", "app", str(context))
    assert summary_counts(by_index.stderr) == (4, 1)
    unknown = pybuild("build", "--no-cache-filter", "nope", str(context))
    assert unknown.returncode == 1
    assert "--no-cache-filter nope: no stage of that name" in unknown.stderr
