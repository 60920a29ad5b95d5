"""builder.export exports exactly its public names, each importable."""

from __future__ import annotations

import builder.export


def test_every_exported_name_resolves() -> None:
    for name in builder.export.__all__:
        assert getattr(builder.export, name) is not None, name


def test_exports_are_the_documented_set() -> None:
    assert sorted(builder.export.__all__) == [
        "Compression",
        "EXPORTERS",
        "Exporter",
        "OutputSpec",
        "export",
        "export_docker",
        "export_local",
        "export_oci",
        "export_tar",
        "parse_output",
    ]
