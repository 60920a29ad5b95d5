"""The --cache-to / --cache-from syntax, as buildx reads it."""

from __future__ import annotations

import pytest

from builder.cachexport.options import CacheSpec, parse_cache_spec
from builder.errors import UsageError


@pytest.mark.parametrize(("text", "direction", "expected"), [
    ("type=local,dest=/tmp/c", "to", CacheSpec("local", "/tmp/c")),
    ("type=local,dest=/tmp/c,mode=max", "to", CacheSpec("local", "/tmp/c", mode="max")),
    ("type=local,src=/tmp/c", "from", CacheSpec("local", "/tmp/c")),
    ("type=registry,ref=127.0.0.1:5000/app:cache,mode=max,cache-mounts=true", "to",
     CacheSpec("registry", "127.0.0.1:5000/app:cache", mode="max", cache_mounts=True)),
    ("127.0.0.1:5000/app:cache", "from", CacheSpec("registry", "127.0.0.1:5000/app:cache")),
    ("type=inline", "to", CacheSpec("inline")),
    ("type=image,ref=app", "from", CacheSpec("image", "app")),
    ('type=local,"dest=/tmp/a,b",ignore-error=true', "to",
     CacheSpec("local", "/tmp/a,b", ignore_error=True)),
])
def test_valid_specs(text: str, direction: str, expected: CacheSpec) -> None:
    assert parse_cache_spec(text, direction=direction) == expected


@pytest.mark.parametrize(("text", "direction", "message"), [
    ("type=local", "to", "--cache-to type=local: dest is required"),
    ("type=local,src=/x", "to", "unknown key 'src'"),
    ("type=local,dest=/x", "from", "unknown key 'dest'"),
    ("type=inline", "from", "--cache-from type=inline: not supported here"),
    ("type=inline,mode=max", "to", "only mode=min"),
    ("type=local,dest=/x,mode=all", "to", "mode=all: use min or max"),
    ("type=local,dest=/x,cache-mounts=yes", "to", "cache-mounts=yes: not a boolean"),
    ("dest=/x", "to", "type is required"),
    ("type=local,dest", "to", "is not key=value"),
    ("type=local,dest=a,dest=b", "to", "given twice"),
    ("", "from", "empty value"),
])
def test_bad_specs_name_the_flag_and_key(text: str, direction: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        parse_cache_spec(text, direction=direction)
    assert str(caught.value).startswith(f"--cache-{direction}")


def test_label_names_the_cache() -> None:
    assert parse_cache_spec("type=local,src=/c", direction="from").label == "/c"
    assert parse_cache_spec("type=inline", direction="to").label == "inline"
