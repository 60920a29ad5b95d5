"""Pull's decoders: bounded pieces whatever the ratio, concatenated gzip members and zstd frames."""

from __future__ import annotations

import gzip
import zlib

import pytest
import pyzstd

from builder.image.layerstream import _OUTPUT, _decoder_for

ZEROS = bytes(64 << 20)  # 64 MiB that compress to a few dozen KiB


def _decode(packed: bytes) -> tuple[bytes, int]:
    """What the decoder makes of ``packed`` fed in 1 MiB pieces, and its largest piece."""
    decoder = _decoder_for(packed[:4])
    pieces = [
        piece
        for offset in range(0, len(packed), 1 << 20)
        for piece in decoder.decompress(packed[offset : offset + (1 << 20)])
    ]
    pieces.append(decoder.flush())
    return b"".join(pieces), max(len(piece) for piece in pieces)


@pytest.mark.parametrize(
    "pack",
    [
        lambda data: gzip.compress(data, mtime=0),
        lambda data: pyzstd.compress(data),
        # Several gzip members and several zstd frames, as pigz-like and pzstd-like tools write.
        lambda data: b"".join(gzip.compress(data[i : i + (16 << 20)], mtime=0)
                              for i in range(0, len(data), 16 << 20)),
        lambda data: b"".join(pyzstd.compress(data[i : i + (16 << 20)])
                              for i in range(0, len(data), 16 << 20)),
    ],
    ids=["gzip", "zstd", "gzip-members", "zstd-frames"],
)
def test_highly_compressible_layers_come_out_in_bounded_pieces(pack: object) -> None:
    packed = pack(ZEROS)  # type: ignore[operator]
    assert len(packed) < (1 << 20)  # the whole layer arrives in one read
    plain, largest = _decode(packed)
    assert plain == ZEROS
    assert largest <= _OUTPUT


def test_a_truncated_stream_is_an_error() -> None:
    packed = gzip.compress(b"some layer bytes" * 1000, mtime=0)
    decoder = _decoder_for(packed)
    b"".join(decoder.decompress(packed[: len(packed) // 2]))
    with pytest.raises((EOFError, zlib.error)):
        decoder.flush()
