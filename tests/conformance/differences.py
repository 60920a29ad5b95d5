"""Two built images → the list of every way they differ, field by field.

A difference names where (a path, or ``config``), what (an entry field or
a config key) and both values, so an allowance in known_differences.py can
name exactly the difference it accepts and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.conformance.trees import FIELDS, Entry

__all__ = ["Built", "Difference", "compare"]


@dataclass(frozen=True, slots=True)
class Built:
    """One builder's result for one case: its root tree and its settings."""

    tree: dict[str, Entry]
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Difference:
    """pybuild has ``pybuild`` where buildah has ``buildah``.

    For a path only one side has, ``field`` is ``kind`` and the other
    side's value is None. Values are hashable (lists become tuples) so
    differences can be compared as sets.
    """

    where: str
    field: str
    pybuild: Any
    buildah: Any

    def __str__(self) -> str:
        return f"{self.where!r} {self.field}: pybuild {self.pybuild!r}, buildah {self.buildah!r}"


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((key, _frozen(item)) for key, item in value.items()))
    return value


def _compare_trees(ours: dict[str, Entry], theirs: dict[str, Entry]) -> list[Difference]:
    differences = []
    for path in sorted(ours.keys() | theirs.keys()):
        mine, other = ours.get(path), theirs.get(path)
        if mine is None or other is None or mine.kind != other.kind:
            differences.append(Difference(path, "kind", mine and mine.kind, other and other.kind))
            continue
        for field in FIELDS:
            left, right = getattr(mine, field), getattr(other, field)
            if left != right:
                differences.append(Difference(path, field, left, right))
    return differences


def compare(ours: Built, theirs: Built) -> list[Difference]:
    """Every difference between pybuild's image and buildah's, config first."""
    differences = [
        Difference("config", key, _frozen(ours.config[key]), _frozen(theirs.config[key]))
        for key in ours.config
        if ours.config[key] != theirs.config[key]
    ]
    return differences + _compare_trees(ours.tree, theirs.tree)
