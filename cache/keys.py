"""Cache keys: xxh3-128 over a versioned, length-framed canonical encoding.

Each field is framed with its length so no two different inputs encode alike
("ab"+"c" vs "a"+"bc"), and every encoding starts with a tag naming its
version ("pybuild.run.v1"): changing what a key covers means bumping the tag.
"""

from __future__ import annotations

from collections.abc import Iterable

import xxhash

__all__ = ["KeyBuilder", "cache_key"]


class KeyBuilder:
    """Accumulates framed fields; ``hexdigest()`` gives the key."""

    __slots__ = ("_hash",)

    def __init__(self, tag: str) -> None:
        self._hash = xxhash.xxh3_128()
        self.text(tag)

    def bytes(self, data: bytes) -> KeyBuilder:
        self._hash.update(len(data).to_bytes(8, "little"))
        self._hash.update(data)
        return self

    def text(self, value: str) -> KeyBuilder:
        return self.bytes(value.encode("utf-8", "surrogateescape"))

    def texts(self, values: Iterable[str]) -> KeyBuilder:
        values = tuple(values)
        self.bytes(len(values).to_bytes(8, "little"))
        for value in values:
            self.text(value)
        return self

    def pairs(self, pairs: Iterable[tuple[str, str]]) -> KeyBuilder:
        pairs = tuple(pairs)
        self.bytes(len(pairs).to_bytes(8, "little"))
        for key, value in pairs:
            self.text(key).text(value)
        return self

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def cache_key(tag: str, *fields: str) -> str:
    builder = KeyBuilder(tag)
    for field in fields:
        builder.text(field)
    return builder.hexdigest()
