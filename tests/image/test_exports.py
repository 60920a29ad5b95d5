"""builder.image exports exactly its public names, each importable."""

from __future__ import annotations

import builder.image


def test_every_exported_name_resolves() -> None:
    for name in builder.image.__all__:
        assert getattr(builder.image, name) is not None, name


def test_exports_are_the_documented_set() -> None:
    assert sorted(builder.image.__all__) == [
        "ContainerConfig",
        "Descriptor",
        "Healthcheck",
        "HistoryEntry",
        "ImageConfig",
        "ImageRecord",
        "ImageStore",
        "Index",
        "Manifest",
        "Platform",
        "Reference",
        "canonical_json",
        "parse_reference",
    ]
