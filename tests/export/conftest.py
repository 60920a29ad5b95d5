"""Fixtures: a fresh store with the layered sample image in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.image import oci
from builder.image.store import ImageStore
from tests.export.sample import put_layered_image


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "root")


@pytest.fixture
def image(store: ImageStore) -> oci.Descriptor:
    return put_layered_image(store)
