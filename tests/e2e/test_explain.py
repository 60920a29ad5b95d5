"""--explain after a changed base image, and an exact hit rate after a known change."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import Runner, make_context, summary_counts

pytestmark = pytest.mark.root


def test_explain_names_a_changed_base_and_the_hit_rate_is_exact(
    pybuild: Runner, busybox_rootfs: Path, tmp_path: Path
) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n"
        "FROM busybox AS other\nCOPY a /a\n"
        "FROM scratch\nCOPY --from=other /a /a\nCOPY b /b\n"
    ), {"a": "a", "b": "b"})
    first = pybuild("build", "--progress", "plain", str(context))
    assert first.returncode == 0, first.stderr
    # Only the last stage is the target: its two COPYs and the "other" stage's
    # COPY are keyed (3 steps). Change b: exactly 2 of 3 hit.
    (context / "b").write_text("B")
    second = pybuild("build", "--progress", "plain", "--explain", str(context))
    assert summary_counts(second.stderr) == (1, 2), second.stderr
    assert "hit rate 67% (2/3)" in second.stderr
    assert "content changed: b" in second.stderr
    # A new busybox under the same name: the stage built on it misses, and
    # --explain says the base changed.
    changed_base = tmp_path / "busybox2"
    shutil.copytree(busybox_rootfs, changed_base, symlinks=True)
    (changed_base / "etc" / "motd").write_text("a new base\n")
    assert pybuild("import", str(changed_base), "-t", "busybox:latest").returncode == 0
    third = pybuild("build", "--progress", "plain", "--explain", str(context))
    assert third.returncode == 0, third.stderr
    explained = third.stderr.split("explain:", 1)[1]
    # Stages the target does not need are dropped: steps are numbered 1-3.
    assert "#1 COPY a /a\n    base image changed (busybox@sha256:" in explained
    assert ("#2 COPY --from=other /a /a\n    what it copies from changed (stage 1"
            in explained)
    assert "#3 COPY b /b\n    an earlier step missed" in explained


def test_explain_names_only_files_a_filtered_copy_reads(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, (
        "FROM scratch\nCOPY --exclude=*.log src /src\nCOPY --parents ./docs/**/*.md /\n"
    ), {"src/a.txt": "a", "src/b.log": "b", "docs/x/guide.md": "g", "docs/x/draft.txt": "d"})
    first = pybuild("build", "--progress", "plain", str(context))
    assert first.returncode == 0, first.stderr
    # Excluded and unmatched files change with read ones: only the read ones are named.
    for name, text in (("src/a.txt", "A"), ("src/b.log", "B"), ("docs/x/guide.md", "G"),
                       ("docs/x/draft.txt", "D")):
        (context / name).write_text(text)
    second = pybuild("build", "--progress", "plain", "--explain", str(context))
    assert second.returncode == 0, second.stderr
    explained = second.stderr.split("explain:", 1)[1]
    assert "content changed: src/a.txt\n" in explained
    assert "content changed: docs/x/guide.md\n" in explained
    assert "b.log" not in explained and "draft.txt" not in explained
