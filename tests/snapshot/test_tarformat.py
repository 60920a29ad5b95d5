"""Header bytes: plain ustar where it fits, PAX only for what ustar cannot hold."""

from __future__ import annotations

import hashlib
import io
import tarfile

from builder.snapshot import tarformat
from builder.snapshot.tarformat import TarHeader
from tests.snapshot.trees import Member, members_of


def _archive(*headers: TarHeader) -> bytes:
    return (
        b"".join(tarformat.encode_header(header) for header in headers) + tarformat.END_OF_ARCHIVE
    )


def test_short_entry_is_one_plain_ustar_block() -> None:
    header = TarHeader(
        name=b"etc/passwd", type_flag=tarformat.TYPE_REGULAR, mode=0o4755, uid=7, gid=8, mtime=99
    )
    block = tarformat.encode_header(header)
    assert len(block) == 512
    assert block[156:157] == b"0"
    assert block[257:265] == b"ustar\x0000"
    assert block[265:329] == bytes(64)  # uname and gname stay empty
    assert block[100:108] == b"0004755\x00"
    assert members_of(_archive(header)) == [
        Member(name="etc/passwd", type=b"0", mode=0o4755, uid=7, gid=8, mtime=99)
    ]


def test_long_path_splits_into_prefix_without_pax() -> None:
    name = b"a" * 150 + b"/" + b"b" * 99
    block = tarformat.encode_header(TarHeader(name=name, type_flag=b"0", mode=0o644, uid=0, gid=0))
    assert len(block) == 512
    assert [member.name for member in members_of(_archive(TarHeader(name, b"0", 0o644, 0, 0)))] == [
        name.decode()
    ]


def test_unsplittable_path_uses_a_pax_path_record() -> None:
    name = b"x" * 101
    encoded = tarformat.encode_header(
        TarHeader(name=name, type_flag=b"0", mode=0o644, uid=0, gid=0)
    )
    assert encoded[156:157] == b"x"
    assert encoded[0:16] == b"PaxHeaders/xxxxx"
    assert members_of(_archive(TarHeader(name, b"0", 0o644, 0, 0))) == [
        Member(name=name.decode(), type=b"0", mode=0o644, pax=(("path", name.decode()),))
    ]


def test_non_ascii_names_and_link_targets_use_pax() -> None:
    header = TarHeader(
        name="caf\u00e9".encode(),
        type_flag=b"2",
        mode=0o777,
        uid=0,
        gid=0,
        link_name="\u00fcber".encode(),
    )
    assert members_of(_archive(header)) == [
        Member(
            name="caf\u00e9",
            type=b"2",
            mode=0o777,
            linkname="\u00fcber",
            pax=(("linkpath", "\u00fcber"), ("path", "caf\u00e9")),
        )
    ]


def test_large_ids_and_negative_mtime_use_pax() -> None:
    header = TarHeader(name=b"f", type_flag=b"0", mode=0o600, uid=1 << 22, gid=1 << 23, mtime=-5)
    (member,) = members_of(_archive(header))
    assert (member.uid, member.gid, member.mtime) == (1 << 22, 1 << 23, -5)
    assert dict(member.pax) == {"uid": str(1 << 22), "gid": str(1 << 23), "mtime": "-5"}


def test_xattrs_are_schily_records_with_binary_values() -> None:
    header = TarHeader(
        name=b"f",
        type_flag=b"0",
        mode=0o600,
        uid=0,
        gid=0,
        xattrs=((b"security.capability", b"\x01\x00\x00\x02\xff"), (b"user.k", b"v")),
    )
    with tarfile.open(fileobj=io.BytesIO(_archive(header))) as archive:
        (member,) = archive.getmembers()
    raw = {
        key: value.encode("utf-8", "surrogateescape") for key, value in member.pax_headers.items()
    }
    assert raw == {
        "SCHILY.xattr.security.capability": b"\x01\x00\x00\x02\xff",
        "SCHILY.xattr.user.k": b"v",
    }


def test_pax_record_length_counts_its_own_digits() -> None:
    # The decimal length includes its own digits, so 9 → 10 digit boundaries matter.
    for size in range(1, 1200):
        record = tarformat._pax_record(b"k", b"v" * size)
        length, _, _ = record.partition(b" ")
        assert int(length) == len(record)


def test_huge_device_numbers_use_base_256() -> None:
    header = TarHeader(
        name=b"dev", type_flag=b"3", mode=0o600, uid=0, gid=0, device_major=1 << 24, device_minor=3
    )
    (member,) = members_of(_archive(header))
    assert (member.devmajor, member.devminor) == (1 << 24, 3)


def test_directory_names_keep_their_slash_and_padding_fills_blocks() -> None:
    assert tarformat.padding(0) == b"" and len(tarformat.padding(1)) == 511
    block = tarformat.encode_header(TarHeader(name=b"d/", type_flag=b"5", mode=0o755, uid=0, gid=0))
    assert block[:3] == b"d/\x00"


def test_encoding_is_stable_across_releases() -> None:
    # A golden digest: if this changes, every cached layer digest changes.
    archive = _archive(
        TarHeader(name=b"d/", type_flag=b"5", mode=0o755, uid=0, gid=0, mtime=1_700_000_000),
        TarHeader(
            name=b"d/f" + b"y" * 120,
            type_flag=b"0",
            mode=0o644,
            uid=1000,
            gid=1000,
            mtime=1_700_000_000,
            xattrs=((b"user.a", b"b"),),
        ),
        TarHeader(name=b".wh.gone", type_flag=b"0", mode=0, uid=0, gid=0),
    )
    assert hashlib.sha256(archive).hexdigest() == GOLDEN


GOLDEN = "60f194bde94cd39c96850bd9582b2e8e1738d52d2d8666ea1cd77558b5f91b14"
