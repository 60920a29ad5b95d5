"""`pybuild cache verify [--repair]`: check that the store is consistent, and mend it.

Checks, in the order a repair must run them (a corrupt blob dropped first
makes every tag and cache entry that needed it show up as broken next):

- every blob hashes to its name, and matches the xxh3-128 recorded on it
  (cache/blobcheck.py) if it has one: a stale record would make every
  read of a sound blob fail, so a repair records it afresh;
- every tag (index.json) reaches a manifest, its config and its layers;
- every cache index row names a layer blob that exists, of the recorded size;
- every snapshot is complete (only its ``fs`` dir) and matches its layer: the
  same regular files, of the same total size, as the layer tar lists;
- every cache mount directory is whole (``id``, ``data/``, ``lock``);
- the SQLite file of the index and the build records passes quick_check.

Leftovers are reported apart, as harmless: scratch dirs and blob temp files
in ROOT/tmp of builds that are not running (with any overlay a killed build
left mounted), leases of dead builds, unheld per-key lock files, journal
entries whose image is gone.  ``--repair`` drops what is broken (a build
recomputes it) and clears the leftovers, holding the collector's lock so no
build finds anything meanwhile.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import sqlite3
import stat
import tarfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import xxhash

from builder.errors import CacheError
from cache import blobcheck, files
from cache.gc import remove_dir, remove_tmp_entry
from cache.index import CacheIndex
from cache.keylocks import KeyLocks
from cache.leases import Leases
from cache.mounts import mount_hex
from cache.usage import TMP_GRACE_SECONDS

__all__ = ["Finding", "verify"]

_HEX = re.compile(r"[0-9a-f]{64}")
_SNAPSHOT_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_REF_NAME = "org.opencontainers.image.ref.name"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # blob, tag, index, snapshot, cachemount, records, tmp, lease, lock, journal
    name: str
    problem: str
    harmless: bool  # a leftover: nothing reads it, clearing it only frees space
    repaired: bool = False


def verify(root: Path, *, repair: bool = False) -> list[Finding]:
    """Every finding (repaired ones marked when ``repair``); empty means consistent."""
    root = Path(root)
    leases = Leases(root)
    context = leases.exclusive() if repair else contextlib.nullcontext()
    with context:
        return _Verifier(root, leases, repair).run()


class _Verifier:
    def __init__(self, root: Path, leases: Leases, repair: bool) -> None:
        self.root = root
        self.leases = leases
        self.repair = repair
        self.findings: list[Finding] = []
        self.blob_dir = root / "blobs" / "sha256"
        self.horizon = leases.horizon()

    def run(self) -> list[Finding]:
        self._records()
        self._blobs()
        self._tags()
        self._index()
        self._snapshots()
        self._cache_mounts()
        self._journal()
        self._leftovers()
        return self.findings

    def _found(self, kind: str, name: str, problem: str, *, harmless: bool = False,
               fix: Callable[[], object] | None = None) -> None:
        repaired = False
        if self.repair and fix is not None:
            fix()
            repaired = True
        self.findings.append(Finding(kind, name, problem, harmless, repaired))

    def _has_blob(self, digest: str) -> bool:
        return (self.blob_dir / digest.removeprefix("sha256:")).is_file()

    # -- checks -----------------------------------------------------------------

    def _records(self) -> None:
        path = self.root / "cache.db"
        if not path.exists():
            return
        try:
            connection = sqlite3.connect(path, timeout=60)
            try:
                result = connection.execute("PRAGMA quick_check").fetchall()
            finally:
                connection.close()
            problem = "" if result == [("ok",)] else "; ".join(str(row[0]) for row in result[:3])
        except sqlite3.DatabaseError as err:
            problem = str(err)
        if problem:
            def move_aside() -> None:
                stamp = time.strftime("%Y%m%d%H%M%S")
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(f"{path}{suffix}", f"{path}.corrupt-{stamp}{suffix}")
            self._found("records", "cache.db", f"the database is damaged ({problem}); a repair "
                        "moves it aside (cache entries and build records start afresh)",
                        fix=move_aside)

    def _blobs(self) -> None:
        try:
            entries = sorted(os.scandir(self.blob_dir), key=lambda entry: entry.name)
        except FileNotFoundError:
            return
        names = []
        for entry in entries:
            if not _HEX.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
                path = Path(entry.path)
                self._found("blob", entry.name, "a stray file among the blobs",
                            fix=functools.partial(_unlink, path))
                continue
            names.append(entry.name)
        with ThreadPoolExecutor(max_workers=2) as pool:
            hashes = list(pool.map(lambda name: _hash_blob(self.blob_dir / name), names))
        for name, hashed in zip(names, hashes, strict=True):
            if hashed is None:
                continue  # removed meanwhile (a prune): nothing to judge
            path = self.blob_dir / name
            if hashed.sha256 != name:
                self._found("blob", "sha256:" + name,
                            f"its content hashes to sha256:{hashed.sha256}",
                            fix=functools.partial(_unlink, path))
            elif hashed.recorded is not None and hashed.recorded != hashed.checksum:
                self._found("blob", "sha256:" + name,
                            "the xxh3-128 checksum recorded on it is stale (its content is sound)",
                            fix=functools.partial(_record_checksum, path, hashed.checksum))

    def _tags(self) -> None:
        path = self.root / "index.json"
        try:
            index = json.loads(path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            self._found("tag", "index.json", f"unreadable: {err}")
            return
        broken: list[str] = []
        for entry in index.get("manifests", []) if isinstance(index, dict) else []:
            digest = entry.get("digest") if isinstance(entry, dict) else None
            annotations = entry.get("annotations") if isinstance(entry, dict) else None
            name = annotations.get(_REF_NAME) if isinstance(annotations, dict) else None
            label = str(name or digest)
            problem = self._image_problem(digest) if isinstance(digest, str) else "no digest"
            if problem:
                broken.append(str(digest))
                self._found("tag", label, problem)
        if broken and self.repair:
            self._drop_tags(set(broken))
            self.findings = [
                Finding(f.kind, f.name, f.problem, f.harmless, True) if f.kind == "tag" else f
                for f in self.findings
            ]

    def _image_problem(self, digest: str, depth: int = 0) -> str:
        """What is missing for the image (or image index) ``digest``; "" if it is whole."""
        if not self._has_blob(digest):
            return f"its manifest {digest} is missing"
        try:
            document = json.loads((self.blob_dir / digest.removeprefix("sha256:")).read_bytes())
        except (OSError, ValueError):
            return f"its manifest {digest} is not JSON"
        if not isinstance(document, dict):
            return f"its manifest {digest} is not a JSON object"
        for child in document.get("manifests", []) or []:
            if isinstance(child, dict) and isinstance(child.get("digest"), str) and depth < 4:
                problem = self._image_problem(child["digest"], depth + 1)
                if problem:
                    return problem
        config = document.get("config")
        wanted = [config.get("digest")] if isinstance(config, dict) else []
        wanted += [layer.get("digest") for layer in document.get("layers", []) or []
                   if isinstance(layer, dict)]
        for blob in wanted:
            if not isinstance(blob, str) or not self._has_blob(blob):
                return f"blob {blob} of manifest {digest} is missing"
        return ""

    def _drop_tags(self, digests: set[str]) -> None:
        path = self.root / "index.json"
        with files.exclusive_lock(self.root / "index.json.lock"):
            index = json.loads(path.read_bytes())
            index["manifests"] = [entry for entry in index.get("manifests", [])
                                  if entry.get("digest") not in digests]
            data = json.dumps(index, separators=(",", ":"), sort_keys=True).encode()
            files.write_atomically(path, data, staging_dir=self.root / "tmp")

    def _index(self) -> None:
        if not (self.root / "cache.db").exists():
            return
        try:
            index = CacheIndex(self.root / "cache.db")
            rows = index.rows()
        except CacheError as err:  # a damaged database: reported by _records already
            self._found("index", "cache.db", f"unreadable: {err}")
            return
        for entry, _ in rows:
            if not entry.diff_id:
                continue
            path = self.blob_dir / entry.diff_id.removeprefix("sha256:")
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                problem = f"its layer {entry.diff_id} is missing"
            else:
                problem = "" if size == entry.size else (
                    f"its layer {entry.diff_id} has {size} bytes, the entry says {entry.size}")
            if problem:
                self._found("index", entry.cache_key, problem,
                            fix=functools.partial(index.forget, entry.cache_key))

    def _snapshots(self) -> None:
        directory = self.root / "snapshots"
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except FileNotFoundError:
            return
        for entry in entries:
            path = Path(entry.path)
            fix = _remover(self.root, path)
            if not _SNAPSHOT_KEY.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
                self._found("snapshot", entry.name, "not a snapshot", fix=fix)
                continue
            try:
                inside = sorted(os.listdir(path))
            except OSError as err:
                self._found("snapshot", entry.name, f"unreadable: {err.strerror}", fix=fix)
                continue
            if inside != ["fs"] or not (path / "fs").is_dir():
                self._found("snapshot", entry.name, f"incomplete (holds {inside})", fix=fix)
                continue
            blob = self.blob_dir / entry.name
            if not _HEX.fullmatch(entry.name) or not blob.is_file():
                continue  # nothing to compare with; prune's business if nothing needs it
            problem = _compare_with_layer(path / "fs", blob)
            if problem:
                self._found("snapshot", entry.name, f"does not match its layer: {problem}",
                            fix=fix)

    def _cache_mounts(self) -> None:
        directory = self.root / "cachemounts"
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except FileNotFoundError:
            return
        for entry in entries:
            path = Path(entry.path)
            try:
                mount_id = (path / "id").read_bytes().decode("utf-8", "surrogateescape")
            except OSError:
                mount_id = None
            if mount_id is None or mount_hex(mount_id) != entry.name:
                problem = "no id file" if mount_id is None else "its id does not match its name"
            elif not (path / "data").is_dir() or not (path / "lock").is_file():
                problem = "incomplete (no data/ or lock)"
            else:
                continue
            self._found("cachemount", entry.name, problem, fix=_remover(self.root, path))

    def _journal(self) -> None:
        for entry in _scan(self.root / "journal"):
            path = Path(entry.path)
            try:
                manifest = json.loads(path.read_bytes()).get("manifest", "")
            except (OSError, ValueError, AttributeError):
                manifest = None
            if manifest is None:
                problem = "unreadable"
            elif not isinstance(manifest, str) or not manifest.startswith("sha256:") \
                    or not self._has_blob(manifest):
                problem = "its image is gone"
            else:
                continue
            self._found("journal", entry.name, f"stale entry: {problem}", harmless=True,
                        fix=functools.partial(_unlink, path))

    def _leftovers(self) -> None:
        now = time.time()
        for entry in _scan(self.root / "tmp"):
            info = _lstat(Path(entry.path))
            if info is None:
                continue
            if info.st_mtime > now - TMP_GRACE_SECONDS:
                continue
            if self.horizon is not None and info.st_mtime >= self.horizon:
                continue  # may belong to a running build
            if entry.name.startswith("blob-") and files.lock_held(Path(entry.path)):
                continue
            mounts = _mounts_under(Path(entry.path)) if stat.S_ISDIR(info.st_mode) else 0
            what = f"left by a build that is not running ({mounts} mounts still up)" if mounts \
                else "left by a build that is not running"
            self._found("tmp", entry.name, what, harmless=True,
                        fix=functools.partial(remove_tmp_entry, self.root, entry.name))
        for path in self.leases.dead():
            self._found("lease", path.name, "lease of a build that died", harmless=True,
                        fix=functools.partial(_unlink, path))
        locks = KeyLocks(self.root)
        for entry in _scan(locks.directory):
            if not files.lock_held(Path(entry.path)):
                self._found("lock", entry.name, "step lock nobody holds", harmless=True,
                            fix=locks.sweep)


@dataclass(frozen=True, slots=True)
class _BlobHashes:
    sha256: str
    checksum: str
    recorded: str | None


def _hash_blob(path: Path) -> _BlobHashes | None:
    """The blob's sha256 and xxh3-128, and the checksum recorded on it; None if it is gone."""
    digest = hashlib.sha256()
    checksum = xxhash.xxh3_128()
    try:
        with open(path, "rb", buffering=0) as file:
            recorded = blobcheck.recorded(file.fileno())
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
                checksum.update(chunk)
    except FileNotFoundError:
        return None
    return _BlobHashes(digest.hexdigest(), checksum.hexdigest(), recorded)


