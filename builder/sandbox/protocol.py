"""The seam the run op uses: a Sandbox runs a RunSpec; NamespaceSandbox is the real one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from builder.sandbox import runner
from builder.sandbox.spec import RunSpec


class Sandbox(Protocol):
    """Runs one step in isolation and returns its exit status (BuildKit's Executor.Run)."""

    def run(
        self, spec: RunSpec, *, output: Callable[[bytes], None], stdin: bytes | None = None
    ) -> int: ...


@dataclass(frozen=True, slots=True)
class NamespaceSandbox:
    """Linux namespaces and pivot_root (runner.run); needs root.

    ``timeout`` (seconds, None for none) applies to every step it runs.
    """

    timeout: float | None = None

    def run(
        self, spec: RunSpec, *, output: Callable[[bytes], None], stdin: bytes | None = None
    ) -> int:
        return runner.run(spec, output=output, stdin=stdin, timeout=self.timeout)
