"""USER resolution against the root's own /etc/passwd and /etc/group (runc's rules)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.errors import SandboxError
from builder.sandbox import UserSpec, home_directory, resolve_user

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment
app:x:1000:1000::/home/app:/bin/sh
svc:x:1001:50::/:/bin/false
app:x:2000:2000:a duplicate, ignored:/:/bin/sh
weird:x:notanumber:alsonot::/:
"""
GROUP = """\
root:x:0:
app:x:1000:
staff:x:50:app,svc
wheel:x:10:root,app
docker:x:999:svc
empty:x:20:
+nis
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    return tmp_path


def test_empty_user_is_root_without_reading_files(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, "") == UserSpec(0, 0, ())


def test_numeric_pair_is_taken_as_is_without_groups(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, "1000:1000") == UserSpec(1000, 1000, ())
    assert resolve_user(tmp_path, "root:root") == UserSpec(0, 0, ())


def test_name_gets_primary_gid_and_memberships_not_the_primary_group(root: Path) -> None:
    assert resolve_user(root, "app") == UserSpec(1000, 1000, (50, 10))
    assert resolve_user(root, "svc") == UserSpec(1001, 50, (50, 999))
    assert resolve_user(root, "root") == UserSpec(0, 0, (10,))


def test_numeric_uid_with_an_entry_is_that_user(root: Path) -> None:
    assert resolve_user(root, "1000") == UserSpec(1000, 1000, (50, 10))


def test_numeric_uid_without_an_entry_runs_with_gid_0(root: Path) -> None:
    assert resolve_user(root, "4242") == UserSpec(4242, 0, ())


def test_first_duplicate_entry_wins(root: Path) -> None:
    assert resolve_user(root, "app").uid == 1000


def test_explicit_group_replaces_gid_and_brings_no_memberships(root: Path) -> None:
    assert resolve_user(root, "app:staff") == UserSpec(1000, 50, ())
    assert resolve_user(root, "app:999") == UserSpec(1000, 999, ())
    assert resolve_user(root, "app:7777") == UserSpec(1000, 7777, ())
    assert resolve_user(root, "4242:docker") == UserSpec(4242, 999, ())


def test_unknown_user_name_is_an_error(root: Path) -> None:
    with pytest.raises(SandboxError,
                       match="^unable to find user nobody: no matching entries in passwd file$"):
        resolve_user(root, "nobody")


def test_unknown_group_name_is_an_error(root: Path) -> None:
    with pytest.raises(SandboxError,
                       match="^unable to find group ops: no matching entries in group file$"):
        resolve_user(root, "app:ops")


def test_user_name_without_passwd_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="unable to find user root"):
        resolve_user(tmp_path, "root")
    assert resolve_user(tmp_path, "123") == UserSpec(123, 0, ())


def test_malformed_numbers_read_as_zero_like_runc(root: Path) -> None:
    assert resolve_user(root, "weird") == UserSpec(0, 0, ())


def test_out_of_range_id_is_an_error(root: Path) -> None:
    with pytest.raises(SandboxError, match="out of range"):
        resolve_user(root, "4294967296")


def test_symlinked_passwd_is_read_inside_the_root(root: Path, tmp_path_factory:
                                                 pytest.TempPathFactory) -> None:
    host = tmp_path_factory.mktemp("host") / "shadow"
    host.write_text("intruder:x:0:0::/:/bin/sh\n")
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to(host)  # absolute: means root/<host path>
    with pytest.raises(SandboxError, match="unable to find user intruder"):
        resolve_user(root, "intruder")
    inside = root / str(host).lstrip("/")
    inside.parent.mkdir(parents=True)
    inside.write_text("insider:x:5:5::/:/bin/sh\n")
    assert resolve_user(root, "insider") == UserSpec(5, 5, ())


def test_relative_symlink_cannot_climb_out(root: Path) -> None:
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to("../../../../../../../../etc/passwd")
    # ".." stops at the root: this is root/etc/passwd, i.e. the link itself, a loop
    with pytest.raises(SandboxError, match="reading /etc/passwd"):
        resolve_user(root, "root")


def test_fifo_or_device_is_never_opened(root: Path) -> None:
    (root / "etc" / "passwd").unlink()
    os.mkfifo(root / "etc" / "passwd")
    with pytest.raises(SandboxError, match="unable to find user app"):
        resolve_user(root, "app")  # a FIFO would block forever if opened


def test_home_directory_is_the_passwd_entrys_or_root(root: Path) -> None:
    assert home_directory(root, 0) == "/root"
    assert home_directory(root, 1000) == "/home/app"
    assert home_directory(root, 4242) == "/"
