"""The chain of imported caches the solver asks: order, laziness, verification."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from builder.cachexport.imports import ImportChain
from builder.errors import CacheError
from builder.plan.graph import LayerRef
from cache.blobs import BlobStore
from cache.index import CacheIndex
from tests.cachexport.helpers import memory_cache


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "root")


@pytest.fixture
def index(tmp_path: Path) -> CacheIndex:
    (tmp_path / "root").mkdir(exist_ok=True)
    return CacheIndex(tmp_path / "root" / "cache.db")


def test_first_cache_that_has_the_key_answers(store: BlobStore, index: CacheIndex) -> None:
    first, _, _ = memory_cache("first", {"a": {"a": b"1"}})
    second, _, _ = memory_cache("second", {"a": {"a": b"2"}, "b": {"b": b"2"}})
    chain = ImportChain([first, second], blobs=store, index=index)
    hit_a, hit_b = chain.lookup("a"), chain.lookup("b")
    assert hit_a is not None and hit_a.source == "import:first"
    assert hit_b is not None and hit_b.source == "import:second"
    assert chain.lookup("c") is None


def test_layers_are_fetched_only_when_ensured(store: BlobStore, index: CacheIndex) -> None:
    cache, source, diff_ids = memory_cache("c", {"a": {"a": b"1"}, "b": {"b": b"22"}})
    chain = ImportChain([cache], blobs=store, index=index)
    hit_a, hit_b = chain.lookup("a"), chain.lookup("b")
    assert hit_a is not None and hit_b is not None
    assert source.opened == [] and index.lookup("a") is None  # nothing fetched yet
    chain.ensure([LayerRef(hit_b.diff_id, hit_b.size)])
    assert store.has(diff_ids["b"]) and not store.has(diff_ids["a"])
    entry = index.lookup("b")
    assert entry is not None and entry.diff_id == diff_ids["b"] and entry.created == 1000.0
    chain.ensure([LayerRef(hit_b.diff_id, hit_b.size)])  # already local: not fetched again
    assert len(source.opened) == 1
    chain.ensure_keys(["a"])
    assert store.has(diff_ids["a"]) and index.lookup("a") is not None


def test_empty_steps_and_layers_already_local_are_indexed_at_once(
    store: BlobStore, index: CacheIndex
) -> None:
    cache, source, diff_ids = memory_cache("c", {"empty": None, "a": {"a": b"1"}})
    chain = ImportChain([cache], blobs=store, index=index)
    assert chain.lookup("empty") is not None
    entry = index.lookup("empty")
    assert entry is not None and entry.diff_id == ""
    chain.ensure_keys(["a"])  # not looked up: not pending, so nothing to fetch
    assert source.opened == []
    assert chain.lookup("a") is not None
    chain.ensure_keys(["a"])
    # Another key naming a layer the store has now needs no fetch at all.
    again = dataclasses.replace(cache.document.records[1], key="a2")
    twin = dataclasses.replace(cache, document=dataclasses.replace(cache.document,
                                                                   records=(again,)))
    ImportChain([twin], blobs=store, index=index).lookup("a2")
    entry = index.lookup("a2")
    assert entry is not None and entry.diff_id == diff_ids["a"]
    assert len(source.opened) == 1


def test_a_damaged_layer_never_lands(store: BlobStore, index: CacheIndex) -> None:
    cache, source, diff_ids = memory_cache("c", {"a": {"a": b"1" * 1000}})
    (digest,) = source.blobs
    damaged = bytearray(source.blobs[digest])
    damaged[-12] ^= 0xFF
    source.blobs[digest] = bytes(damaged)
    chain = ImportChain([cache], blobs=store, index=index)
    hit = chain.lookup("a")
    assert hit is not None
    with pytest.raises(CacheError, match="does not match its digest|decompressing"):
        chain.ensure([LayerRef(hit.diff_id, hit.size)])
    assert not store.has(diff_ids["a"]) and index.lookup("a") is None


def test_a_record_whose_blob_the_cache_lacks_is_no_hit(
    store: BlobStore, index: CacheIndex
) -> None:
    cache, _, _ = memory_cache("c", {"a": {"a": b"1"}})
    broken = dataclasses.replace(cache, layers={})
    assert ImportChain([broken], blobs=store, index=index).lookup("a") is None
