"""Sharing the build cache between machines: --cache-to and --cache-from.

    options.py    the flags' CSV syntax → CacheSpec
    document.py   the exported records (key → layer) and their JSON
    imports.py    --cache-from: the chain of imported caches the solver asks
    landing.py    an imported layer → a verified, uncompressed local blob
    local.py      type=local: an OCI layout directory
    registry.py   type=registry: an OCI manifest in a registry
    inline.py     type=image: the inline cache of a local image
    export.py     --cache-to: this build's records → a target; inline config
    mounts.py     cache mounts as layers, and their restore
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from builder.cachexport.imports import ImportChain, LoadedCache, load_all
from builder.cachexport.options import CacheSpec
from builder.image.store import ImageStore
from builder.registry.client import RegistryOptions
from cache.index import CacheIndex

__all__ = ["open_imports"]


def open_imports(
    specs: Sequence[CacheSpec],
    *,
    root: Path,
    store: ImageStore,
    index: CacheIndex,
    options: RegistryOptions,
    warn: Callable[[str], None],
) -> ImportChain:
    """Load every --cache-from (unreadable ones become warnings) and restore cache mounts."""
    from builder.cachexport.mounts import restore_mounts

    def loader(spec: CacheSpec) -> Callable[[], LoadedCache]:
        if spec.type == "local":
            from builder.cachexport.local import load_local

            return lambda: load_local(Path(spec.location))
        if spec.type == "image":
            from builder.cachexport.inline import load_image

            return lambda: load_image(store, spec.location)
        from builder.cachexport.registry import load_registry

        return lambda: load_registry(spec.location, options)

    caches = load_all([(spec.label, loader(spec)) for spec in specs], warn)
    restore_mounts(caches, root, store.blobs, warn)
    return ImportChain(caches, blobs=store.blobs, index=index)
