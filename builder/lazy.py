"""Lazy re-exports for package ``__init__`` modules.

A package's public names are re-exported from its ``__init__`` (with
``__all__``), but importing every submodule up front would cost start-up time
that ``pybuild parse`` and a cached ``pybuild build`` cannot spare.  A package
lists where each name lives and gets a module ``__getattr__`` that imports the
home module on first use (PEP 562) and remembers the value.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["exports"]


def exports(package: str, homes: Mapping[str, str]) -> Callable[[str], object]:
    """The ``__getattr__`` for ``package``: each name is imported from ``homes[name]``."""

    def __getattr__(name: str) -> object:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
