"""A cached layer from elsewhere → an uncompressed, verified blob in the local store.

The work is builder/image/layerstream.py's, which a pull shares: this only
words its failures as a cache's.
"""

from __future__ import annotations

from builder.errors import CacheError
from builder.image import oci
from builder.image.layerstream import LayerLandingError, Readable, land_uncompressed
from cache.blobs import BlobRef, BlobStore

__all__ = ["Readable", "land_layer"]


def land_layer(
    stream: Readable, blob: oci.Descriptor, diff_id: str, blobs: BlobStore, *, what: str
) -> BlobRef:
    """Store ``stream`` (the blob ``blob`` describes) uncompressed; it must hash to diff_id."""
    try:
        return land_uncompressed(stream, blob, diff_id, blobs)
    except LayerLandingError as err:
        reasons = {
            LayerLandingError.TOO_LARGE: f"layer {blob.digest} is larger than {blob.size} bytes",
            LayerLandingError.NOT_ITS_DIGEST: f"layer {blob.digest} does not match its digest",
            LayerLandingError.UNDECODABLE: f"decompressing layer {blob.digest}: {err.detail}",
            LayerLandingError.NOT_ITS_DIFF_ID: f"layer {blob.digest} does not unpack to {diff_id}",
        }
        raise CacheError(f"{what}: {reasons[err.reason]}") from err
