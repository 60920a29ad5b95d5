"""Prune: remove what the store no longer needs, least recently used first.

``prune`` decides from an inventory (cache/usage.py) taken while holding
the collector's lock (cache/leases.py), so no build can find an item and
no build can start relying on one while prune decides and deletes.  What
running builds made or used since they started is kept by the inventory.

An item goes together with everything that cannot outlive it (an untagged
image with its layers, a journal entry with its image), or not at all.
Deletion order makes a crash harmless: what refers goes before what is
referred to (journal entries, then images, then layers), and a layer's
cache index rows go before its snapshot and blob, so at no moment does
anything point at something missing.  Snapshots and cache mounts are first
renamed into ROOT/tmp, so none is ever half deleted under its name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from builder.errors import CacheError
from cache.index import CacheIndex
from cache.keylocks import KeyLocks
from cache.leases import Leases
from cache.mounts import CacheMounts
from cache.usage import CACHE, DANGLING, KEPT, Inventory, Item, take_inventory

__all__ = [
    "PruneOptions",
    "PruneResult",
    "collect_after_build",
    "prune",
    "remove_dir",
    "remove_tmp_entry",
]

# Removal order: what refers to something goes before what it refers to.
_ORDER = {"journal": 0, "image": 1, "compressed": 2, "blob": 3, "step": 4, "layer": 5,
          "snapshot": 6, "cachemount": 7, "tmp": 8}


@dataclass(frozen=True, slots=True)
class PruneOptions:
    all: bool = False  # also build cache (not only what nothing refers to)
    keep_storage: int | None = None  # stop once the store uses at most this many bytes
    until: float | None = None  # only what was last used more than this many seconds ago
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class PruneResult:
    removed: tuple[tuple[Item, str], ...]  # (item, why), in removal order
    skipped: tuple[tuple[Item, str], ...]  # chosen, but in use when its turn came
    total_before: int
    dry_run: bool

    @property
    def reclaimed(self) -> int:
        return sum(item.size for item, _ in self.removed)


def prune(root: Path, options: PruneOptions, *, exact: bool = True) -> PruneResult:
    """Remove (or with ``dry_run`` list) what ``options`` selects; see the module doc."""
    root = Path(root)
    leases = Leases(root)
    with leases.exclusive():
        if not options.dry_run:
            leases.sweep_dead()
            KeyLocks(root).sweep()
        inventory = take_inventory(root, exact=exact)
        chosen = select(inventory, options)
        if options.dry_run:
            return PruneResult(tuple(chosen), (), inventory.total(), True)
        removed, skipped = _remove(root, chosen, inventory.horizon)
    return PruneResult(tuple(removed), tuple(skipped), inventory.total(), False)


def collect_after_build(root: Path, keep_storage: int) -> PruneResult | None:
    """The keep-storage policy after a build: prune --all down to ``keep_storage`` bytes.

    Sizes come from the cheap inventory (a snapshot counts as its layer), and
    nothing is locked unless the store is over the limit.
    """
    if take_inventory(root, exact=False).total() <= keep_storage:
        return None
    return prune(root, PruneOptions(all=True, keep_storage=keep_storage), exact=False)


def select(inventory: Inventory, options: PruneOptions) -> list[tuple[Item, str]]:
    """The items to remove, with why, in removal order."""
    cutoff = None if options.until is None else inventory.taken - options.until

    def candidate(item: Item) -> bool:
        if item.status == KEPT or (item.status == CACHE and not options.all):
            return False
        return cutoff is None or item.last_used < cutoff

    owner: dict[str, Item] = {}
    for item in inventory.items:
        for part in item.parts:
            owner.setdefault(part.target, item)
    dependents: dict[int, list[Item]] = defaultdict(list)
    for item in inventory.items:
        for need in item.needs:
            needed = owner.get(need)
            if needed is not None and needed is not item:
                dependents[id(needed)].append(item)

    def closure(item: Item) -> list[Item]:
        found: dict[int, Item] = {}
        pending = [item]
        while pending:
            current = pending.pop()
            if id(current) in found:
                continue
            found[id(current)] = current
            pending.extend(dependents.get(id(current), ()))
        return list(found.values())

    total = inventory.total()
    chosen: dict[int, tuple[Item, str]] = {}
    order = sorted((item for item in inventory.items if candidate(item)),
                   key=lambda item: (item.status != DANGLING, item.last_used))
    for item in order:
        if options.keep_storage is not None and total <= options.keep_storage:
            break
        if id(item) in chosen:
            continue
        unit = closure(item)
        if not all(candidate(member) for member in unit):
            continue  # something that cannot outlive it must stay, so it stays too
        for member in unit:
            if id(member) in chosen:
                continue
            why = member.reason if member is item else (
                f"{member.reason}; goes with {item.kind} {_short(item.name)}")
            chosen[id(member)] = (member, why)
            total -= member.size
    return sorted(chosen.values(), key=lambda pair: (_ORDER.get(pair[0].kind, 9),
                                                     pair[0].last_used))


def _short(name: str) -> str:
    return name[:19] if name.startswith("sha256:") else name


def _remove(
    root: Path, chosen: list[tuple[Item, str]], horizon: float | None
) -> tuple[list[tuple[Item, str]], list[tuple[Item, str]]]:
    removed: list[tuple[Item, str]] = []
    skipped: list[tuple[Item, str]] = []
    index = CacheIndex(root / "cache.db") if (root / "cache.db").exists() else None
    for item, why in chosen:
        problem = _remove_item(root, item, horizon, index)
        if problem:
            skipped.append((item, problem))
        else:
            removed.append((item, why))
    return removed, skipped


def _remove_item(root: Path, item: Item, horizon: float | None, index: CacheIndex | None) -> str:
    """Delete one item's parts in a crash-safe order; a reason if it had to stay."""
    keys = [part.target for part in item.parts if part.category == "cache index"]
    if keys and index is not None:
        index.forget_many(keys)
    for part in item.parts:
        if part.category == "snapshots":
            if _touched_since(root / "snapshots" / part.target, horizon):
                return "used by a running build meanwhile"
            remove_dir(root, root / "snapshots" / part.target)
        elif part.category in ("layers", "configs", "manifests", "other blobs"):
            path = root / "blobs" / "sha256" / part.target.removeprefix("sha256:")
            if _touched_since(path, horizon):
                return "used by a running build meanwhile"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        elif part.category == "cache mounts":
            try:
                CacheMounts(root).remove(part.target)
            except CacheError as err:
                return str(err)
        elif part.category == "journal":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(root / "journal" / part.target)
        elif part.category == "tmp":
            remove_tmp_entry(root, part.target)
    return ""


