"""Several `pybuild build` processes on one root at once: all succeed, identical steps run once.

Eight builds start together: the same Dockerfile four times and four
different ones, all sharing a first step, while `pybuild prune --all` runs
beside them.  A step that runs writes random bytes, so "ran once" shows in
the images: every image holds the same bytes where the shared step wrote
them, and the four identical builds produce one and the same image.  The
summary lines add up to exactly one run per distinct step, a
sharing=locked cache mount counts every run that used it without losing an
update, and the store verifies clean afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cache.mounts import CacheMounts
from tests.conftest import REPO
from tests.e2e.conftest import Runner, summary_counts

pytestmark = pytest.mark.root

COMMON = "RUN head -c 16 /dev/urandom | od -An -tx1 > /common && sleep 1\n"
# Read, pause, write: without the lock, overlapping runs would lose increments.
COUNTER = ("RUN --mount=type=cache,id=counter,target=/cache,sharing=locked "
           "n=$(cat /cache/n 2>/dev/null || echo 0); sleep 0.3; echo $((n + 1)) > /cache/n\n")


def _dockerfile(variant: str) -> str:
    return (
        "FROM busybox\n"
        + COMMON
        + f"RUN echo {variant} > /variant && head -c 16 /dev/urandom | od -An -tx1 > /mine\n"
        + COUNTER
        + "COPY shared.txt /shared.txt\n"
    )


def _start(root: Path, context: Path, tag: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "builder", "build", "--root", str(root), "--progress", "plain",
         "-t", tag, str(context)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _file_in_image(pybuild: Runner, tag: str, tmp_path: Path, path: str) -> str:
    out = tmp_path / f"out-{tag.replace(':', '-')}"
    result = pybuild("build", "--progress", "quiet", "-o", f"type=local,dest={out}",
                     str(_context(tmp_path, f"show-{tag}", f"FROM {tag}\n")))
    assert result.returncode == 0, result.stderr
    return (out / path.lstrip("/")).read_text()


def _context(tmp_path: Path, name: str, dockerfile: str) -> Path:
    context = tmp_path / name
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    (context / "shared.txt").write_text("shared\n")
    return context


def test_eight_concurrent_builds_share_results_and_leave_a_consistent_store(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path
) -> None:
    same = _context(tmp_path, "same", _dockerfile("same"))
    others = [_context(tmp_path, f"other{n}", _dockerfile(f"other{n}")) for n in range(4)]
    jobs = [(same, f"same:{n}") for n in range(4)] + [
        (context, f"other:{n}") for n, context in enumerate(others)]
    processes = [_start(pybuild_root, context, tag) for context, tag in jobs]
    # A collector running beside them must take nothing they rely on.  (It
    # stops with the first build done: afterwards it could rightly take the
    # counter's cache mount, which the last check reads.)
    pruned = []
    while all(process.poll() is None for process in processes):
        pruned.append(pybuild("prune", "--all"))
        time.sleep(0.2)
    outputs = [process.communicate() for process in processes]
    for (_, tag), process, (_, stderr) in zip(jobs, processes, outputs, strict=True):
        assert process.returncode == 0, f"{tag}: {stderr}"
    assert all(result.returncode == 0 for result in pruned), [r.stderr for r in pruned]

    # Distinct steps: COMMON once; the same Dockerfile's 3 steps after it once;
    # each other Dockerfile's 3 steps once (COPY's parent differs per variant).
    ran = sum(summary_counts(stderr)[0] for _, stderr in outputs)
    assert ran == 1 + 3 + 4 * 3, [stderr.splitlines()[-1] for _, stderr in outputs]

    inspected = json.loads(pybuild("inspect", *(tag for _, tag in jobs)).stdout)
    digests = {entry["Name"]: entry["Digest"] for entry in inspected}
    assert len({digests[f"same:{n}"] for n in range(4)}) == 1
    first_layers = {entry["Config"]["rootfs"]["diff_ids"][1] for entry in inspected}
    assert len(first_layers) == 1  # COMMON's layer: one run, reused by all eight

    common = {_file_in_image(pybuild, tag, tmp_path, "/common") for tag in ("same:0", "other:3")}
    assert len(common) == 1
    mine = {_file_in_image(pybuild, tag, tmp_path, "/mine") for tag in ("same:1", "other:0",
                                                                       "other:1")}
    assert len(mine) == 3  # different steps did run apart

    # Five distinct runs of the counter step, serialised by sharing=locked.
    (counter,) = [entry for entry in CacheMounts(pybuild_root).entries() if entry.id == "counter"]
    assert (counter.path / "data" / "n").read_text().strip() == "5"

    verify = pybuild("cache", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "BROKEN" not in verify.stdout
    assert list((pybuild_root / "locks").iterdir()) == []
    assert [path.name for path in (pybuild_root / "leases").iterdir()] == ["gc.lock"]

    # And the next build is answered from the cache.
    again = pybuild("build", "--progress", "plain", "-t", "same:0", str(same))
    assert again.returncode == 0, again.stderr
    assert summary_counts(again.stderr)[0] == 0
