"""Shared test fixtures: where the conformance data lives, and the CI skip rule."""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# CI clones the repo fresh with shared/ as its sibling; a developer's checkout
# sits beside shared/ too.  PYBUILD_SHARED overrides both.
SHARED = Path(os.environ.get("PYBUILD_SHARED", REPO.parent / "shared"))
CONFORMANCE = SHARED / "conformance"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not CONFORMANCE.is_dir():
        raise pytest.UsageError(
            f"conformance data not found at {CONFORMANCE}: put shared/ beside the repo "
            "or set PYBUILD_SHARED"
        )


@pytest.fixture(scope="session")
def conformance() -> Path:
    return CONFORMANCE


# Under CI these must run: a skip means the machine lacks what the project
# promises to install, which is a failure, not a pass.
REQUIRED_UNDER_CI = ("root", "oracle")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and in_ci() and any(item.get_closest_marker(m) for m in REQUIRED_UNDER_CI):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which requires it to run: {report.longrepr}"
    return report
