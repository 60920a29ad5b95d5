"""SOURCE_DATE_EPOCH: the same Dockerfile and context give the same image digest anywhere.

Two fresh roots, each holding the busybox base imported separately (so even
the base images' own dates differ), build a Dockerfile whose RUN creates and
deletes files, whose COPY and ADD bring context files and a local tar; with
the same epoch the digests match, without it they do not.  The layer cache
must keep layers of different epochs apart.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import _run

pytestmark = pytest.mark.root

EPOCH = 1_700_000_000  # 2023-11-14T22:13:20Z
EPOCH_TEXT = "2023-11-14T22:13:20Z"
OLD = 1_000_000_000  # an mtime before the epoch: kept as it is

DOCKERFILE = (
    "FROM busybox\n"
    "COPY app.txt /app/app.txt\n"
    "ADD files.tar /opt/\n"
    "RUN mkdir -p /data && echo hello > /data/hello && touch /data/made && rm /etc/group\n"
    "WORKDIR /work\n"
    "ENV MODE=repro\n"
    'CMD ["sh"]\n'
)


@pytest.fixture(autouse=True)
def _no_epoch_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The builds below choose their epoch; one inherited from CI must not leak in.
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


@pytest.fixture
def context(tmp_path: Path) -> Path:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "app.txt").write_text("app\n")  # mtime: now, after the epoch
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, mtime in (("new.txt", time.time()), ("old.txt", OLD)):
            data = name.encode()
            member = tarfile.TarInfo(name)
            member.size, member.mtime = len(data), int(mtime)
            tar.addfile(member, io.BytesIO(data))
    (context / "files.tar").write_bytes(archive.getvalue())
    return context


def _fresh_root(tmp_path: Path, name: str, rootfs: Path) -> Path:
    root = tmp_path / name
    imported = _run(["import", str(rootfs), "-t", "busybox:latest", "--root", str(root)])
    assert imported.returncode == 0, imported.stderr
    return root


def _build(root: Path, context: Path, *extra: str,
           env: dict[str, str] | None = None) -> tuple[str, tuple[int, int]]:
    """Build; returns the image digest and (steps run, steps cached)."""
    result = _run(["build", "--root", str(root), "--progress", "plain", "-t", "app",
                   *extra, str(context)], env=env)
    assert result.returncode == 0, result.stderr
    summary = re.search(r"^pybuild: .* (\d+) run, (\d+) cached.*(sha256:[0-9a-f]{64})$",
                        result.stderr, re.MULTILINE)
    assert summary, result.stderr
    return summary.group(3), (int(summary.group(1)), int(summary.group(2)))


def _config(root: Path) -> dict[str, object]:
    result = _run(["inspect", "--root", str(root), "app"])
    assert result.returncode == 0, result.stderr
    config: dict[str, object] = json.loads(result.stdout)[0]["Config"]
    return config


def _layer_members(root: Path, diff_id: str) -> list[tarfile.TarInfo]:
    blob = root / "blobs" / "sha256" / diff_id.removeprefix("sha256:")
    with tarfile.open(blob, mode="r:") as tar:
        return tar.getmembers()


def test_same_epoch_same_digest_from_two_empty_roots(
    tmp_path: Path, busybox_rootfs: Path, context: Path
) -> None:
    first_root = _fresh_root(tmp_path, "first", busybox_rootfs)
    time.sleep(1.1)  # the second base import and build happen a second later
    second_root = _fresh_root(tmp_path, "second", busybox_rootfs)
    epoch_arg = ("--build-arg", f"SOURCE_DATE_EPOCH={EPOCH}")

    first, (ran, _) = _build(first_root, context, *epoch_arg)
    assert ran == 4  # COPY, ADD, RUN, WORKDIR
    time.sleep(1.1)
    second, _ = _build(second_root, context, *epoch_arg)
    assert first == second

    config = _config(second_root)
    assert config["created"] == EPOCH_TEXT
    history = config["history"]
    assert isinstance(history, list)
    # The base's own entry (imported now, after the epoch) is clamped too.
    assert {entry["created"] for entry in history} == {EPOCH_TEXT}

    rootfs = config["rootfs"]
    assert isinstance(rootfs, dict)
    new_layers = rootfs["diff_ids"][1:]
    assert len(new_layers) == 4
    mtimes: dict[str, float] = {}
    for diff_id in new_layers:
        for member in _layer_members(second_root, diff_id):
            assert member.mtime <= EPOCH, (member.name, member.mtime)
            assert member.uname == member.gname == ""
            mtimes[member.name] = member.mtime
    assert mtimes["app/app.txt"] == EPOCH  # copied now: clamped
    assert mtimes["opt/new.txt"] == EPOCH
    assert mtimes["opt/old.txt"] == OLD  # older than the epoch: kept
    assert mtimes["data/made"] == EPOCH
    assert "etc/.wh.group" in mtimes


def test_without_epoch_times_differ(
    tmp_path: Path, busybox_rootfs: Path, context: Path
) -> None:
    root = _fresh_root(tmp_path, "plain", busybox_rootfs)
    with_epoch, _ = _build(root, context, "--build-arg", f"SOURCE_DATE_EPOCH={EPOCH}")
    time.sleep(1.1)
    other_root = _fresh_root(tmp_path, "other", busybox_rootfs)
    without, (ran, cached) = _build(other_root, context)
    assert (ran, cached) == (4, 0)
    assert without != with_epoch
    config = _config(other_root)
    assert config["created"] != EPOCH_TEXT
    rootfs = config["rootfs"]
    assert isinstance(rootfs, dict)
    made = [member for diff_id in rootfs["diff_ids"][1:]
            for member in _layer_members(other_root, diff_id) if member.name == "data/made"]
    assert made and made[0].mtime > EPOCH


def test_layer_cache_keeps_epochs_apart(
    tmp_path: Path, busybox_rootfs: Path, context: Path
) -> None:
    root = _fresh_root(tmp_path, "cache", busybox_rootfs)
    first, (ran, _) = _build(root, context, "--build-arg", f"SOURCE_DATE_EPOCH={EPOCH}")
    assert ran == 4
    # The environment variable is the same epoch: every layer is reused.
    again, (ran, cached) = _build(root, context, env={"SOURCE_DATE_EPOCH": str(EPOCH)})
    assert (again, ran, cached) == (first, 0, 4)
    # Another epoch, or none, must not reuse layers clamped to this one.
    other, (ran, cached) = _build(root, context, "--build-arg",
                                  f"SOURCE_DATE_EPOCH={EPOCH + 1}")
    assert (ran, cached) == (4, 0)
    assert other != first
    _, (ran, cached) = _build(root, context)
    assert (ran, cached) == (4, 0)


def test_invalid_epoch_is_refused(tmp_path: Path, busybox_rootfs: Path, context: Path) -> None:
    root = _fresh_root(tmp_path, "bad", busybox_rootfs)
    result = _run(["build", "--root", str(root), "--build-arg", "SOURCE_DATE_EPOCH=yesterday",
                   str(context)])
    assert result.returncode == 1
    assert "invalid SOURCE_DATE_EPOCH: yesterday" in result.stderr
    assert "Traceback" not in result.stderr
