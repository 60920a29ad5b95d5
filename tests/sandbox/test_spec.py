"""RunSpec refuses what no sandbox could run; the package exports its documented names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import builder.sandbox
from builder.errors import SandboxError
from builder.sandbox import ExtraHost, RunSpec, TmpfsMount
from builder.sandbox.resolver import hosts_file, resolv_conf
from tests.conftest import REPO

ROOT = Path("/nonexistent")


@pytest.mark.parametrize(("fields", "message"), [
    ({"argv": ()}, "empty command"),
    ({"cwd": "relative"}, "not absolute"),
    ({"env": ("NOEQUALS",)}, "not K=V"),
    ({"env": ("=x",)}, "not K=V"),
    ({"mounts": (TmpfsMount("relative"),)}, "absolute path below /"),
    ({"mounts": (TmpfsMount("/"),)}, "absolute path below /"),
    ({"network": "bridge"}, "unknown network mode"),
    ({"hostname": "a" * 65}, "invalid hostname"),
    ({"extra_hosts": (ExtraHost("db", "not-an-ip"),)}, "extra host db"),
    ({"extra_hosts": (ExtraHost("two words", "10.0.0.1"),)}, "invalid extra host name"),
    ({"argv": ("a\0b",)}, "NUL byte"),
])
def test_invalid_specs_are_refused(fields: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"argv": ("true",), "rootfs": ROOT, **fields}
    with pytest.raises(SandboxError, match=message):
        RunSpec(**arguments)  # type: ignore[arg-type]


def test_spec_is_frozen_and_hashable() -> None:
    spec = RunSpec(argv=("true",), rootfs=ROOT)
    assert hash(spec) == hash(RunSpec(argv=("true",), rootfs=ROOT))
    with pytest.raises(AttributeError):
        spec.cwd = "/x"  # type: ignore[misc]


def test_hosts_file_lists_localhost_hostname_and_extra_hosts() -> None:
    spec = RunSpec(argv=("true",), rootfs=ROOT, hostname="h",
                   extra_hosts=(ExtraHost("a", "1.2.3.4"),))
    assert hosts_file(spec) == (b"127.0.0.1\tlocalhost h\n"
                                b"::1\tlocalhost ip6-localhost ip6-loopback\n1.2.3.4\ta\n")


def test_resolv_conf_falls_back_to_public_resolvers(tmp_path: Path) -> None:
    assert resolv_conf(tmp_path / "missing") == b"nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    (tmp_path / "search-only").write_text("search example.com\n")
    assert resolv_conf(tmp_path / "search-only").startswith(b"search example.com\nnameserver")


def test_exports_are_the_documented_set() -> None:
    assert sorted(builder.sandbox.__all__) == [
        "BindMount", "Cancellation", "ContentMount", "DEFAULT_HOSTNAME", "ExtraHost", "Mount",
        "NamespaceSandbox", "Network", "RunSpec", "Sandbox", "TmpfsMount", "UserSpec",
        "home_directory", "resolve_user", "run",
    ]
    for name in builder.sandbox.__all__:
        assert getattr(builder.sandbox, name) is not None, name


def test_init_imports_nothing_slow() -> None:
    """The init starts once per RUN: enum, re, typing, json or dataclasses would cost ms each."""
    code = ("import sys; from builder.sandbox import init, child; "
            "print(sorted(m for m in sys.modules if m in "
            "{'enum', 're', 'typing', 'json', 'dataclasses', 'signal', 'subprocess', "
            "'builder.errors', 'builder.sandbox.spec', 'builder.sandbox.runner'}))")
    result = subprocess.run([sys.executable, "-S", "-E", "-c", code], capture_output=True,
                            cwd=REPO, check=True, text=True)
    assert result.stdout.strip() == "[]"
