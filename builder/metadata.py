"""The ``--metadata-file`` document, read back: two CI runs' files can be compared.

CI runners are ephemeral, so the build records of two runs usually live in
two different roots that no longer exist; the metadata files the runs kept
as artifacts are what is left.  Their shape is docs/metadata.schema.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from builder.errors import UsageError
from cache.records import BuildRecord, StepRecord

__all__ = ["record_from_metadata"]

_HITS = {"cached": 1, "run": 0, "-": -1}


def record_from_metadata(path: Path) -> BuildRecord:
    """The build record a ``--metadata-file`` holds (steps, hits, times; no inputs).

    A file that is missing, not JSON or not pybuild's is a UsageError: it
    was named on the command line.
    """
    try:
        document = json.loads(path.read_bytes())
    except OSError as err:
        raise UsageError(f"{path}: {err.strerror or err}") from err
    except ValueError as err:
        raise UsageError(f"{path}: not JSON ({err})") from err
    try:
        build = document["pybuild.build"]
        steps = tuple(_step(path, number, step)
                      for number, step in enumerate(build["step_records"], start=1))
        return BuildRecord(
            id=_text(build["id"]), started=0.0, dockerfile="", target="",
            steps=int(build["steps"]), cached=int(build["cached"]), ran=int(build["ran"]),
            seconds=float(build["seconds"]), digest=_text(document["containerimage.digest"]),
            outcome="ok", step_records=steps,
        )
    except UsageError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise UsageError(f"{path}: not a pybuild --metadata-file (missing or bad "
                            f"{err})") from err


def _step(path: Path, number: int, step: Any) -> StepRecord:
    result = step["result"]
    if result not in _HITS:
        raise UsageError(f"{path}: step {number}: unknown result {result!r}")
    return StepRecord(
        stage=_text(step["stage"]), instruction=_text(step["instruction"]),
        line=int(step["line"]), cache_key=_text(step["cache_key"]), hit=_HITS[result],
        seconds=float(step["seconds"]), bytes=int(step["bytes"]),
        source=_text(step.get("hit_source", "")),
    )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value
