"""Layer compression throughput of an export against pigz and zstd on the same data.

    python benchmarks/export.py [--size-mb 160] [--runs 3]

Builds a store with one layer of SIZE MB (half random bytes, half text, in
4 MiB stretches), then times exporting it as type=oci with compression=gzip
(level 6) and compression=zstd (level 3) — a fresh store each run, so the
compressed-layer cache never answers — and ``pigz -6`` and ``zstd -3 -T0``
over the same tar. Reports MB/s of uncompressed input (medians) and sizes.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from builder.export.exporter import export
from builder.export.options import parse_output
from builder.image import oci
from builder.image.config import ImageConfig
from builder.image.store import ImageStore

_STRETCH = 4 << 20


def make_layer(path: Path, size: int) -> None:
    rng = random.Random(1)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"layer", b"export", b"image", b"\n"]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for number in range(size // _STRETCH):
            if number % 2:
                data = rng.randbytes(_STRETCH)
            else:
                data = b" ".join(rng.choices(words, k=_STRETCH // 5))[:_STRETCH]
            info = tarfile.TarInfo(f"data/{number:04d}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def fresh_store(root: Path, layer: Path) -> tuple[ImageStore, oci.Descriptor]:
    store = ImageStore(root)
    with open(layer, "rb") as source, store.blobs.writer() as writer:
        shutil.copyfileobj(source, writer, 1 << 20)  # type: ignore[misc]
        ref = writer.commit()
    config = ImageConfig(architecture="amd64", os="linux", diff_ids=(ref.digest,))
    manifest = store.put_image(config, [oci.Descriptor(oci.OCI_LAYER, ref.digest, ref.size)])
    return store, manifest


def time_export(work: Path, layer: Path, compression: str) -> tuple[float, int]:
    root = work / "root"
    shutil.rmtree(root, ignore_errors=True)
    store, manifest = fresh_store(root, layer)
    out = work / "out.tar"
    spec = parse_output(f"type=oci,dest={out},compression={compression}")
    start = time.perf_counter()
    export(store, store.blobs, manifest, names=("bench:1",), spec=spec)
    elapsed = time.perf_counter() - start
    return elapsed, out.stat().st_size


def time_tool(argv: list[str], layer: Path, work: Path) -> tuple[float, int]:
    out = work / "tool.out"
    with open(layer, "rb") as source, open(out, "wb") as sink:
        start = time.perf_counter()
        subprocess.run(argv, stdin=source, stdout=sink, check=True)
        elapsed = time.perf_counter() - start
    return elapsed, out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=160)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pybuild-bench-export-") as temp:
        work = Path(temp)
        layer = work / "layer.tar"
        make_layer(layer, args.size_mb << 20)
        size = layer.stat().st_size
        print(f"layer: {size / 1e6:.0f} MB, {os.cpu_count()} CPUs")
        cases: list[tuple[str, object]] = [
            ("pybuild export gzip -6", lambda: time_export(work, layer, "gzip")),
            ("pybuild export zstd -3", lambda: time_export(work, layer, "zstd")),
            ("pybuild export uncompressed", lambda: time_export(work, layer, "uncompressed")),
        ]
        for name, argv in (
            ("pigz -6", ["pigz", "-6", "-c"]),
            ("zstd -3 -T0", ["zstd", "-3", "-T0", "-c", "-q"]),
        ):
            if shutil.which(argv[0]) is None:
                print(f"{name}: not installed, skipped")
                continue
            cases.append((name, lambda argv=argv: time_tool(argv, layer, work)))
        for name, run in cases:
            times = []
            out_size = 0
            for _ in range(args.runs):
                elapsed, out_size = run()  # type: ignore[operator]
                times.append(elapsed)
            median = statistics.median(times)
            print(
                f"{name:30s} {size / 1e6 / median:8.1f} MB/s  {median:6.2f} s  "
                f"output {out_size / 1e6:6.1f} MB ({out_size / size:.1%})"
            )


if __name__ == "__main__":
    main()
