"""The build journal: answer a fully cached rebuild without planning or solving.

A build that succeeds leaves a journal entry keyed by everything that could
change its result: the Dockerfile's bytes, the resolved build arguments, the
target, the tags, SOURCE_DATE_EPOCH, pybuild's version, and the bytes of the
store's index.json *after* the build tagged its image (so any change to any
tag, including the base images', misses).  The entry records the image it
produced and the lstat of every context path the build could read (and of
the ignore files).  The next identical build stats those paths; if nothing
moved, the image is already there and already tagged, and the build is
answered in a few milliseconds, printing what a cached build would print.

Soundness rules, each a reason to fall back to a full build (never to a
stale answer): an ignore file with "!" exceptions (an excluded directory
could then hold a new visible file without any recorded stat changing); a
path changed within the last 100 ms of recording (a second write in the same
clock tick could leave its stat unchanged); a manifest blob that is gone.

Imports only the standard library and xxhash: this is the fast path.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import xxhash

from cache.files import write_atomically

__all__ = ["journal_key", "load", "record", "replay_lines"]

_VERSION = "pybuild.journal.v2"
_RACY_NS = 100_000_000

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _stat_tuple(info: os.stat_result) -> list[int]:
    return [info.st_mode, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def journal_key(
    *,
    root: Path,
    dockerfile: bytes,
    build_args: Iterable[tuple[str, str]],
    target: str,
    tags: Iterable[str],
    version: str,
) -> str | None:
    """The key of a build; None when the store has no index yet."""
    try:
        index = (root / "index.json").read_bytes()
    except OSError:
        return None
    digest = xxhash.xxh3_128()
    fields = [_VERSION, version, target, os.environ.get("SOURCE_DATE_EPOCH", "")]
    fields += [f"{name}={value}" for name, value in sorted(build_args)]
    fields.append("\0tags")
    fields += sorted(tags)
    for text in fields:
        data = text.encode("utf-8", "surrogateescape")
        digest.update(len(data).to_bytes(8, "little") + data)
    for blob in (dockerfile, index):
        digest.update(len(blob).to_bytes(8, "little") + blob)
    return digest.hexdigest()


def _path(root: Path, key: str) -> Path:
    return root / "journal" / key


def load(root: Path, key: str, context: Path) -> dict[str, Any] | None:
    """The entry for key if every path it depends on is as it was; else None."""
    try:
        entry: dict[str, Any] = json.loads(_path(root, key).read_bytes())
    except (OSError, ValueError):
        return None
    if entry.get("version") != _VERSION or entry.get("context") != os.fspath(context):
        return None
    manifest = entry.get("manifest", "")
    if not (root / "blobs" / "sha256" / manifest.removeprefix("sha256:")).is_file():
        return None
    base = os.fspath(context)
    for rel, expected in entry.get("stats", []):
        try:
            info = os.lstat(os.path.join(base, rel) if rel else base)
        except OSError:
            return None
        if _stat_tuple(info) != expected:
            return None
    for path, expected in entry.get("files", []):
        try:
            now: list[int] | None = _stat_tuple(os.lstat(path))
        except OSError:
            now = None
        if now != expected:
            return None
    return entry


def record(
    root: Path,
    key: str,
    *,
    context: Path,
    manifest: str,
    lines: list[tuple[str, bool, str, int, str, str]],
    steps: int,
    cached: int,
    context_stats: Mapping[str, os.stat_result] | None,
    ignore_files: Iterable[Path],
    ignore_has_exceptions: bool,
) -> bool:
    """Write the entry (atomically); False when the build is not safely journaled."""
    if ignore_has_exceptions:
        return False
    now = time.time_ns()
    stats: list[tuple[str, list[int]]] = [("", _stat_tuple(os.lstat(context)))]
    for rel, info in (context_stats or {}).items():
        stats.append((rel, _stat_tuple(info)))
    files: list[tuple[str, list[int] | None]] = []
    for path in ignore_files:
        try:
            files.append((os.fspath(path), _stat_tuple(os.lstat(path))))
        except OSError:
            files.append((os.fspath(path), None))
    recorded = [value for _, value in stats] + [value for _, value in files if value]
    if any(max(value[3], value[4]) > now - _RACY_NS for value in recorded):
        return False
    entry = {
        "version": _VERSION,
        "context": os.fspath(context),
        "manifest": manifest,
        "lines": lines,
        "steps": steps,
        "cached": cached,
        "stats": stats,
        "files": files,
    }
    target = _path(root, key)
    target.parent.mkdir(exist_ok=True)
    # A cache: losing an entry costs one full (cached) build, so no fsync.
    write_atomically(target, json.dumps(entry, separators=(",", ":")).encode(),
                           staging_dir=root / "tmp", durable=False)
    return True


def replay_lines(entry: dict[str, Any]) -> list[str]:
    """What a fully cached build prints for the entry's steps (plain progress)."""
    out = []
    for number, (text, makes_layer, *_) in enumerate(entry["lines"], start=1):
        out.append(f"#{number} {text}")
        out.append(f"#{number} CACHED" if makes_layer else f"#{number} DONE 0.0s")
    return out
