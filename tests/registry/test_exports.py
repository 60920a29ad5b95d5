"""builder.registry exports exactly its public names, each importable."""

from __future__ import annotations

import builder.registry


def test_every_exported_name_resolves() -> None:
    for name in builder.registry.__all__:
        assert getattr(builder.registry, name) is not None, name


def test_exports_are_the_documented_set() -> None:
    assert sorted(builder.registry.__all__) == [
        "Credentials",
        "HttpTransport",
        "RegistryOptions",
        "RemoteReference",
        "Response",
        "RetryPolicy",
        "Transport",
        "endpoint_url",
        "load_credentials",
        "parse_remote",
        "pull",
        "push",
        "remove_credentials",
        "save_credentials",
    ]
