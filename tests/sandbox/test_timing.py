"""A trivial RUN stays cheap: the init must not grow slow imports or waits."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.sandbox import RunSpec, run

pytestmark = pytest.mark.root

# Measured 25-35 ms on the project's 2-core machine (Python start-up ~17 ms,
# ctypes ~8 ms); the bound only catches gross regressions on a noisy host.
BOUND_SECONDS = 0.25


def test_trivial_run_is_fast(overlay_root: Path,
                             record_property: Callable[[str, object], None]) -> None:
    spec = RunSpec(argv=("/bin/true",), rootfs=overlay_root)
    run(spec, output=lambda chunk: None)  # warm the page cache and .pyc files
    samples = []
    for _ in range(15):
        started = time.perf_counter()
        assert run(spec, output=lambda chunk: None) == 0
        samples.append(time.perf_counter() - started)
    median = statistics.median(samples)
    record_property("trivial_run_median_ms", round(median * 1000, 1))
    assert median < BOUND_SECONDS
