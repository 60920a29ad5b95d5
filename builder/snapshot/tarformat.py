"""Byte-exact tar headers: ustar, with a PAX extended header only when ustar cannot hold a field.

We write headers ourselves instead of through ``tarfile`` so a layer's bytes,
and so its digest, depend only on this module and not on the Python version
(``tarfile`` has changed its PAX choices and record padding between releases).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BLOCK_SIZE",
    "END_OF_ARCHIVE",
    "TarHeader",
    "encode_header",
    "padding",
]

BLOCK_SIZE = 512
# Two zero blocks end an archive.  Like Go's archive/tar (and so BuildKit),
# we do not pad the stream to a 10 KiB record.
END_OF_ARCHIVE = bytes(2 * BLOCK_SIZE)

TYPE_REGULAR = b"0"
TYPE_HARDLINK = b"1"
TYPE_SYMLINK = b"2"
TYPE_CHAR = b"3"
TYPE_BLOCK = b"4"
TYPE_DIRECTORY = b"5"
TYPE_FIFO = b"6"
_TYPE_PAX = b"x"

_NAME_SIZE = 100
_PREFIX_SIZE = 155
# Largest values the octal fields hold: 7 digits for ids and modes, 11 for
# size and mtime (one byte of each field is the terminating NUL).
_MAX_OCTAL_7 = 0o7777777
_MAX_OCTAL_11 = 0o77777777777


@dataclass(frozen=True, slots=True)
class TarHeader:
    """One archive entry's metadata; ``name`` is relative, with a trailing / for dirs."""

    name: bytes
    type_flag: bytes
    mode: int
    uid: int
    gid: int
    size: int = 0
    mtime: int = 0
    link_name: bytes = b""
    device_major: int = 0
    device_minor: int = 0
    xattrs: tuple[tuple[bytes, bytes], ...] = ()


def padding(size: int) -> bytes:
    """Zero bytes that pad ``size`` bytes of file data to a whole block."""
    return bytes(-size % BLOCK_SIZE)


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _device_number(value: int) -> bytes:
    # Device numbers have no PAX keyword; past 7 octal digits use the GNU
    # base-256 form (high bit set, big-endian), which Go and tarfile read.
    if value <= _MAX_OCTAL_7:
        return _octal(value, 8)
    return bytes([0x80]) + value.to_bytes(7, "big")


def _is_ascii(value: bytes) -> bool:
    return value.isascii() and b"\0" not in value


def _split_name(name: bytes) -> tuple[bytes, bytes] | None:
    """(prefix, name) that ustar can hold, or None if the path needs PAX."""
    if len(name) <= _NAME_SIZE:
        return b"", name
    # The prefix ends at a slash that is not itself stored.  Take the
    # leftmost slash that works, so the name part keeps as much as it can.
    first = max(1, len(name) - _NAME_SIZE - 1)
    for index in range(first, min(len(name) - 1, _PREFIX_SIZE + 1)):
        if name[index] == 0x2F:
            return name[:index], name[index + 1 :]
    return None


def _pax_record(key: bytes, value: bytes) -> bytes:
    # "%d %s=%s\n" where %d counts the whole record, itself included.
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:
        length = len(str(length).encode()) + len(body)
    return str(length).encode() + body


def _ustar_block(
    *,
    name: bytes,
    prefix: bytes,
    type_flag: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    link_name: bytes,
    device_major: int,
    device_minor: int,
) -> bytes:
    block = bytearray(BLOCK_SIZE)
    block[0:100] = name.ljust(100, b"\0")
    block[100:108] = _octal(mode, 8)
    block[108:116] = _octal(uid, 8)
    block[116:124] = _octal(gid, 8)
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(mtime, 12)
    block[148:156] = b" " * 8
    block[156:157] = type_flag
    block[157:257] = link_name.ljust(100, b"\0")
    block[257:265] = b"ustar\x0000"
    # uname and gname (265:329) stay empty: ids are numeric on purpose.
    block[329:337] = _device_number(device_major)
    block[337:345] = _device_number(device_minor)
    block[345:500] = prefix.ljust(155, b"\0")
    checksum = sum(block)
    block[148:156] = b"%06o\0 " % checksum
    return bytes(block)


def encode_header(header: TarHeader) -> bytes:
    """The header block(s) for ``header``: a PAX header first only if needed."""
    records: dict[bytes, bytes] = {}
    split = _split_name(header.name) if _is_ascii(header.name) else None
    if split is None:
        records[b"path"] = header.name
        split = (b"", _fallback_name(header.name))
    link_name = header.link_name
    if len(link_name) > _NAME_SIZE or not _is_ascii(link_name):
        records[b"linkpath"] = link_name
        link_name = b""
    size, uid, gid, mtime = header.size, header.uid, header.gid, header.mtime
    if size > _MAX_OCTAL_11:
        records[b"size"] = b"%d" % size
        size = 0
    if uid > _MAX_OCTAL_7:
        records[b"uid"] = b"%d" % uid
        uid = 0
    if gid > _MAX_OCTAL_7:
        records[b"gid"] = b"%d" % gid
        gid = 0
    if not 0 <= mtime <= _MAX_OCTAL_11:
        records[b"mtime"] = b"%d" % mtime
        mtime = 0
    for key, value in header.xattrs:
        records[b"SCHILY.xattr." + key] = value
    blocks = b""
    if records:
        payload = b"".join(_pax_record(key, records[key]) for key in sorted(records))
        blocks = (
            _ustar_block(
                name=_pax_header_name(split[1]),
                prefix=b"",
                type_flag=_TYPE_PAX,
                mode=0o644,
                uid=0,
                gid=0,
                size=len(payload),
                mtime=0,
                link_name=b"",
                device_major=0,
                device_minor=0,
            )
            + payload
            + padding(len(payload))
        )
    return blocks + _ustar_block(
        name=split[1],
        prefix=split[0],
        type_flag=header.type_flag,
        mode=header.mode,
        uid=uid,
        gid=gid,
        size=size,
        mtime=mtime,
        link_name=link_name,
        device_major=header.device_major,
        device_minor=header.device_minor,
    )


def _fallback_name(name: bytes) -> bytes:
    """What a reader that ignores PAX sees: the path's ASCII tail, cut to fit."""
    ascii_only = bytes(byte if 0x20 <= byte < 0x7F else 0x5F for byte in name)
    trailing_slash = ascii_only.endswith(b"/")
    cut = ascii_only.rstrip(b"/")[-(_NAME_SIZE - 1) :]
    return cut + b"/" if trailing_slash else cut


def _pax_header_name(entry_name: bytes) -> bytes:
    # A fixed directory keeps the stream deterministic; POSIX's suggested
    # "PaxHeaders.%p" would put the writer's pid into every layer.
    base = entry_name.rstrip(b"/").rsplit(b"/", 1)[-1]
    return (b"PaxHeaders/" + base)[:_NAME_SIZE]
