"""What a pybuild root holds on disk, item by item, and whether prune may take each item.

An item is what prune removes as a whole: a layer (its blob, its snapshot
and the cache index rows that name it), an untagged image (manifest and
config), a cache mount, a journal entry, a leftover in ROOT/tmp.  Each item
gets one status and the reason for it:

- ``kept``: never removed.  A tag refers to it (index.json), a running build
  leased it or touched it since it started, or it is the store's own
  bookkeeping (build records, logs, index.json).
- ``dangling``: nothing refers to it any more (a layer no tag and no cache
  entry names, an untagged image, a journal entry whose image is gone, a
  dead build's scratch dir).  ``pybuild prune`` removes these.
- ``cache``: build cache that a later build may reuse (layers named by cache
  index rows, cache mounts, compressed copies of layers, journal entries of
  tagged images).  ``pybuild prune --all`` and the keep-storage policy
  remove these, least recently used first.

Sizes are bytes allocated on disk (blocks, each hard-linked inode once), as
du counts them.  This module only reads; cache/gc.py deletes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cache.files import lock_held
from cache.index import CacheEntry, CacheIndex
from cache.leases import LeaseInfo, Leases
from cache.mounts import CacheMounts

__all__ = [
    "CACHE",
    "DANGLING",
    "KEPT",
    "Inventory",
    "Item",
    "Part",
    "category_totals",
    "take_inventory",
]

KEPT, DANGLING, CACHE = "kept", "dangling", "cache"

_HEX = re.compile(r"[0-9a-f]{64}")
_REF_NAME = "org.opencontainers.image.ref.name"
_MAX_JSON_BLOB = 4 << 20
# Temp files of commands that hold no lease (rmi rewriting index.json, a push
# saving its cache) live for milliseconds; give them a moment before calling
# anything in ROOT/tmp dead.
TMP_GRACE_SECONDS = 2.0
# The files of the store itself: never removed, shown as metadata.
_METADATA = ("index.json", "index.json.lock", "oci-layout", "statcache", "config.json",
             "compressed-layers.json", "compressed-layers.json.lock", "registry-layers.json")
_RECORDS = ("cache.db", "cache.db-wal", "cache.db-shm")
# Top-level entries whose contents this module classifies item by item.
_MANAGED = ("blobs", "snapshots", "cachemounts", "journal", "tmp", "logs", "leases", "locks")


@dataclass(frozen=True, slots=True)
class Part:
    """One thing on disk that removing an item deletes.

    ``category`` says what it is (and how gc deletes it): "layers",
    "configs", "manifests", "other blobs" (a digest), "snapshots" (a snapshot
    key), "cache index" (a cache key), "cache mounts" (a mount id), "journal",
    "tmp" (a name in its directory), or a kept category ("build records",
    "logs", "metadata", "leases").
    """

    category: str
    target: str
    size: int


@dataclass(frozen=True, slots=True)
class Item:
    kind: str  # layer, image, blob, compressed, snapshot, step, cachemount, journal, tmp, ...
    name: str
    parts: tuple[Part, ...]
    last_used: float
    status: str
    reason: str
    # What the item cannot outlive: the layers of an image, the image of a
    # journal entry.  Pruning one of those takes this item with it.
    needs: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)


@dataclass(frozen=True, slots=True)
class Inventory:
    items: tuple[Item, ...]
    live: tuple[LeaseInfo, ...]
    horizon: float | None  # anything touched since may belong to a running build
    taken: float  # when the inventory was taken

    def total(self) -> int:
        return sum(item.size for item in self.items)


@dataclass
class _Layer:
    diff_id: str
    keys: list[str] = field(default_factory=list)
    rows_used: float = 0.0
    blob: tuple[int, float] | None = None  # (size, mtime)
    snapshot: tuple[int, float] | None = None
    untagged_images: list[str] = field(default_factory=list)


def take_inventory(root: Path, *, exact: bool = True) -> Inventory:
    """Everything in ``root``, classified.  ``exact=False`` sizes snapshots by their layer
    blob instead of walking them (the cheap check after each build)."""
    return _Inventory(Path(root), exact).take()


class _Inventory:
    def __init__(self, root: Path, exact: bool) -> None:
        self.root = root
        self.exact = exact
        self.items: list[Item] = []
        self.now = time.time()
        leases = Leases(root)
        self.live = leases.live()
        self.horizon = leases.horizon(self.live)
        self.leased: dict[str, int] = {}
        for info in self.live:
            for use in info.uses:
                self.leased.setdefault(use, info.pid)

    def take(self) -> Inventory:
        blobs = self._blobs()
        tagged = self._tagged(blobs)
        rows = self._rows()
        snapshots = self._snapshots()
        compressed = self._compressed()
        layers: dict[str, _Layer] = {}

        def layer(diff_id: str) -> _Layer:
            return layers.setdefault(diff_id, _Layer(diff_id))

        empty_rows: list[tuple[CacheEntry, float]] = []
        for entry, last_used in rows:
            if not entry.diff_id:
                empty_rows.append((entry, last_used))
                continue
            record = layer(entry.diff_id)
            record.keys.append(entry.cache_key)
            record.rows_used = max(record.rows_used, last_used)
        for digest in tagged.layers:
            layer(digest)
        for key in snapshots:
            if _HEX.fullmatch(key):
                layer("sha256:" + key)
        claimed = set(tagged.all) | set(layers) | set(compressed)
        images, loose = self._untagged(blobs, claimed)
        for manifest, (_config, image_layers) in images.items():
            for digest in image_layers:
                if digest not in tagged.all:
                    layer(digest).untagged_images.append(manifest)
        for diff_id, record in layers.items():
            record.blob = blobs.get(diff_id)
            hex_key = diff_id.removeprefix("sha256:")
            if hex_key in snapshots:
                record.snapshot = snapshots.pop(hex_key)
            self._layer_item(record, tagged.names.get(diff_id))
        for key, (size, mtime) in sorted(snapshots.items()):
            self._add("snapshot", key, (Part("snapshots", key, size),), mtime, None,
                      DANGLING, "snapshot of no layer")
        for entry, last_used in empty_rows:
            self._add("step", entry.cache_key, (Part("cache index", entry.cache_key, 0),),
                      last_used, None, CACHE, "cache entry of a step that changed nothing")
        self._tagged_blobs(tagged, blobs, layers)
        self._image_items(images, blobs, tagged)
        self._compressed_items(compressed, blobs)
        for digest in loose:
            if digest in layers:
                continue  # a layer of an untagged image: an item of its own above
            size, mtime = blobs[digest]
            self._add("blob", digest, (Part("other blobs", digest, size),), mtime,
                      self.leased.get("blob " + digest), DANGLING, "a blob nothing refers to")
        self._cache_mounts()
        self._journal(blobs, tagged)
        self._tmp()
        self._bookkeeping()
        return Inventory(tuple(self.items), tuple(self.live), self.horizon, self.now)

    # -- classification ---------------------------------------------------------

    def _add(
        self, kind: str, name: str, parts: tuple[Part, ...], last_used: float,
        leased_by: int | None, status: str, reason: str, needs: tuple[str, ...] = (),
    ) -> None:
        """Add an item; a lease or a use since the oldest running build began keeps it."""
        if status != KEPT:
            if leased_by is not None:
                status, reason = KEPT, f"in use by a running build (pid {leased_by})"
            elif self.horizon is not None and last_used >= self.horizon:
                status, reason = KEPT, "in use by a running build (used since it started)"
        self.items.append(Item(kind, name, parts, last_used, status, reason, needs))

    def _layer_item(self, record: _Layer, tag: str | None) -> None:
        parts: list[Part] = []
        if record.keys:
            parts.extend(Part("cache index", key, 0) for key in sorted(record.keys))
        if record.snapshot is not None:
            parts.append(Part("snapshots", record.diff_id.removeprefix("sha256:"),
                              record.snapshot[0]))
        if record.blob is not None:
            parts.append(Part("layers", record.diff_id, record.blob[0]))
        used = max(record.rows_used, *(info[1] for info in (record.blob, record.snapshot)
                                       if info is not None), 0.0)
        if tag is not None:
            status, reason = KEPT, f"layer of tagged image {tag}"
        elif record.keys and record.blob is None and record.snapshot is None:
            status, reason = DANGLING, "cache entry whose layer is gone"
        elif record.keys:
            status, reason = CACHE, "build cache"
        elif record.untagged_images:
            status, reason = DANGLING, "layer of an untagged image only"
        else:
            status, reason = DANGLING, "layer no tag and no cache entry refers to"
        self._add("layer", record.diff_id, tuple(parts), used,
                  self.leased.get("layer " + record.diff_id), status, reason)

    def _tagged_blobs(
        self, tagged: _Tagged, blobs: dict[str, tuple[int, float]], layers: dict[str, _Layer]
    ) -> None:
        for digest, name in sorted(tagged.names.items()):
            if digest in layers or digest not in blobs:
                continue
            size, mtime = blobs[digest]
            category = "configs" if digest in tagged.configs else "manifests"
            self._add("image" if category == "manifests" else "blob", digest,
                      (Part(category, digest, size),), mtime, None, KEPT, f"tagged image {name}")

    def _image_items(
        self, images: dict[str, tuple[str | None, list[str]]],
        blobs: dict[str, tuple[int, float]], tagged: _Tagged,
    ) -> None:
        configs_taken: set[str] = set()
        for manifest, (config, image_layers) in sorted(images.items()):
            size, mtime = blobs[manifest]
            parts = [Part("manifests", manifest, size)]
            leased = self.leased.get("blob " + manifest)
            if (config is not None and config in blobs and config not in tagged.all
                    and config not in configs_taken):
                configs_taken.add(config)
                parts.append(Part("configs", config, blobs[config][0]))
                mtime = max(mtime, blobs[config][1])
                leased = leased or self.leased.get("blob " + config)
            self._add("image", manifest, tuple(parts), mtime, leased, DANGLING,
                      "untagged image", needs=tuple(image_layers))
        for manifest, (config, _) in images.items():
            if config is not None and config in blobs and config not in configs_taken \
                    and config not in tagged.all:
                configs_taken.add(config)
                size, mtime = blobs[config]
                self._add("blob", config, (Part("configs", config, size),), mtime,
                          self.leased.get("blob " + config), DANGLING, "config of untagged images",
                          needs=(manifest,))

    def _compressed_items(
        self, compressed: dict[str, str], blobs: dict[str, tuple[int, float]]
    ) -> None:
        for digest, diff_id in sorted(compressed.items()):
            if digest not in blobs:
                continue
            size, mtime = blobs[digest]
            if diff_id in blobs:
                status, reason = CACHE, f"compressed copy of layer {_short(diff_id)} (export cache)"
            else:
                status, reason = DANGLING, "compressed copy of a layer that is gone"
            self._add("compressed", digest, (Part("layers", digest, size),), mtime,
                      self.leased.get("blob " + digest), status, reason)

    def _cache_mounts(self) -> None:
        for entry in CacheMounts(self.root).entries():
            size = entry.bytes
            if lock_held(entry.path / "lock"):
                status, reason = KEPT, "in use by a running step"
            else:
                status, reason = CACHE, "cache mount (RUN --mount=type=cache)"
            self._add("cachemount", entry.id, (Part("cache mounts", entry.id, size),),
                      entry.last_used, self.leased.get("mount " + entry.id), status, reason)

    def _journal(self, blobs: dict[str, tuple[int, float]], tagged: _Tagged) -> None:
        directory = self.root / "journal"
        for entry in _scandir(directory):
            info = _lstat(entry.path)
            if info is None:
                continue
            manifest = ""
            with contextlib.suppress(OSError, ValueError, AttributeError):
                manifest = str(json.loads(Path(entry.path).read_bytes()).get("manifest", ""))
            if manifest in tagged.names:
                status, reason = CACHE, f"answers a rebuild of tagged image {tagged.names[manifest]}"
            elif manifest in blobs:
                status, reason = DANGLING, "answers a rebuild of an untagged image"
            else:
                status, reason = DANGLING, "its image is gone"
            self._add("journal", entry.name, (Part("journal", entry.name, _blocks(info)),),
                      info.st_mtime, None, status, reason, needs=(manifest,) if manifest else ())

    def _tmp(self) -> None:
        for entry in _scandir(self.root / "tmp"):
            info = _lstat(entry.path)
            if info is None:
                continue
            size = _disk_usage(Path(entry.path)) if self.exact else _blocks(info)
            parts = (Part("tmp", entry.name, size),)
            if entry.name.startswith("blob-") and lock_held(Path(entry.path)):
                status, reason = KEPT, "a blob being written"
            elif info.st_mtime > self.now - TMP_GRACE_SECONDS:
                status, reason = KEPT, "just created"
            else:
                status, reason = DANGLING, "left behind by a build that is not running"
            self._add("tmp", entry.name, parts, info.st_mtime, None, status, reason)

    def _bookkeeping(self) -> None:
        records = [Part("build records", name, _blocks(info)) for name in _RECORDS
                   if (info := _lstat(self.root / name)) is not None]
        if records:
            self._add("records", "cache.db", tuple(records), self.now, None, KEPT,
                      "build records and the cache index")
        logs = self.root / "logs"
        if logs.is_dir():
            self._add("logs", "logs", (Part("logs", "logs", _disk_usage(logs)),), self.now, None,
                      KEPT, "step logs of recent builds (pybuild builds)")
        metadata = [Part("metadata", name, _blocks(info)) for name in _METADATA
                    if (info := _lstat(self.root / name)) is not None]
        for sub in ("leases", "locks"):
            metadata.extend(Part("metadata", f"{sub}/{entry.name}", _blocks(info))
                            for entry in _scandir(self.root / sub)
                            if (info := _lstat(entry.path)) is not None)
        if metadata:
            self._add("metadata", "store", tuple(metadata), self.now, None, KEPT,
                      "the store's own files (tags, locks, leases)")
        for entry in _scandir(self.root):
            if entry.name in _MANAGED or entry.name in _METADATA or entry.name in _RECORDS:
                continue
            self._add("other", entry.name, (Part("other", entry.name, _disk_usage(Path(entry.path))),),
                      self.now, None, KEPT, "not build cache (prune leaves it alone)")

    # -- reading the store --------------------------------------------------------

    def _blobs(self) -> dict[str, tuple[int, float]]:
        found = {}
        for entry in _scandir(self.root / "blobs" / "sha256"):
            if not _HEX.fullmatch(entry.name):
                continue
            info = _lstat(entry.path)
            if info is not None and stat.S_ISREG(info.st_mode):
                found["sha256:" + entry.name] = (_blocks(info), info.st_mtime)
        return found

    def _tagged(self, blobs: dict[str, tuple[int, float]]) -> _Tagged:
        tagged = _Tagged()
        try:
            index = json.loads((self.root / "index.json").read_bytes())
        except (OSError, ValueError):
            return tagged
        for entry in index.get("manifests", []) if isinstance(index, dict) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
                continue
            annotations = entry.get("annotations")
            name = annotations.get(_REF_NAME) if isinstance(annotations, dict) else None
            tagged.walk(self.root, str(name or entry["digest"]), entry["digest"], blobs)
        return tagged

    def _rows(self) -> list[tuple[CacheEntry, float]]:
        if not (self.root / "cache.db").exists():
            return []
        return CacheIndex(self.root / "cache.db").rows()

    def _snapshots(self) -> dict[str, tuple[int, float]]:
        found = {}
        blob_dir = self.root / "blobs" / "sha256"
        for entry in _scandir(self.root / "snapshots"):
            info = _lstat(entry.path)
            if info is None:
                continue
            if self.exact:
                size = _disk_usage(Path(entry.path))
            else:
                blob = _lstat(blob_dir / entry.name) if _HEX.fullmatch(entry.name) else None
                size = _blocks(blob) if blob is not None else _disk_usage(Path(entry.path))
            found[entry.name] = (size, info.st_mtime)
        return found

    def _compressed(self) -> dict[str, str]:
        """Compressed copies of layers the exporters keep: blob digest → its diff_id."""
        found: dict[str, str] = {}
        for name in ("compressed-layers.json", "registry-layers.json"):
            try:
                layers = json.loads((self.root / name).read_bytes()).get("layers", {})
            except (OSError, ValueError, AttributeError):
                continue
            for key, value in layers.items() if isinstance(layers, dict) else ():
                if isinstance(value, dict) and isinstance(value.get("digest"), str):
                    found[value["digest"]] = str(key).split(" ", 1)[0]
        return found

    def _untagged(
        self, blobs: dict[str, tuple[int, float]], claimed: set[str]
    ) -> tuple[dict[str, tuple[str | None, list[str]]], list[str]]:
        """Untagged manifests (manifest → config, layers) and blobs that are nothing known."""
        images: dict[str, tuple[str | None, list[str]]] = {}
        rest: list[str] = []
        for digest, (size, _) in sorted(blobs.items()):
            if digest in claimed:
                continue
            document = _json_blob(self.root, digest, size)
            if isinstance(document, dict) and isinstance(document.get("layers"), list):
                config = document.get("config")
                config_digest = config.get("digest") if isinstance(config, dict) else None
                layer_digests = [layer["digest"] for layer in document["layers"]
                                 if isinstance(layer, dict) and isinstance(layer.get("digest"), str)]
                images[digest] = (config_digest if isinstance(config_digest, str) else None,
                                  layer_digests)
            else:
                rest.append(digest)
        configs = {config for config, _ in images.values() if config is not None}
        return images, [digest for digest in rest if digest not in configs]


@dataclass
class _Tagged:
    """What index.json keeps alive: every blob reachable from its entries."""

    names: dict[str, str] = field(default_factory=dict)  # digest → the tags reaching it
    layers: set[str] = field(default_factory=set)
    configs: set[str] = field(default_factory=set)

    @property
    def all(self) -> set[str]:
        return set(self.names)

    def _name(self, digest: str, name: str) -> None:
        known = self.names.get(digest)
        if known is None:
            self.names[digest] = name
        elif name not in known.split(", "):
            self.names[digest] = f"{known}, {name}"

    def walk(self, root: Path, name: str, digest: str, blobs: dict[str, tuple[int, float]],
             depth: int = 0) -> None:
        self._name(digest, name)
        if digest not in blobs or depth > 4:
            return
        document = _json_blob(root, digest, blobs[digest][0])
        if not isinstance(document, dict):
            return
        for child in document.get("manifests", []) or []:
            if isinstance(child, dict) and isinstance(child.get("digest"), str):
                self.walk(root, name, child["digest"], blobs, depth + 1)
        config = document.get("config")
        if isinstance(config, dict) and isinstance(config.get("digest"), str):
            self._name(config["digest"], name)
            self.configs.add(config["digest"])
        for layer in document.get("layers", []) or []:
            if isinstance(layer, dict) and isinstance(layer.get("digest"), str):
                self._name(layer["digest"], name)
                self.layers.add(layer["digest"])


def _json_blob(root: Path, digest: str, size: int) -> object:
    """A small blob read as JSON, or None when it is big or no JSON (a layer, say)."""
    if size > _MAX_JSON_BLOB:
        return None
    path = root / "blobs" / "sha256" / digest.removeprefix("sha256:")
    try:
        with open(path, "rb") as file:
            head = file.read(1)
            if head != b"{":
                return None
            return json.loads(head + file.read(_MAX_JSON_BLOB))
    except (OSError, ValueError):
        return None


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _scandir(directory: Path) -> Iterator[os.DirEntry[str]]:
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return iter(())
    return iter(entries)


def _lstat(path: str | Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _blocks(info: os.stat_result) -> int:
    return info.st_blocks * 512


def _disk_usage(top: Path) -> int:
    """Blocks a tree uses, each inode once, not crossing into mounts (a dead build's
    overlay may still be mounted in ROOT/tmp)."""
    info = _lstat(top)
    if info is None:
        return 0
    total = _blocks(info)
    if not stat.S_ISDIR(info.st_mode):
        return total
    device = info.st_dev
    seen: set[tuple[int, int]] = set()
    pending = [os.fspath(top)]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                child = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if child.st_dev != device:
                continue  # a mount point: not ours to count
            if child.st_nlink > 1 and not stat.S_ISDIR(child.st_mode):
                if (child.st_dev, child.st_ino) in seen:
                    continue
                seen.add((child.st_dev, child.st_ino))
            total += _blocks(child)
            if stat.S_ISDIR(child.st_mode):
                pending.append(entry.path)
    return total


def category_totals(items: tuple[Item, ...]) -> dict[str, dict[str, int]]:
    """Per category: bytes in total, reclaimable by ``prune`` and by ``prune --all``."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"total": 0, "prune": 0, "all": 0})
    for item in items:
        for part in item.parts:
            row = totals[part.category]
            row["total"] += part.size
            if item.status == DANGLING:
                row["prune"] += part.size
            if item.status in (DANGLING, CACHE):
                row["all"] += part.size
    return dict(totals)
