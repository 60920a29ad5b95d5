"""The OCI distribution client: references, transport, auth, pull and push."""

from __future__ import annotations

from builder.registry.auth import (
    Credentials,
    load_credentials,
    remove_credentials,
    save_credentials,
)
from builder.registry.client import RegistryOptions
from builder.registry.pull import pull
from builder.registry.push import push
from builder.registry.reference import RemoteReference, endpoint_url, parse_remote
from builder.registry.transport import HttpTransport, Response, RetryPolicy, Transport

__all__ = [
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
