"""--build-context NAME=DIR|docker-image://REF|oci-layout://PATH, end to end."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from tests.e2e.conftest import Runner, summary_counts

pytestmark = pytest.mark.root


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


def _other_image(pybuild: Runner, busybox_rootfs: Path, tmp_path: Path, tag: str) -> None:
    """busybox plus /etc/other-marker, imported as ``tag``."""
    rootfs = tmp_path / "other-rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    (rootfs / "etc" / "other-marker").write_text("other\n")
    result = pybuild("import", str(rootfs), "-t", tag)
    assert result.returncode == 0, result.stderr


def test_directory_context_for_copy_and_from_with_its_own_dockerignore(
    pybuild: Runner, tmp_path: Path
) -> None:
    extra = _write(tmp_path / "extra", {
        "data/keep.txt": "kept\n", "data/secret.key": "hidden\n",
        ".dockerignore": "data/*.key\n",
    })
    # The main context's ignore file says nothing about the named context.
    context = _write(tmp_path / "context", {
        ".dockerignore": "data\n",
        "Dockerfile": (
            "FROM extra AS files\n"
            "FROM busybox\n"
            "COPY --from=extra data /data/\n"
            "COPY --from=files /data/keep.txt /from-stage.txt\n"
            'RUN test "$(cat /data/keep.txt)" = kept && ! test -e /data/secret.key '
            '&& test "$(stat -c %u:%g /data/keep.txt)" = 0:0 '
            '&& test "$(cat /from-stage.txt)" = kept\n'
        ),
    })
    args = ("build", "--progress", "plain", "--build-context", f"extra={extra}", str(context))
    first = pybuild(*args)
    assert first.returncode == 0, first.stderr
    assert summary_counts(first.stderr) == (4, 0)
    # No journal shortcut: a change inside the named directory is seen.
    (extra / "data" / "keep.txt").write_text("changed\n")
    second = pybuild(*args)
    assert second.returncode == 1
    assert "Dockerfile:5" in second.stderr  # the RUN now fails: it saw the new content


def test_image_context_overrides_from_and_a_stage_of_its_name(
    pybuild: Runner, busybox_rootfs: Path, tmp_path: Path
) -> None:
    _other_image(pybuild, busybox_rootfs, tmp_path, "other:1")
    context = _write(tmp_path / "context", {"Dockerfile": (
        "FROM busybox AS deps\n"
        "RUN exit 1\n"
        "FROM alpine\n"
        "COPY --from=deps /etc/other-marker /deps-marker\n"
        "RUN test -f /etc/other-marker && test -f /deps-marker\n"
    )})
    result = pybuild("build", "--progress", "plain",
                     "--build-context", "alpine=docker-image://other:1",
                     "--build-context", "deps=docker-image://other:1", str(context))
    assert result.returncode == 0, result.stderr
    assert "exit 1" not in result.stderr  # the replaced stage never ran
    # alpine:latest and docker.io/library/alpine are the same name.
    latest = _write(tmp_path / "latest", {"Dockerfile": (
        "FROM docker.io/library/alpine:latest\nRUN test -f /etc/other-marker\n")})
    normalised = pybuild("build", "--build-context", "alpine:latest=docker-image://other:1",
                         str(latest))
    assert normalised.returncode == 0, normalised.stderr


def test_oci_layout_context(pybuild: Runner, busybox_rootfs: Path, tmp_path: Path) -> None:
    _other_image(pybuild, busybox_rootfs, tmp_path, "other:2")
    archive = tmp_path / "other.tar"
    saved = pybuild("save", "other:2", "--format", "oci", "-o", str(archive))
    assert saved.returncode == 0, saved.stderr
    layout = tmp_path / "layout"
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="data")
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    context = _write(tmp_path / "context", {"Dockerfile": (
        "FROM base\nCOPY --from=tools /etc/other-marker /copied\n"
        "RUN test -f /etc/other-marker && test -f /copied\n"
    )})
    result = pybuild("build", "--progress", "plain",
                     "--build-context", f"base=oci-layout://{layout}@{digest}",
                     "--build-context", f"tools=oci-layout://{layout}",
                     str(context))
    assert result.returncode == 0, result.stderr
    missing = pybuild("build", "--build-context", f"base=oci-layout://{layout}:nope",
                      str(context))
    assert missing.returncode == 1
    assert "no image tagged 'nope'" in missing.stderr and "Dockerfile:1" in missing.stderr


def test_bad_build_context_flags_are_usage_errors(pybuild: Runner, tmp_path: Path) -> None:
    context = _write(tmp_path / "context", {"Dockerfile": "FROM busybox\n"})
    for flag, message in (
        ("novalue", "expected NAME=VALUE"),
        ("Bad Name=/tmp", "is not a valid context name"),
        (f"x={tmp_path / 'absent'}", "is not a directory"),
        ("x=ftp://host/x", "ftp:// contexts are not supported"),
    ):
        result = pybuild("build", "--build-context", flag, str(context))
        assert result.returncode == 1, (flag, result.stderr)
        assert f"error: --build-context {flag!r}: " in result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr
