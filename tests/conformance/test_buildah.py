"""Differential conformance: every case built by pybuild and by buildah, trees and configs compared.

Each case is a Dockerfile under cases/<name>/ with its small context files
(more made by cases.py where git cannot store them: modes, owners, hard
links, odd names, archives). Both builders start from the same busybox
image. Every difference must be fixed in pybuild or be listed, with its
reason, in known_differences.py (and docs/compatibility.md): the test
fails on a difference that is not listed and on a listing that no longer
happens.

Builds run in a few threads, each case in scratch roots of its own; the
builds of the selected cases start when the first test asks and each test
waits for its own case.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conformance import cases, known_differences
from tests.conformance.builders import (
    build_with_buildah,
    build_with_pybuild,
    make_base_root,
    storage_driver,
)
from tests.conformance.differences import Built, Difference, compare
from tests.conftest import REPO

pytestmark = pytest.mark.root

# Builds spend most of their time waiting on processes and the disk, so a
# few run at once even on two cores.
_WORKERS = 6
CASE_NAMES = cases.names()


class _Builds:
    """The builds of the selected cases, started together, awaited one by one."""

    def __init__(self, base_root: Path, scratch: Path, names: list[str]) -> None:
        self.driver = storage_driver(scratch)
        self._pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="case")
        self._futures: dict[str, Future[tuple[Built, Built]]] = {
            name: self._pool.submit(self._build, base_root, scratch / name, name)
            for name in names
        }

    @staticmethod
    def _build(base_root: Path, work: Path, name: str) -> tuple[Built, Built]:
        work.mkdir()
        context = cases.make_context(name, work / "context")
        flags = cases.flags(name)
        ours = build_with_pybuild(base_root, context, flags, work)
        theirs = build_with_buildah(base_root, context, flags, work)
        shutil.rmtree(work)
        return ours, theirs

    def result(self, name: str) -> tuple[Built, Built]:
        return self._futures[name].result()

    def close(self) -> None:
        for future in self._futures.values():
            future.cancel()
        self._pool.shutdown(wait=True)


def _selected_cases(request: pytest.FixtureRequest) -> list[str]:
    """The cases this session will test (``-k`` and node ids select fewer builds)."""
    names = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if (isinstance(item, pytest.Function) and item.module is request.module
                and callspec is not None and "case" in callspec.params):
            names.append(str(callspec.params["case"]))
    return names


@pytest.fixture(scope="module")
def builds(request: pytest.FixtureRequest, busybox_rootfs: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Builds]:
    if shutil.which("buildah") is None or shutil.which("umoci") is None:
        pytest.skip("buildah and umoci are not installed")
    base_root = tmp_path_factory.mktemp("conformance-base") / "root"
    make_base_root(busybox_rootfs, base_root)
    running = _Builds(base_root, tmp_path_factory.mktemp("conformance"),
                      _selected_cases(request))
    yield running
    running.close()


def _report(unexpected: list[Difference], stale: list[Difference]) -> str:
    lines = []
    if unexpected:
        lines.append("differences not in known_differences.py (fix pybuild, or list them "
                     "with the reason):")
        lines += [f"  {difference}" for difference in unexpected]
    if stale:
        lines.append("listed in known_differences.py but did not happen:")
        lines += [f"  {difference}" for difference in stale]
    return "\n".join(lines)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_pybuild_and_buildah_build_the_same_image(builds: _Builds, case: str) -> None:
    ours, theirs = builds.result(case)
    found = compare(ours, theirs)
    allowed = {allowance.difference
               for allowance in known_differences.for_case(case, builds.driver)}
    unexpected = [difference for difference in found if difference not in allowed]
    stale = sorted(allowed - set(found), key=str)
    assert not unexpected and not stale, _report(unexpected, stale)


def test_there_are_enough_cases_and_every_extra_names_one() -> None:
    assert len(CASE_NAMES) >= 40
    assert cases.extras_without_case() == []
    assert known_differences.cases_without_directory(CASE_NAMES) == []


def test_every_known_difference_is_documented() -> None:
    compatibility = (REPO / "docs" / "compatibility.md").read_text()
    missing = [quirk.title for quirk in known_differences.quirks_in_use()
               if quirk.title not in compatibility]
    assert missing == [], "quirks missing from docs/compatibility.md"