def _record_checksum(path: Path, checksum: str) -> None:
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as file:
        blobcheck.record(file.fileno(), checksum)


def _compare_with_layer(fs: Path, blob: Path) -> str:
    """Compare the regular files of a snapshot with those its layer tar lists: count and bytes.

    Whiteouts and directories are left out (overlay keeps them as device
    nodes and xattrs, the tar as ``.wh.`` files); a hard link counts as the
    file it links to, on both sides.
    """
    expected_count = expected_bytes = 0
    sizes: dict[str, int] = {}
    try:
        with tarfile.open(blob, "r:") as archive:
            for member in archive:
                base = member.name.rstrip("/").rsplit("/", 1)[-1]
                if base.startswith(".wh."):
                    continue
                if member.isreg():
                    sizes[member.name] = member.size
                    expected_count += 1
                    expected_bytes += member.size
                elif member.islnk():
                    expected_count += 1
                    expected_bytes += sizes.get(member.linkname, 0)
    except (OSError, tarfile.TarError) as err:
        return f"its layer is no readable tar ({err})"
    count = total = 0
    for directory, _, names in os.walk(fs):
        for name in names:
            try:
                info = os.lstat(os.path.join(directory, name))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                count += 1
                total += info.st_size
    if (count, total) != (expected_count, expected_bytes):
        return (f"{count} files of {total} bytes, the layer has {expected_count} files of "
                f"{expected_bytes} bytes")
    return ""


def _remover(root: Path, path: Path) -> Callable[[], None]:
    def remove() -> None:
        remove_dir(root, path)

    return remove


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _scan(directory: Path) -> Iterator[os.DirEntry[str]]:
    try:
        return iter(sorted(os.scandir(directory), key=lambda entry: entry.name))
    except (FileNotFoundError, NotADirectoryError):
        return iter(())


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _mounts_under(path: Path) -> int:
    from builder.snapshot.mount import mounts_under

    return len(mounts_under(path))
