"""Crash safety: builds killed at random moments, and a disk that fills up mid-commit.

Fifty-two builds, two at a time, are SIGKILLed at a random time after a
chosen moment (its start, or a progress line), within how long a build was
seen to run on from that moment on this machine: while Python starts, while a
RUN writes, while its upper dir becomes a layer, while the image is exported
(-o type=oci) or the cache is exported (--cache-to), while the other build
waits for a step this one runs.  After every kill the store must verify with
nothing broken (a dead build's scratch dirs, its lease and the overlays it
left mounted are harmless leftovers).
At the end a repair clears those, and a build runs to completion with the
right content.  A 20 MB tmpfs as the root makes a commit run out of space:
the build fails with a one-line "no space left on device", the store stays
consistent, and once there is room the same build succeeds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from builder.snapshot.mount import mounts_under, umount
from cache.gc import PruneOptions, prune
from cache.verify import verify
from tests.conftest import REPO
from tests.e2e.conftest import Runner

pytestmark = pytest.mark.root

KILLS = 52
DOCKERFILE = (
    "FROM busybox\n"
    "ARG N\n"
    "RUN echo $N > /n && dd if=/dev/urandom of=/big bs=64k count=48 2>/dev/null\n"
    "RUN cat /n > /copy && head -c 300000 /big > /part\n"
    "COPY ctx.txt /ctx.txt\n"
)
# Where a kill lands: a random delay after the build prints one of these (None:
# after the start, while Python starts and plans).  Progress lines come when
# a step starts, so a short delay lands in the RUN, or in turning its upper
# dir into a layer; the summary line comes before -o's export runs.  The
# delay is drawn from up to how long a calibration build ran on after the
# moment (so the kills land inside builds however fast the machine is), and
# the build kind it is measured with.
MOMENTS = {
    "startup": (None, "plain"),
    "run-or-commit": ("#2 [2/4] RUN", "plain"),
    "copy-commit-or-cache-export": ("#4 [4/4] COPY", "cache-to"),
    "export": ("pybuild: ", "export"),
}
# Which moments each kind of build is killed at (picked at random).
KIND_MOMENTS = {
    "plain": ("startup", "run-or-commit", "copy-commit-or-cache-export"),
    "export": ("run-or-commit", "export", "export"),
    "cache-to": ("startup", "run-or-commit", "copy-commit-or-cache-export"),
    "repeat": ("startup", "run-or-commit", "copy-commit-or-cache-export"),
}


class _Build:
    """A build whose progress is watched, to kill it at a chosen moment."""

    def __init__(self, root: Path, context: Path, args: list[str]) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "builder", "build", "--root", str(root), "--progress",
             "plain", *args, str(context)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()
        with self._seen:
            self.lines.append("")  # end of output
            self._seen.notify_all()

    def wait_for(self, prefix: str, timeout: float = 60.0) -> bool:
        """Until a line starting with ``prefix`` appears; False if the output ended first."""
        with self._seen:
            return self._seen.wait_for(
                lambda: any(line.startswith(prefix) for line in self.lines)
                or (self.lines[-1:] == [""]), timeout)

    def kill(self) -> bool:
        """SIGKILL the build if it still runs; whether it did."""
        alive = self.process.poll() is None
        if alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._reader.join()
        if self.process.stderr is not None:
            self.process.stderr.close()
        return alive


def _kind_args(kind: str, value: str, export: Path, cache_dir: Path) -> list[str]:
    args = ["--build-arg", f"N={value}", "-t", "crash:latest"]
    if kind == "export":
        args += ["-o", f"type=oci,dest={export}"]
    elif kind == "cache-to":
        args += ["--cache-to", f"type=local,dest={cache_dir},mode=max"]
    return args


def _runs_on_after(build: _Build, moment: str) -> float:
    """Seconds ``build`` ran on after ``moment``, left to finish."""
    trigger = MOMENTS[moment][0]
    if trigger is not None:
        build.wait_for(trigger)
    since = build.started if trigger is None else time.monotonic()
    build.process.wait()
    build.kill()  # reaps it and ends the reader
    return time.monotonic() - since


def _kill_at(outcomes: dict[int, bool], slot: int, build: _Build, moment: str,
             delay: float) -> None:
    """Kill ``build`` ``delay`` seconds after its ``moment``; whether it was still running."""
    trigger = MOMENTS[moment][0]
    if trigger is not None:
        build.wait_for(trigger)
    time.sleep(delay)
    outcomes[slot] = build.kill()


def _broken(root: Path) -> list[str]:
    return [f"{f.kind} {f.name}: {f.problem}" for f in verify(root) if not f.harmless]


def _whole_or_absent(path: Path) -> None:
    """An export is there complete, or not at all."""
    if not path.exists():
        return
    with tarfile.open(path) as archive:
        names = archive.getnames()
    assert "index.json" in names and "oci-layout" in names, names


@pytest.fixture
def unmount_leftovers(pybuild_root: Path) -> object:
    yield None
    for target in sorted(mounts_under(pybuild_root), key=len, reverse=True):
        umount(target, lazy=True)


def test_builds_killed_at_random_moments_never_corrupt_the_store(
    pybuild: Runner, pybuild_root: Path, tmp_path: Path, unmount_leftovers: object
) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "ctx.txt").write_text("context\n")
    export = tmp_path / "image.tar"
    cache_dir = tmp_path / "cache"
    rng = random.Random(20240611)
    kinds = ["plain", "export", "cache-to", "repeat"]
    windows = {
        moment: max(0.05, 0.9 * _runs_on_after(
            _Build(pybuild_root, context, _kind_args(kind, f"calibrate-{moment}", export,
                                                     cache_dir)), moment))
        for moment, (_, kind) in MOMENTS.items()
    }
    killed: dict[str, int] = dict.fromkeys(MOMENTS, 0)
    # Two builds at a time (so kills also land on a build holding a step's
    # lock that the other waits for), each killed from its own thread.
    for pair in range(KILLS // 2):
        plans = []
        for number in (2 * pair, 2 * pair + 1):
            kind = kinds[number % len(kinds)]
            # "repeat" builds what its partner builds: the two share steps, and
            # kills land among cache hits, the journal and tagging.
            value = str(number - 1 if kind == "repeat" else number)
            args = _kind_args(kind, value, export, cache_dir)
            moment = rng.choice(KIND_MOMENTS[kind])
            plans.append((_Build(pybuild_root, context, args), moment,
                          rng.uniform(0.0, windows[moment])))
        outcomes: dict[int, bool] = {}
        threads = [threading.Thread(target=_kill_at, args=(outcomes, slot, *plan))
                   for slot, plan in enumerate(plans)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for slot, (_, moment, _) in enumerate(plans):
            killed[moment] += outcomes[slot]
        time.sleep(0.05)  # the sandbox's init dies with its parent (PDEATHSIG)
        assert _broken(pybuild_root) == [], f"after kills {2 * pair}, {2 * pair + 1}"
        _whole_or_absent(export)
        if pair % 7 == 6:
            prune(pybuild_root, PruneOptions(all=True))  # also after crashes, prune is safe
            assert _broken(pybuild_root) == []
    print(f"kills by moment: {killed}, windows {windows}")  # shown with pytest -s
    assert sum(killed.values()) >= 40, killed
    assert all(count >= 2 for count in killed.values()), killed

    # What the dead builds left is harmless, and a repair clears all of it.
    repaired = pybuild("cache", "verify", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "BROKEN" not in repaired.stdout
    time.sleep(2.1)  # past the grace for fresh temp files
    pybuild("cache", "verify", "--repair")
    assert mounts_under(pybuild_root) == []
    assert os.listdir(pybuild_root / "tmp") == []
    clean = pybuild("cache", "verify")
    assert clean.returncode == 0 and clean.stdout == "", clean.stdout + clean.stderr

    # The store still builds, and builds right.
    out = tmp_path / "tree"
    final = pybuild("build", "--progress", "plain", "--build-arg", "N=final", "-t",
                    "crash:latest", "-o", f"type=local,dest={out}", str(context))
    assert final.returncode == 0, final.stderr
    assert (out / "n").read_text() == "final\n"
    assert (out / "copy").read_text() == "final\n"
    assert (out / "part").read_bytes() == (out / "big").read_bytes()[:300000]
    assert (out / "ctx.txt").read_text() == "context\n"
    assert _broken(pybuild_root) == []


@pytest.fixture
def small_root(tmp_path: Path, busybox_rootfs: Path) -> object:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount_point)],
                   check=True)
    try:
        yield mount_point
    finally:
        for target in sorted(mounts_under(mount_point), key=len, reverse=True):
            umount(target, lazy=True)


def test_a_full_disk_during_a_commit_fails_cleanly_and_the_next_build_succeeds(
    small_root: Path, busybox_rootfs: Path, tmp_path: Path
) -> None:
    root = small_root / "root"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command, *rest = args
        return subprocess.run([sys.executable, "-m", "builder", command, "--root", str(root),
                               *rest], cwd=REPO, capture_output=True, text=True, timeout=300,
                              check=False)

    assert run("import", str(busybox_rootfs), "-t", "busybox").returncode == 0
    context = tmp_path / "context"
    context.mkdir()
    # 10 MB fits in the RUN's upper dir; its layer needs 10 MB more, which do not.
    (context / "Dockerfile").write_text(
        "FROM busybox\nRUN dd if=/dev/urandom of=/big bs=1M count=10 2>/dev/null\n")
    failed = run("build", "--progress", "plain", "-t", "big", str(context))
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    error_lines = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, failed.stderr
    assert "no space left on device" in error_lines[0].lower()
    assert _broken(root) == []
    # The half-written layer blob went with the failure (the step's upper dir
    # may stay for inspection: a leftover prune clears).
    assert not [name for name in os.listdir(root / "tmp") if name.startswith("blob-")]

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_root)], check=True)
    built = run("build", "--progress", "plain", "-t", "big", str(context))
    assert built.returncode == 0, built.stderr
    assert _broken(root) == []
    inspected = run("inspect", "big")
    assert inspected.returncode == 0, inspected.stderr
    (image,) = json.loads(inspected.stdout)
    assert image["Manifest"]["layers"][-1]["size"] > 10 << 20  # /big, 10 MiB, and its header
