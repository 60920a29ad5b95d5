"""pybuild: builds OCI images from Dockerfiles, reading them as BuildKit does."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
