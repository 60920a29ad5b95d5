"""Time whole builds as whole processes: pybuild against buildah, cold and fully cached.

    python benchmarks/build.py [--runs N] [--pybuild PATH] [--workloads simple,filetransfer]

Workloads (after moby/buildkit-bench, on a local busybox base):
  simple        FROM busybox; COPY foo /etc/foo; RUN cp /etc/foo /etc/bar
  filetransfer  WORKDIR /src; COPY . .; RUN du -sh . — 5000 files of 123 B plus
                files of 1, 10, 50 and 100 MiB (162 MiB)

For each: a cold build (empty root) and a fully cached rebuild, medians of N
runs.  When buildah is installed, the same builds with
``buildah bud --layers --isolation chroot --storage-driver overlay`` on a
private storage root, and the ratio.  Needs root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_busybox_rootfs(root: Path) -> None:
    for sub in ("bin", "etc", "tmp", "root"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")


def make_simple(context: Path) -> None:
    context.mkdir(parents=True)
    (context / "foo").write_text("foo\n")
    (context / "Dockerfile").write_text(
        "FROM busybox\nCOPY foo /etc/foo\nRUN cp /etc/foo /etc/bar\n"
    )


def make_filetransfer(context: Path) -> None:
    context.mkdir(parents=True)
    small = context / "small"
    small.mkdir()
    payload = b"x" * 123
    for index in range(5000):
        (small / f"f{index:05d}").write_bytes(payload)
    for mib in (1, 10, 50, 100):
        with open(context / f"big-{mib}", "wb") as handle:
            chunk = os.urandom(1 << 20)
            handle.writelines(chunk for _ in range(mib))
    (context / "Dockerfile").write_text("FROM busybox\nWORKDIR /src\nCOPY . .\nRUN du -sh .\n")


WORKLOADS: dict[str, Callable[[Path], None]] = {
    "simple": make_simple,
    "filetransfer": make_filetransfer,
}


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{result.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


class Pybuild:
    name = "pybuild"

    def __init__(self, executable: list[str], base: Path) -> None:
        self.executable = executable
        self.base = base

    def fresh_root(self, work: Path) -> Path:
        root = work / "pybuild-root"
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run([*self.executable, "import", str(self.base), "-t", "busybox",
                        "--root", str(root)], check=True, capture_output=True)
        return root

    def build(self, root: Path, context: Path) -> float:
        return timed([*self.executable, "build", "--root", str(root), "--progress", "quiet",
                      "-t", "bench", str(context)])


class Buildah:
    name = "buildah"

    def __init__(self, base: Path) -> None:
        self.base = base

    def _args(self, root: Path) -> list[str]:
        return ["buildah", "--root", str(root / "storage"), "--runroot", str(root / "run"),
                "--storage-driver", "overlay"]

    def fresh_root(self, work: Path) -> Path:
        root = work / "buildah-root"
        if root.exists():
            subprocess.run([*self._args(root), "rm", "--all"], capture_output=True, check=False)
            subprocess.run(["umount", "-R", str(root)], capture_output=True, check=False)
            shutil.rmtree(root, ignore_errors=True)
        tar = work / "busybox.tar"
        if not tar.exists():
            subprocess.run(["tar", "-C", str(self.base), "-cf", str(tar), "."], check=True)
        container = subprocess.run([*self._args(root), "from", "scratch"], capture_output=True,
                                   text=True, check=True).stdout.strip()
        subprocess.run([*self._args(root), "add", container, str(tar), "/"], check=True,
                       capture_output=True)
        subprocess.run([*self._args(root), "commit", "--rm", container, "busybox"], check=True,
                       capture_output=True)
        return root

    def build(self, root: Path, context: Path) -> float:
        return timed([*self._args(root), "bud", "--layers", "--isolation", "chroot",
                      "--quiet", "-t", "bench", str(context)])


def measure(builder: Pybuild | Buildah, work: Path, context: Path, runs: int
            ) -> tuple[list[float], list[float]]:
    cold, cached = [], []
    for _ in range(runs):
        root = builder.fresh_root(work)
        cold.append(builder.build(root, context))
        cached.append(builder.build(root, context))
    return cold, cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pybuild", help="the pybuild executable (default: python -m builder)")
    parser.add_argument("--workloads", default="simple,filetransfer")
    parser.add_argument("--no-buildah", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("builds need root")
    executable = [args.pybuild] if args.pybuild else [sys.executable, "-m", "builder"]
    with tempfile.TemporaryDirectory(prefix="pybuild-bench-", dir="/var/tmp") as scratch:
        work = Path(scratch)
        base = work / "busybox"
        make_busybox_rootfs(base)
        builders: list[Pybuild | Buildah] = [Pybuild(executable, base)]
        if shutil.which("buildah") and not args.no_buildah:
            builders.append(Buildah(base))
        print(f"{'workload':<14}{'builder':<9}{'cold median':>13}{'cached median':>15}")
        for name in args.workloads.split(","):
            context = work / f"context-{name}"
            WORKLOADS[name](context)
            medians: dict[str, tuple[float, float]] = {}
            for builder in builders:
                cold, cached = measure(builder, work, context, args.runs)
                medians[builder.name] = (statistics.median(cold), statistics.median(cached))
                print(f"{name:<14}{builder.name:<9}{medians[builder.name][0]:>12.3f}s"
                      f"{medians[builder.name][1]:>14.3f}s", flush=True)
            if "buildah" in medians:
                ours, theirs = medians["pybuild"], medians["buildah"]
                print(f"{name:<14}{'ratio':<9}{ours[0] / theirs[0]:>12.2f}x"
                      f"{ours[1] / theirs[1]:>14.2f}x   (pybuild / buildah)", flush=True)


if __name__ == "__main__":
    main()
