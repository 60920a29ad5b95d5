"""A minimal OCI image layout around layer tars, so umoci can judge them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def _put(blobs: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_layout(root: Path, layers: list[bytes], *, tag: str = "latest") -> None:
    """Write ``root`` as an OCI layout whose image ``tag`` has ``layers``, bottom first."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    layer_descriptors = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar", **_put(blobs, layer)}
        for layer in layers
    ]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {
            "type": "layers",
            "diff_ids": [descriptor["digest"] for descriptor in layer_descriptors],
        },
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **_put(blobs, json.dumps(config).encode()),
        },
        "layers": layer_descriptors,
    }
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **_put(blobs, json.dumps(manifest).encode()),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
