"""The conformance builds start from the same busybox root file system as the e2e tests."""

from tests.e2e.conftest import busybox_rootfs

__all__ = ["busybox_rootfs"]
