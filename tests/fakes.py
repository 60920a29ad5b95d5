"""Fakes for the seams: an executor that counts calls, a silent progress."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from builder.plan.graph import LayerRef, Step
from builder.solver import StageState


class CountingExecutor:
    """Makes a made-up layer per step; counts executions by step text."""

    def __init__(self, *, source_digests: Mapping[str, str] | None = None) -> None:
        self.executed: list[str] = []
        self.source_digests = dict(source_digests or {})
        self.present: set[str] = set()
        self._lock = threading.Lock()

    def source_digest(self, step: Step, sources: Mapping[int, StageState]) -> str:
        return self.source_digests.get(step.instruction.original, "")

    def execute(
        self, step: Step, parent: StageState, sources: Mapping[int, StageState]
    ) -> LayerRef | None:
        with self._lock:
            self.executed.append(step.instruction.original)
        diff_id = "sha256:" + format(abs(hash((parent.key, step.instruction.original))), "064x")[-64:]
        self.present.add(diff_id)
        return LayerRef(diff_id, 10)

    def has_layer(self, layer: LayerRef) -> bool:
        return layer.diff_id in self.present

    def source_files(self, step: Step) -> dict[str, list[object]] | None:
        return None


class SilentProgress:
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def step_started(self, step: Step) -> None:
        self.events.append(("started", step.id))

    def step_cached(self, step: Step) -> None:
        self.events.append(("cached", step.id))

    def step_finished(self, step: Step, seconds: float) -> None:
        self.events.append(("finished", step.id))
