"""What the command line asks of one build, and where its store lives.

Kept apart from engine.py so the command line can ask the build journal
without importing the build engine: a fully cached rebuild never needs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from builder.cachexport.options import CacheSpec
    from builder.secrets import SecretSource, SshSource

__all__ = [
    "BuildRequest",
    "default_root",
    "journal_key",
    "resolved_build_args",
    "source_date_epoch",
]


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
    # --cache-from / --cache-to (builder/cachexport/options.py), in the order given.
    cache_from: tuple[CacheSpec, ...] = ()
    cache_to: tuple[CacheSpec, ...] = ()
    # --secret, --ssh (builder/secrets.py) and --allow entitlements (security.insecure).
    secrets: tuple[SecretSource, ...] = ()
    ssh: tuple[SshSource, ...] = ()
    allow: tuple[str, ...] = ()
    # --build-context NAME=VALUE texts, checked by the CLI (builder/contexts.py reads them).
    build_contexts: tuple[str, ...] = ()
    # --no-cache-filter: names (or indexes) of the stages whose steps must not hit the cache.
    no_cache_filter: tuple[str, ...] = ()
    # --gc-keep-storage in bytes: prune down to it after the build (None: ROOT/config.json's).
    gc_keep_storage: int | None = None


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


def source_date_epoch(request: BuildRequest) -> int | None:
    """SOURCE_DATE_EPOCH: the build arg if given, else the environment; None when unset.

    As with buildx, the environment variable stands in for the build arg; an
    empty value means unset.  A value that is no whole number of seconds is
    refused rather than ignored: a build asked to be reproducible must not
    quietly be dated now.
    """
    import re

    from builder.errors import UsageError

    given = dict(resolved_build_args(request))
    text = given.get("SOURCE_DATE_EPOCH", os.environ.get("SOURCE_DATE_EPOCH", ""))
    if text == "":
        return None
    # Go's strconv.ParseInt: an optional sign, then decimal digits only.
    if re.fullmatch(r"[+-]?[0-9]+", text) is None:
        raise UsageError(f"invalid SOURCE_DATE_EPOCH: {text}")
    seconds = int(text)
    # Years 1..9999 are what an RFC 3339 timestamp (and Python's datetime) holds.
    if not -62135596800 <= seconds <= 253402300799:
        raise UsageError(f"invalid SOURCE_DATE_EPOCH: {text} is out of range")
    return seconds


def journal_key(request: BuildRequest) -> str | None:
    from builder import __version__, journal

    if request.cache_from or request.cache_to:
        # The journal cannot see an imported cache, and an export must really happen.
        return None
    if request.build_contexts:
        # The journal stats only the main context's files, never a named context's
        # directory or image.
        return None
    if request.no_cache_filter:
        # Those stages' steps must really run, which a replay would skip.
        return None
    if request.secrets or request.ssh or request.allow:
        # Secrets and agents are read when steps run (never recorded anywhere), and
        # --allow decides whether the build may run at all: such a build always runs.
        return None

    return journal.journal_key(
        root=request.root,
        dockerfile=request.dockerfile,
        build_args=resolved_build_args(request),
        target=request.target,
        tags=request.tags,
        version=__version__,
    )
