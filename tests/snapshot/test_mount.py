"""mount/umount through libc and overlay mounts: long chains, and no leaks however a block ends."""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.errors import SandboxError
from builder.snapshot import mount
from tests.snapshot.trees import needs_root


def _layers(
    root: Path, count: int, *, name: str = "layer-with-a-deliberately-long-name"
) -> list[Path]:
    """``count`` lower dirs, bottom first, each adding one file and overriding ``top``."""
    dirs = []
    for index in range(count):
        layer = root / f"{name}-{index:04d}"
        layer.mkdir()
        (layer / f"f{index}").write_text(str(index))
        (layer / "top").write_text(str(index))
        dirs.append(layer)
    return dirs


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for directory in (upper, work, merged):
        directory.mkdir()
    yield upper, work, merged
    assert mount.mounts_under(tmp_path) == []


@needs_root
@pytest.mark.parametrize("count", [1, 3, 120, 300])
def test_overlay_mounts_lower_chains_of_any_length(
    tmp_path: Path, scratch: tuple[Path, Path, Path], count: int
) -> None:
    # 120 long paths overflow a page of mount(2) options (fd names then fit);
    # 300 overflow even fd names (one fsconfig lowerdir+ call per layer).
    upper, work, merged = scratch
    lowers = _layers(tmp_path, count)
    with mount.overlay(list(reversed(lowers)), upper, work, merged) as root:
        assert root == merged
        assert mount.mounts_under(tmp_path) == [str(merged)]
        assert sorted(os.listdir(merged)) == sorted([f"f{i}" for i in range(count)] + ["top"])
        assert (merged / "top").read_text() == str(count - 1)  # the first lower wins
        (merged / "new").write_text("x")
    assert mount.mounts_under(tmp_path) == []
    assert os.listdir(upper) == ["new"]


@needs_root
def test_overlay_without_lower_dirs_uses_an_empty_lower(
    tmp_path: Path, scratch: tuple[Path, Path, Path]
) -> None:
    upper, work, merged = scratch
    with mount.overlay([], upper, work, merged):
        assert os.listdir(merged) == []
        (merged / "a").write_text("a")
    assert os.listdir(upper) == ["a"]
    assert sorted(os.listdir(tmp_path)) == ["merged", "upper", "work"]


@needs_root
def test_overlay_accepts_paths_with_commas_and_colons(tmp_path: Path) -> None:
    base = tmp_path / "odd,name:here"
    base.mkdir()
    lower = _layers(base, 2)
    upper, work, merged = base / "u", base / "w", base / "m"
    for directory in (upper, work, merged):
        directory.mkdir()
    with mount.overlay(lower, upper, work, merged):
        assert (merged / "top").read_text() == "0"
    assert mount.mounts_under(tmp_path) == []


@needs_root
def test_overlay_unmounts_when_the_block_raises(
    tmp_path: Path, scratch: tuple[Path, Path, Path]
) -> None:
    upper, work, merged = scratch
    with (
        pytest.raises(RuntimeError, match="boom"),
        mount.overlay(_layers(tmp_path, 2), upper, work, merged),
    ):
        assert mount.mounts_under(merged) == [str(merged)]
        raise RuntimeError("boom")
    assert mount.mounts_under(tmp_path) == []


@needs_root
def test_overlay_unmounts_on_keyboard_interrupt(
    tmp_path: Path, scratch: tuple[Path, Path, Path]
) -> None:
    upper, work, merged = scratch
    with (
        pytest.raises(KeyboardInterrupt),
        mount.overlay(_layers(tmp_path, 2), upper, work, merged),
    ):
        # A real SIGINT, delivered to this (main) thread as Ctrl-C would be.
        signal.raise_signal(signal.SIGINT)
    assert mount.mounts_under(tmp_path) == []


@needs_root
def test_busy_overlay_is_detached_lazily(tmp_path: Path, scratch: tuple[Path, Path, Path]) -> None:
    upper, work, merged = scratch
    with mount.overlay(_layers(tmp_path, 1), upper, work, merged):
        holder = os.open(merged, os.O_RDONLY | os.O_DIRECTORY)
        # A process whose cwd is inside keeps the mount busy; an fd alone
        # does not, so emulate with a child's cwd.
        pid = os.fork()
        if pid == 0:
            os.chdir(merged)
            signal.pause()
            os._exit(0)
    try:
        assert mount.mounts_under(tmp_path) == []
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(holder)


