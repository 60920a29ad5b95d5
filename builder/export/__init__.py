"""Images out of the store in buildx's output formats: oci, docker, local, tar; and `save`.

One module per output behind the ``Exporter`` protocol (exporter.py), as
BuildKit's exporter/ has one package each; options.py parses ``-o``.
"""

from __future__ import annotations

from builder import lazy

__all__ = [
    "EXPORTERS",
    "Compression",
    "Exporter",
    "OutputSpec",
    "export",
    "export_docker",
    "export_local",
    "export_oci",
    "export_tar",
    "parse_output",
]

# `save` lives in builder.export.save and is not re-exported: the function
# would shadow its own submodule. Lazy like builder.snapshot: the CLI parses -o before any build and must not
# pay for pyzstd and the tar code until an export actually runs.
_HOMES = {
    "EXPORTERS": "builder.export.exporter",
    "Exporter": "builder.export.exporter",
    "export": "builder.export.exporter",
    "Compression": "builder.export.options",
    "OutputSpec": "builder.export.options",
    "parse_output": "builder.export.options",
    "export_docker": "builder.export.docker",
    "export_local": "builder.export.local",
    "export_oci": "builder.export.oci",
    "export_tar": "builder.export.tar",
}

__getattr__ = lazy.exports(__name__, _HOMES)
