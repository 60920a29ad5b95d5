"""The build journal answers only when nothing the build read has changed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from builder import journal


def _store(tmp_path: Path) -> tuple[Path, Path, str]:
    root = tmp_path / "root"
    (root / "tmp").mkdir(parents=True)
    (root / "blobs" / "sha256").mkdir(parents=True)
    manifest = "sha256:" + "a" * 64
    (root / "blobs" / "sha256" / ("a" * 64)).write_text("{}")
    (root / "index.json").write_text('{"manifests":[]}')
    context = tmp_path / "context"
    (context / "sub").mkdir(parents=True)
    (context / "sub" / "file").write_text("one")
    old = time.time() - 10
    for path in (context / "sub" / "file", context / "sub", context):
        os.utime(path, (old, old))
    return root, context, manifest


def _key(root: Path, dockerfile: bytes = b"FROM scratch\n", **extra: object) -> str:
    key = journal.journal_key(root=root, dockerfile=dockerfile, build_args=(), target="",
                              tags=("app",), version="test", **extra)  # type: ignore[arg-type]
    assert key is not None
    return key


def _record(root: Path, context: Path, manifest: str, *, exceptions: bool = False) -> bool:
    stats = {rel: os.lstat(context / rel) for rel in ("sub", "sub/file")}
    # Let the ctime of the utime calls age past the racy window.
    return journal.record(
        root, _key(root), context=context, manifest=manifest,
        lines=[("[1/1] COPY . /", True)], steps=1, cached=1, context_stats=stats,
        ignore_files=[context / ".dockerignore"], ignore_has_exceptions=exceptions,
    )


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, Path, str]:
    root, context, manifest = _store(tmp_path)
    time.sleep(0.15)
    assert _record(root, context, manifest)
    return root, context, manifest


def test_unchanged_inputs_replay(recorded: tuple[Path, Path, str]) -> None:
    root, context, manifest = recorded
    entry = journal.load(root, _key(root), context)
    assert entry is not None and entry["manifest"] == manifest
    assert journal.replay_lines(entry) == ["#1 [1/1] COPY . /", "#1 CACHED"]


def test_changed_file_added_file_and_ignore_file_miss(recorded: tuple[Path, Path, str]) -> None:
    root, context, _ = recorded
    (context / "sub" / "file").write_text("two")
    assert journal.load(root, _key(root), context) is None


def test_new_file_misses(recorded: tuple[Path, Path, str]) -> None:
    root, context, _ = recorded
    (context / "sub" / "new").write_text("x")
    assert journal.load(root, _key(root), context) is None


def test_new_ignore_file_misses(recorded: tuple[Path, Path, str]) -> None:
    root, context, _ = recorded
    (context / ".dockerignore").write_text("sub\n")
    assert journal.load(root, _key(root), context) is None


def test_changed_tags_dockerfile_or_epoch_change_the_key(
    recorded: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _, _ = recorded
    key = _key(root)
    assert _key(root, b"FROM scratch\nRUN x\n") != key
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")
    assert _key(root) != key
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    (root / "index.json").write_text('{"manifests":[{"x":1}]}')
    assert _key(root) != key


def test_missing_manifest_blob_misses(recorded: tuple[Path, Path, str]) -> None:
    root, context, _ = recorded
    (root / "blobs" / "sha256" / ("a" * 64)).unlink()
    assert journal.load(root, _key(root), context) is None


def test_ignore_exceptions_and_racy_files_are_not_journaled(tmp_path: Path) -> None:
    root, context, manifest = _store(tmp_path)
    time.sleep(0.15)
    assert not _record(root, context, manifest, exceptions=True)
    (context / "sub" / "file").write_text("just now")
    assert not _record(root, context, manifest)
