"""The comparison itself: a tree walk and a config reading that miss nothing they claim to see."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conformance.configs import normalise_config
from tests.conformance.differences import Built, Difference, compare
from tests.conformance.known_differences import ALLOWED, for_case
from tests.conformance.trees import snapshot_tree


def _tree(root: Path) -> Path:
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "file").write_bytes(b"same\n")
    os.link(root / "dir" / "file", root / "dir" / "link")
    (root / "big").write_bytes(b"x" * 4096)
    (root / "big").chmod(0o644)
    (root / "symlink").symlink_to("dir/file")
    os.mkfifo(root / "fifo")
    return root


def test_identical_trees_and_configs_have_no_differences(tmp_path: Path) -> None:
    config = normalise_config({"Env": ["A=1"], "Volumes": {"/v": {}}})
    left = Built(snapshot_tree(_tree(tmp_path / "left")), config)
    right = Built(snapshot_tree(_tree(tmp_path / "right")), config)
    assert compare(left, right) == []
    assert left.tree["/dir/file"].links == ("/dir/file", "/dir/link")
    assert left.tree["/dir/file"].content == b"same\n"
    assert str(left.tree["/big"].content).startswith("sha256:")
    assert left.tree["/symlink"].target == "dir/file"
    assert left.tree["/fifo"].kind == "fifo"


@pytest.mark.root  # chown
def test_every_field_that_differs_is_reported(tmp_path: Path) -> None:
    left_root, right_root = _tree(tmp_path / "left"), _tree(tmp_path / "right")
    (right_root / "dir" / "link").unlink()
    (right_root / "dir" / "link").write_bytes(b"same\n")
    (right_root / "big").chmod(0o4755)
    os.chown(right_root / "dir", 1000, 50)
    (right_root / "symlink").unlink()
    (right_root / "symlink").symlink_to("elsewhere")
    (right_root / "fifo").unlink()
    (right_root / "only-right").write_bytes(b"new\n")
    left = Built(snapshot_tree(left_root), normalise_config({"Cmd": ["a"]}))
    right = Built(snapshot_tree(right_root), normalise_config({"Cmd": ["b"]}))
    assert compare(left, right) == [
        Difference("config", "Cmd", ("a",), ("b",)),
        Difference("/big", "mode", "0644", "4755"),
        Difference("/dir", "uid", 0, 1000),
        Difference("/dir", "gid", 0, 50),
        Difference("/dir/file", "links", ("/dir/file", "/dir/link"), None),
        Difference("/dir/link", "links", ("/dir/file", "/dir/link"), None),
        Difference("/fifo", "kind", "fifo", None),
        Difference("/only-right", "kind", None, "file"),
        Difference("/symlink", "target", "dir/file", "elsewhere"),
    ]


def test_empty_settings_read_alike_but_empty_label_values_count() -> None:
    docker_style = normalise_config({"Entrypoint": [], "Volumes": {}, "WorkingDir": "",
                                     "Labels": {"empty": ""},
                                     "Healthcheck": {"Test": ["NONE"], "Retries": 0}})
    oci_style = normalise_config({"Labels": {"empty": ""}, "Healthcheck": {"Test": ["NONE"]}})
    assert docker_style == oci_style
    assert oci_style["Labels"] == {"empty": ""}
    assert normalise_config({"ExposedPorts": {"80/tcp": {}}})["ExposedPorts"] == ["80/tcp"]


def test_driver_specific_allowances_apply_only_on_their_driver() -> None:
    everywhere = {allowance for allowance in ALLOWED["hardlinks_run"] if allowance.driver is None}
    assert set(for_case("hardlinks_run", "overlay")) == everywhere
    assert set(for_case("hardlinks_run", "vfs")) > everywhere
