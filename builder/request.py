"""What the command line asks of one build, and where its store lives.

Kept apart from engine.py so the command line can ask the build journal
without importing the build engine: a fully cached rebuild never needs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BuildRequest", "default_root", "journal_key", "resolved_build_args"]


@dataclass(frozen=True, slots=True)
class BuildRequest:
    """Everything the command line says about one build, and nothing else."""

    context: Path
    dockerfile: bytes
    dockerfile_name: str
    dockerfile_path: Path | None
    root: Path
    tags: tuple[str, ...] = ()
    build_args: tuple[tuple[str, str | None], ...] = ()
    target: str = ""
    no_cache: bool = False
    progress: str = "auto"
    insecure_registries: tuple[str, ...] = ()
    pull: bool = False  # --pull: ask the registry for a newer base even when one is stored


def default_root() -> Path:
    configured = os.environ.get("PYBUILD_ROOT")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/lib/pybuild")
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data_home) / "pybuild"


def resolved_build_args(request: BuildRequest) -> tuple[tuple[str, str], ...]:
    """--build-arg values, with NAME alone taking the value from the environment."""
    resolved = []
    for name, value in request.build_args:
        if value is None:
            if name in os.environ:
                resolved.append((name, os.environ[name]))
        else:
            resolved.append((name, value))
    return tuple(resolved)


def journal_key(request: BuildRequest) -> str | None:
    from builder import __version__, journal

    return journal.journal_key(
        root=request.root,
        dockerfile=request.dockerfile,
        build_args=resolved_build_args(request),
        target=request.target,
        tags=request.tags,
        version=__version__,
    )
