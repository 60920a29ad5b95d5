"""Peak memory of exports, pushes and pulls as the layer grows: it must stay flat.

    python benchmarks/export_memory.py [--sizes 40,160,640] [--cases gzip,zstd,push,pull,pull-zeros]

For each size, one image with one layer of that many MB (half random bytes,
half text, as benchmarks/export.py makes it) is put in a store; each case
then runs in a fresh child process, which reports its peak RSS when done:
VmHWM from /proc/self/status, the high-water mark of the process's own
memory. (getrusage's ru_maxrss would do, but Linux carries it across exec,
so a child would report its parent's peak if that was higher.)

  baseline    the child importing what the cases import, doing nothing
  gzip, zstd  -o type=oci with that compression (the compressed-layer cache emptied first)
  push        push to Debian's docker-registry on 127.0.0.1 (gzip, caches emptied first)
  pull        pull it back into an empty store
  pull-zeros  pull a layer of zeros (compresses ~1000:1: a MiB read is a GiB out)

push and pull are skipped when /usr/bin/docker-registry is missing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REGISTRY = "/usr/bin/docker-registry"
CASES = ("gzip", "zstd", "push", "pull", "pull-zeros")
_ZERO_PIECE = bytes(1 << 20)


def _child(case: str, root: Path, work: Path, remote: str) -> None:
    """Run one case in this (fresh) process and print its peak RSS in KiB as JSON."""
    from builder.export.exporter import export
    from builder.export.options import parse_output
    from builder.image.store import ImageStore
    from builder.registry.client import RegistryOptions
    from builder.registry.pull import pull
    from builder.registry.push import push

    options = RegistryOptions(config_path=work / "no-docker-config.json")
    store = ImageStore(root)
    started = time.perf_counter()
    if case in ("gzip", "zstd"):
        spec = parse_output(f"type=oci,dest={work / 'out.tar'},compression={case}")
        export(store, store.blobs, store.resolve("bench:1"), names=("bench:1",), spec=spec)
    elif case == "push":
        push(store, store.blobs, "bench:1", remote, options=options)
    elif case in ("pull", "pull-zeros"):
        fresh = ImageStore(work / f"pulled-{case}")
        pull(remote, fresh, fresh.blobs, options=options)
    elif case != "baseline":
        raise SystemExit(f"unknown case {case}")
    seconds = time.perf_counter() - started
    print(json.dumps({"case": case, "peak_kib": _peak_kib(), "seconds": round(seconds, 2)}))


def _peak_kib() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _run_child(case: str, root: Path, work: Path, remote: str = "") -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", case, "--root", str(root), "--work", str(work),
         "--remote", remote],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{case}: {result.stderr.strip()}")
    report: dict[str, float] = json.loads(result.stdout.splitlines()[-1])
    return report


def _zeros_layer(path: Path, size: int) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("zeros")
        info.size = size
        tar.addfile(info, _Zeros(size))  # type: ignore[arg-type]


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def read(self, amount: int = -1) -> bytes:
        amount = self._left if amount < 0 else min(amount, self._left)
        amount = min(amount, len(_ZERO_PIECE))
        self._left -= amount
        return _ZERO_PIECE[:amount]


def _store_with(root: Path, layer: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from export import fresh_store  # type: ignore[import-not-found]

    store, manifest = fresh_store(root, layer)
    store.tag("bench:1", manifest)


@contextmanager
def _registry(directory: Path) -> Iterator[str | None]:
    """A docker-registry on a free loopback port: its host:port (None if not installed)."""
    if not os.path.exists(REGISTRY):
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    storage = directory / "registry"
    storage.mkdir()
    config = directory / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                    break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("docker-registry did not start") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _forget_compressed(root: Path) -> None:
    """Empty the compressed-layer caches, so the next case compresses again."""
    for name in ("compressed-layers.json", "registry-layers.json"):
        (root / name).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="40,160,640", help="layer sizes in MB")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--remote", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, Path(args.root), Path(args.work), args.remote)
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    cases = [case for case in args.cases.split(",") if case]
    sys.path.insert(0, str(REPO / "benchmarks"))
    from export import make_layer

    with tempfile.TemporaryDirectory(prefix="pybuild-bench-memory-") as temp:
        work = Path(temp)
        with _registry(work) as host:
            baseline = _run_child("baseline", work / "empty-store", work)
            print(f"baseline (imports only): peak RSS {baseline['peak_kib'] / 1024:.0f} MiB")
            print(f"{'case':12s} " + " ".join(f"{size:>8d} MB" for size in sizes))
            rows: dict[str, list[str]] = {case: [] for case in cases}
            for size in sizes:
                layer = work / "layer.tar"
                make_layer(layer, size << 20)
                root = work / f"store-{size}"
                _store_with(root, layer)
                zeros_root = work / f"zeros-{size}"
                if "pull-zeros" in cases and host:
                    _zeros_layer(layer, size << 20)
                    _store_with(zeros_root, layer)
                layer.unlink()
                for case in cases:
                    if case in ("push", "pull", "pull-zeros") and host is None:
                        rows[case].append("skipped")
                        continue
                    remote = f"{host}/bench{'-zeros' if case == 'pull-zeros' else ''}-{size}:1"
                    if case == "pull-zeros":
                        _forget_compressed(zeros_root)
                        _run_child("push", zeros_root, work, remote)
                    elif case == "pull" and "push" not in cases:
                        _run_child("push", root, work, remote)
                    _forget_compressed(root)
                    report = _run_child(case, root, work, remote)
                    rows[case].append(
                        f"{report['peak_kib'] / 1024:5.0f} MiB ({report['seconds']:.1f}s)"
                    )
                shutil.rmtree(root)
                shutil.rmtree(zeros_root, ignore_errors=True)
                for pulled in work.glob("pulled-*"):
                    shutil.rmtree(pulled)
            for case in cases:
                print(f"{case:12s} " + " ".join(f"{cell:>11s}" for cell in rows[case]))


if __name__ == "__main__":
    main()