@needs_root
def test_failed_overlay_mount_names_target_and_leaves_nothing(
    tmp_path: Path, scratch: tuple[Path, Path, Path]
) -> None:
    upper, work, merged = scratch
    with (
        pytest.raises(SandboxError, match=f"overlay.*{merged}") as caught,
        mount.overlay([tmp_path / "missing"], upper, work, merged),
    ):
        pass
    assert isinstance(caught.value.__cause__, OSError)
    assert mount.mounts_under(tmp_path) == []


@needs_root
def test_more_lower_dirs_than_overlay_allows_is_a_sandbox_error(
    tmp_path: Path, scratch: tuple[Path, Path, Path]
) -> None:
    upper, work, merged = scratch
    lower = tmp_path / "l"
    lower.mkdir()
    with (
        pytest.raises(SandboxError, match="501 lower dirs"),
        mount.overlay([lower] * 501, upper, work, merged),
    ):
        pass


@needs_root
def test_upper_stays_a_faithful_diff(tmp_path: Path, scratch: tuple[Path, Path, Path]) -> None:
    # redirect_dir=off: renaming a lower dir is refused (tools copy instead),
    # so the upper never holds a redirect into a lower layer; metacopy=off:
    # a chmod copies the file's data up too.
    upper, work, merged = scratch
    lower = tmp_path / "lower"
    (lower / "dir").mkdir(parents=True)
    (lower / "file").write_text("data")
    with mount.overlay([lower], upper, work, merged):
        with pytest.raises(OSError) as caught:
            os.rename(merged / "dir", merged / "moved")
        assert caught.value.errno == errno.EXDEV
        os.chmod(merged / "file", 0o600)
    assert (upper / "file").read_text() == "data"
    assert [key for key in os.listxattr(upper / "file") if "metacopy" in key] == []


@needs_root
def test_mount_and_umount_errors_say_what_and_where(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match=f"mounting tmpfs none at {tmp_path}/nowhere: No such"):
        mount.mount("none", tmp_path / "nowhere", "tmpfs")
    with pytest.raises(SandboxError, match=f"unmounting {tmp_path}: Invalid argument"):
        mount.umount(tmp_path)


@needs_root
def test_mount_tmpfs_and_bind_through_libc(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    mount.mount("tmpfs", target, "tmpfs", mount.MS_NOSUID, "size=1m,mode=700")
    try:
        (target / "inside").write_text("x")
        assert mount.mounts_under(tmp_path) == [str(target)]
        bound = tmp_path / "b"
        bound.mkdir()
        mount.mount(target, bound, None, mount.MS_BIND)
        assert (bound / "inside").read_text() == "x"
        mount.umount(bound)
    finally:
        mount.umount(target)
    assert mount.mounts_under(tmp_path) == []


@needs_root
def test_mounts_under_decodes_escaped_mount_points(tmp_path: Path) -> None:
    target = tmp_path / "with space\tand tab"
    target.mkdir()
    mount.mount("tmpfs", target, "tmpfs")
    try:
        assert mount.mounts_under(tmp_path) == [str(target)]
    finally:
        mount.umount(target, lazy=True)
    assert mount.mounts_under(tmp_path) == []


@needs_root
def test_overlays_in_threads_do_not_interfere(tmp_path: Path) -> None:
    # fd names are per process, not per thread, and no cwd is changed: two
    # threads mounting long chains at once each see their own layers.
    failures: list[BaseException] = []

    def run(tag: str) -> None:
        try:
            base = tmp_path / tag
            base.mkdir()
            lowers = _layers(base, 120, name=f"{tag}-layer-with-a-long-name")
            upper, work, merged = base / "u", base / "w", base / "m"
            for directory in (upper, work, merged):
                directory.mkdir()
            for _ in range(5):
                with mount.overlay(lowers, upper, work, merged):
                    assert len(os.listdir(merged)) == 121
        except BaseException as err:  # noqa: BLE001 - reported below
            failures.append(err)

    threads = [threading.Thread(target=run, args=(tag,)) for tag in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert mount.mounts_under(tmp_path) == []


@needs_root
def test_interrupt_right_after_the_mount_call_still_unmounts(
    tmp_path: Path, scratch: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The window between mount(2) returning and overlay() noting it cannot be
    # hit by a real signal on demand, so the mount step itself raises after
    # mounting, as a SIGINT landing in that window would.
    upper, work, merged = scratch
    real_mount = mount._mount_overlay

    def mount_then_interrupt(*args: object, **kwargs: object) -> None:
        real_mount(*args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(mount, "_mount_overlay", mount_then_interrupt)
    with (
        pytest.raises(KeyboardInterrupt),
        mount.overlay(_layers(tmp_path, 1), upper, work, merged),
    ):
        pytest.fail("the block must not run")
    assert mount.mounts_under(tmp_path) == []