def _touched_since(path: Path, horizon: float | None) -> bool:
    """Whether a running build wrote or reused ``path`` after the inventory was taken."""
    if horizon is None:
        return False
    try:
        return path.stat().st_mtime >= horizon
    except FileNotFoundError:
        return False


def remove_dir(root: Path, path: Path) -> None:
    """Rename a dir into ROOT/tmp, then delete it: never half gone under its own name."""
    if not path.exists():
        return
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    doomed = Path(tempfile.mkdtemp(prefix="doomed-", dir=root / "tmp"))
    try:
        os.rename(path, doomed / "entry")
    except FileNotFoundError:
        pass
    finally:
        shutil.rmtree(doomed, ignore_errors=True)


def remove_tmp_entry(root: Path, name: str) -> None:
    """Remove one leftover from ROOT/tmp, unmounting whatever a dead build left mounted in it."""
    import fcntl

    path = root / "tmp" / name
    if name.startswith("blob-"):
        # A blob temp is locked by its writer for as long as it writes.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        finally:
            os.close(fd)
        return
    if not _unmount_under(path):
        return  # still mounted: deleting would reach into the mount
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _unmount_under(path: Path) -> bool:
    """Detach every mount at or below ``path``, deepest first (a killed build's overlays);
    whether none is left."""
    if not path.is_dir() or path.is_symlink():
        return True
    from builder.errors import SandboxError
    from builder.snapshot.mount import mounts_under, umount

    for _ in range(3):
        mounted = mounts_under(path)
        if not mounted:
            return True
        for target in sorted(mounted, key=len, reverse=True):
            with contextlib.suppress(SandboxError):
                umount(target, lazy=True)
        time.sleep(0.01)
    return not mounts_under(path)
