"""The keep-storage policy: sizes as docker writes them, and ROOT/config.json's gc section.

Apart from the collector (cache/gc.py) because every build reads the policy,
and most find none: reading it must not import the collector and its
inventory of the store.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from builder.errors import CacheError

__all__ = ["load_keep_storage", "parse_size"]

_CONFIG = "config.json"
# go-units' RAMInBytes, which docker and buildx use for --keep-storage: binary
# multiples, an optional "i" and "b", any case ("10GB", "512m", "1.5GiB").
_SIZE = re.compile(r"(\d+(?:\.\d+)?) ?([kmgtp])?i?b?", re.IGNORECASE)
_UNITS = {None: 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """``10GB``, ``512m``, ``1.5GiB``, ``1000`` → bytes (binary multiples, as docker's flags)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid size {text!r}: expected a number with an optional unit "
                         "(B, KB, MB, GB, TB)")
    unit = match.group(2).lower() if match.group(2) else None
    return int(float(match.group(1)) * _UNITS[unit])


def load_keep_storage(root: Path) -> int | None:
    """The keep-storage policy of ROOT/config.json (``{"gc": {"keepStorage": "10GB"}}``)."""
    path = Path(root) / _CONFIG
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise CacheError(f"{path}: not valid JSON: {err}") from err
    gc = document.get("gc") if isinstance(document, dict) else None
    if gc is None:
        return None
    value = gc.get("keepStorage") if isinstance(gc, dict) else None
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        try:
            return parse_size(value)
        except ValueError as err:
            raise CacheError(f"{path}: gc.keepStorage: {err}") from err
    raise CacheError(f"{path}: gc.keepStorage must be a size such as \"10GB\" or a byte count")
