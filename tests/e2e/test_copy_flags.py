"""COPY/ADD flags in whole builds: heredocs, --link, --parents, --exclude, --chown, --chmod.

Each build exports its final tree (``-o DIR``) and the test judges that tree:
contents, modes and owners; cache behaviour is read from the summary line
and from ``pybuild inspect`` (layer digests).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.e2e.conftest import Runner, make_context, summary_counts

pytestmark = pytest.mark.root


def _build(pybuild: Runner, context: Path, out: Path | None = None, *args: str) -> str:
    """Build (exporting the tree to ``out`` if given); the stderr of a successful build."""
    if out is not None and out.exists():
        shutil.rmtree(out)
    output = ("-o", str(out)) if out is not None else ()
    result = pybuild("build", "--progress", "plain", *output, *args, str(context))
    assert result.returncode == 0, result.stderr
    return result.stderr


def _entry(tree: Path, path: str) -> tuple[str, int, int, int]:
    """(kind, mode, uid, gid) of ``path`` in an exported tree."""
    info = os.lstat(tree / path)
    kind = "d" if stat.S_ISDIR(info.st_mode) else "l" if stat.S_ISLNK(info.st_mode) else "f"
    return kind, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


def _diff_ids(pybuild: Runner, tag: str) -> list[str]:
    result = pybuild("inspect", tag)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout)[0]["Config"]["rootfs"]["diff_ids"])


# -- heredocs -----------------------------------------------------------------------------


def test_heredocs_make_files_with_expansion_modes_and_owners(
    pybuild: Runner, tmp_path: Path
) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\n"
        "ARG NAME=world\n"
        "ENV GREETING=hello\n"
        "COPY <<EOF /greet\n"
        "$GREETING ${NAME} \\$NAME '$NAME'\n"
        "EOF\n"
        "COPY <<\"EOF\" /quoted\n"
        "$GREETING ${NAME}\n"
        "EOF\n"
        "COPY <<-EOF /chomped\n"
        "\tindented\n"
        "\tEOF\n"
        "COPY --chmod=0750 --chown=app:staff <<one <<two /multi/\n"
        "first $NAME\n"
        "one\n"
        "second\n"
        "two\n"
        "ADD --chmod=u+x,go=r <<EOF /added\n"
        "added\n"
        "EOF\n"
        "COPY --chown=4242 <<EOF <<EOF2 /owned/\n"
        "x\n"
        "EOF\n"
        "y\n"
        "EOF2\n"
        "WORKDIR /work\n"
        "COPY <<EOF rel.txt\n"
        "relative\n"
        "EOF\n"
        "RUN test \"$(cat /greet)\" = \"hello world \\$NAME 'world'\"\n"
    ))
    tree = tmp_path / "tree"
    _build(pybuild, context, tree)
    assert (tree / "greet").read_text() == "hello world $NAME 'world'\n"
    assert (tree / "quoted").read_text() == "$GREETING ${NAME}\n"
    assert (tree / "chomped").read_text() == "indented\n"
    assert (tree / "multi" / "one").read_text() == "first world\n"
    assert (tree / "multi" / "two").read_text() == "second\n"
    assert _entry(tree, "multi/one") == ("f", 0o750, 1000, 50)
    assert _entry(tree, "multi/two") == ("f", 0o750, 1000, 50)
    # A missing destination directory is made with the --chmod mode and --chown owner.
    assert _entry(tree, "multi") == ("d", 0o750, 1000, 50)
    assert _entry(tree, "added") == ("f", 0o744, 0, 0)
    assert (tree / "added").read_text() == "added\n"
    # A numeric user alone is also the group, as BuildKit's --chown reads it.
    assert _entry(tree, "owned/EOF") == ("f", 0o644, 4242, 4242)
    assert (tree / "owned" / "EOF2").read_text() == "y\n"
    assert (tree / "work" / "rel.txt").read_text() == "relative\n"


def test_heredoc_content_and_build_args_enter_the_cache_key(
    pybuild: Runner, tmp_path: Path
) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\nARG V=1\nCOPY <<'EOF' /raw\n$V\nEOF\nCOPY <<EOF /v\n$V\nEOF\n"
    ))
    assert summary_counts(_build(pybuild, context)) == (2, 0)
    assert summary_counts(_build(pybuild, context)) == (0, 2)
    tree = tmp_path / "tree"
    # The quoted heredoc does not see V: only the expanded one misses.
    assert summary_counts(_build(pybuild, context, tree, "--build-arg", "V=2")) == (1, 1)
    assert (tree / "v").read_text() == "2\n"
    assert (tree / "raw").read_text() == "$V\n"


# -- --chown / --chmod on every kind of source ------------------------------------------


def _tar_bytes(members: dict[str, tuple[bytes, int, int]]) -> bytes:
    """A tar of files: name -> (data, mode, uid)."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        for name, (content, mode, uid) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(content), mode, uid, uid
            archive.addfile(info, io.BytesIO(content))
    return data.getvalue()


def test_chown_and_chmod_on_every_source_kind(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, (
        "FROM busybox AS stage\n"
        "RUN mkdir -p /src/sub && echo s > /src/s.txt && echo t > /src/sub/t.sh"
        " && chown -R 7:8 /src && chmod 600 /src/s.txt && chmod 700 /src/sub/t.sh\n"
        "FROM busybox\n"
        "COPY --chown=app:staff --chmod=640 ctx.txt /out/ctx.txt\n"
        "COPY --chown=nobody dir/ /out/dir/\n"
        "COPY --from=stage --chown=1234:50 --chmod=u+x,g=u /src/ /out/stage/\n"
        "COPY --from=stage /src/s.txt /out/stage-kept.txt\n"
        "COPY --from=busybox:latest --chown=app:nogroup --chmod=0444 /etc/group /out/image-group\n"
        "ADD --chown=app:staff --chmod=0600 payload.tar /out/tar/\n"
        "COPY --chmod=go-rwx --chown=root:app dir/ /out/sym/\n"
    ), {"ctx.txt": "c", "dir/a": "a", "dir/run.sh": "#!/bin/sh\n"})
    os.chmod(context / "dir" / "run.sh", 0o755)
    os.chown(context / "ctx.txt", 555, 555)  # the context's own owners never matter
    (context / "payload.tar").write_bytes(_tar_bytes({
        "inner/x": (b"x", 0o640, 99), "inner/run": (b"r", 0o750, 99),
    }))
    tree = tmp_path / "tree"
    _build(pybuild, context, tree)
    assert _entry(tree, "out/ctx.txt") == ("f", 0o640, 1000, 50)
    # The missing /out was made by the first COPY: its --chmod and --chown, as BuildKit.
    assert _entry(tree, "out") == ("d", 0o640, 1000, 50)
    # A name alone takes the passwd entry's primary group.
    assert _entry(tree, "out/dir/a") == ("f", 0o644, 65534, 65534)
    assert _entry(tree, "out/dir/run.sh") == ("f", 0o755, 65534, 65534)
    # Symbolic modes start from each source entry's own mode; X-less +x applies to all.
    assert _entry(tree, "out/stage/s.txt") == ("f", 0o770, 1234, 50)
    assert _entry(tree, "out/stage/sub") == ("d", 0o775, 1234, 50)
    assert _entry(tree, "out/stage/sub/t.sh") == ("f", 0o770, 1234, 50)
    # Without --chown a stage's owners and modes are kept.
    assert _entry(tree, "out/stage-kept.txt") == ("f", 0o600, 7, 8)
    assert _entry(tree, "out/image-group") == ("f", 0o444, 1000, 65534)
    assert (tree / "out" / "image-group").read_text().startswith("root:x:0:")
    # A local archive is extracted: --chown applies to its entries, --chmod does not
    # (BuildKit's unpack ignores it), and the directory it lands in is 0755.
    assert _entry(tree, "out/tar") == ("d", 0o755, 1000, 50)
    assert _entry(tree, "out/tar/inner/x") == ("f", 0o640, 1000, 50)
    assert _entry(tree, "out/tar/inner/run") == ("f", 0o750, 1000, 50)
    assert _entry(tree, "out/sym/run.sh") == ("f", 0o700, 0, 1000)
    assert _entry(tree, "out/sym/a") == ("f", 0o600, 0, 1000)


def test_chown_errors_name_the_line(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox\nCOPY --chown=ghost f /f\n", {"f": "x"})
    result = pybuild("build", str(context))
    assert result.returncode != 0
    assert "unable to find user ghost" in result.stderr and ":2" in result.stderr
    assert "Traceback" not in result.stderr
    context = make_context(tmp_path, "FROM busybox\nCOPY --chown=app:ghosts f /f\n", {"f": "x"})
    result = pybuild("build", str(context))
    assert result.returncode != 0 and "unable to find group ghosts" in result.stderr
    context = make_context(tmp_path, "FROM busybox\nCOPY --chmod=u+q f /f\n", {"f": "x"})
    result = pybuild("build", str(context))
    assert result.returncode != 0 and "invalid chmod parameter: 'u+q'" in result.stderr


# -- --link -------------------------------------------------------------------------------


def test_link_layer_survives_a_parent_change(pybuild: Runner, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox AS build\n"
        "RUN echo {n} > /built\n"
        "FROM busybox\n"
        "RUN echo {n} > /marker\n"
        "COPY --link app/ /app/\n"
        "COPY --link --from=build /built /from-stage\n"
        "COPY --link --chown=1000:50 <<EOF /etc/linked.conf\n"
        "linked\n"
        "EOF\n"
        "RUN test -f /app/a.txt && test \"$(cat /marker)\" = {n}\n"
    )
    context = make_context(tmp_path, dockerfile.format(n=1), {"app/a.txt": "a", "app/sub/b": "b"})
    tree = tmp_path / "tree"
    first = _build(pybuild, context, tree, "-t", "linked:1")
    assert summary_counts(first) == (6, 0)
    (context / "Dockerfile").write_text(dockerfile.format(n=2))
    second = _build(pybuild, context, tree, "-t", "linked:2")
    # The two RUNs that changed and the RUN after the links run; the context and heredoc
    # links stay cached although their parent changed.  The stage link reads a stage
    # that changed, so it runs (and makes the same layer again).
    assert summary_counts(second) == (4, 2)
    one, two = _diff_ids(pybuild, "linked:1"), _diff_ids(pybuild, "linked:2")
    base = len(_diff_ids(pybuild, "busybox:latest"))
    assert one[base] != two[base]  # RUN echo > /marker
    assert one[base + 1] == two[base + 1]  # COPY --link app/
    assert one[base + 3] == two[base + 3]  # COPY --link <<EOF
    assert (tree / "marker").read_text() == "2\n"
    assert (tree / "app" / "sub" / "b").read_text() == "b"
    assert (tree / "from-stage").read_text() == "2\n"
    assert _entry(tree, "etc/linked.conf") == ("f", 0o644, 1000, 50)
    # The linked layer does not hide what the parent has beside it.
    assert (tree / "etc" / "passwd").is_file()
    # A changed source still misses.
    (context / "app" / "a.txt").write_text("changed")
    third = _build(pybuild, context, tree)
    assert summary_counts(third) == (2, 4)
    assert (tree / "app" / "a.txt").read_text() == "changed"


def test_link_survives_a_new_base_image(
    pybuild: Runner, tmp_path: Path, busybox_rootfs: Path, pybuild_root: Path
) -> None:
    other = tmp_path / "other-rootfs"
    shutil.copytree(busybox_rootfs, other, symlinks=True)
    (other / "etc" / "os-release").write_text("other\n")
    imported = subprocess.run(
        [sys.executable, "-m", "builder", "import", str(other), "-t", "other:latest",
         "--root", str(pybuild_root)],
        capture_output=True, text=True, cwd=REPO, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert imported.returncode == 0, imported.stderr
    context = make_context(tmp_path, (
        "ARG BASE=busybox\nFROM $BASE\nCOPY --link f /opt/f\nCOPY g /opt/g\n"
    ), {"f": "f", "g": "g"})
    assert summary_counts(_build(pybuild, context, None, "-t", "on-busybox")) == (2, 0)
    tree = tmp_path / "tree"
    rebased = _build(pybuild, context, tree, "-t", "on-other", "--build-arg", "BASE=other")
    assert summary_counts(rebased) == (1, 1)  # only the plain COPY runs again
    assert _diff_ids(pybuild, "on-other")[-2] == _diff_ids(pybuild, "on-busybox")[-2]
    assert (tree / "etc" / "os-release").read_text() == "other\n"
    assert (tree / "opt" / "f").read_text() == "f"


def test_link_destination_ignores_the_parent(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\n"
        "RUN mkdir -p /srv/real && ln -s /srv/real /srv/via && mkdir -m 0700 /private\n"
        "COPY --link f /srv/via/linked\n"
        "COPY f /srv/via/plain\n"
        "COPY --link f /private/f\n"
        "COPY --link --chmod=0600 f /tmp/chmodded\n"
    ), {"f": "x"})
    tree = tmp_path / "tree"
    _build(pybuild, context, tree)
    # --link does not follow a symlink of the parent: the path becomes directories
    # (which hide the symlink), as the Dockerfile reference says.
    assert _entry(tree, "srv/via")[0] == "d"
    assert (tree / "srv" / "via" / "linked").read_text() == "x"
    assert (tree / "srv" / "via" / "plain").read_text() == "x"
    assert not (tree / "srv" / "real" / "linked").exists()
    # Directories the linked layer holds replace the parent's metadata (BuildKit's merge).
    assert _entry(tree, "private") == ("d", 0o755, 0, 0)
    # With --chmod BuildKit does not link: the copy sees /tmp and keeps its mode.
    assert _entry(tree, "tmp") == ("d", 0o1777, 0, 0)
    assert _entry(tree, "tmp/chmodded") == ("f", 0o600, 0, 0)


def test_link_with_chmod_is_an_ordinary_copy(pybuild: Runner, tmp_path: Path) -> None:
    dockerfile = "FROM busybox\nRUN echo {n} > /n\nCOPY --link --chmod=0644 f /f\n"
    context = make_context(tmp_path, dockerfile.format(n=1), {"f": "x"})
    assert summary_counts(_build(pybuild, context)) == (2, 0)
    (context / "Dockerfile").write_text(dockerfile.format(n=2))
    assert summary_counts(_build(pybuild, context)) == (2, 0)


def test_link_refuses_chown_by_name(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\nRUN true\nCOPY --link --chown=app:staff f /f\n"
    ), {"f": "x"})
    result = pybuild("build", str(context))
    assert result.returncode != 0
    assert "--link --chown=app:staff" in result.stderr and ":3" in result.stderr
    assert "numeric ids" in result.stderr and "Traceback" not in result.stderr
    # Refused while planning: nothing ran.
    assert "RUN true" not in result.stderr


# -- --parents and --exclude ----------------------------------------------------------------


PARENTS_FILES = {
    "x/y/a.txt": "xa", "x/y/b.txt": "xb", "x/y/c.md": "xc", "x/a.txt": "top",
    "z/b.txt": "zb",
    "src/a.txt": "sa", "src/x/b.txt": "sb", "src/x/y/c.txt": "sc", "src/x/y/d.log": "sd",
    "home.txt": "h", "home.md": "m", "homework/notes.txt": "n", "homework/keep.c": "k",
    "homework/secret": "s", "other": "o",
}


def test_parents_and_exclude_trees_and_cache(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, (
        "FROM busybox\n"
        "COPY --parents ./x/./y/*.txt /p1/\n"
        "COPY --parents x/a.txt z/b.txt /p2/\n"
        "COPY --parents ./src/**/*.txt /p3/\n"
        "COPY --exclude=*.txt --exclude=*.md hom* /e1/\n"
        "COPY --exclude=**/*.log --exclude=x/y src/ /e2/\n"
        "COPY --parents --exclude=y/*.md --chmod=0600 x/./y /p4/\n"
    ), PARENTS_FILES)
    os.chmod(context / "src" / "x", 0o750)
    tree = tmp_path / "tree"
    assert summary_counts(_build(pybuild, context, tree)) == (6, 0)

    def files(top: str) -> dict[str, str]:
        return {
            str(path.relative_to(tree / top)): path.read_text()
            for path in sorted((tree / top).rglob("*")) if path.is_file()
        }

    assert files("p1") == {"y/a.txt": "xa", "y/b.txt": "xb"}
    assert files("p2") == {"x/a.txt": "top", "z/b.txt": "zb"}
    assert files("p3") == {"src/a.txt": "sa", "src/x/b.txt": "sb", "src/x/y/c.txt": "sc"}
    # Kept parents keep their own metadata.
    assert _entry(tree, "p3/src/x") == ("d", 0o750, 0, 0)
    assert files("e1") == {"keep.c": "k", "secret": "s"}
    assert files("e2") == {"a.txt": "sa", "x/b.txt": "sb"}
    assert files("p4") == {"y/a.txt": "xa", "y/b.txt": "xb"}
    assert _entry(tree, "p4/y") == ("d", 0o600, 0, 0)
    assert _entry(tree, "p4/y/a.txt") == ("f", 0o600, 0, 0)
    # Excluded files leave the key: changing them keeps every step cached.
    (context / "x" / "y" / "c.md").write_text("changed")
    (context / "home.md").write_text("changed")
    (context / "homework" / "notes.txt").write_text("changed")
    (context / "src" / "x" / "y" / "d.log").write_text("changed")
    (context / "unrelated").write_text("new file")
    assert summary_counts(_build(pybuild, context)) == (0, 6)
    # A file a copy takes still invalidates it (and, through the chain, what follows).
    (context / "src" / "x" / "y" / "c.txt").chmod(0o600)
    assert summary_counts(_build(pybuild, context)) == (4, 2)
    (context / "homework" / "keep.c").write_text("changed")
    assert summary_counts(_build(pybuild, context)) == (3, 3)
    # A new file matching an include pattern deep down is seen (** spans directories).
    (context / "src" / "x" / "y" / "new.txt").write_text("new")
    assert summary_counts(_build(pybuild, context, tree)) == (4, 2)
    assert (tree / "p3" / "src" / "x" / "y" / "new.txt").read_text() == "new"
    assert _entry(tree, "p3/src/x/y/c.txt") == ("f", 0o600, 0, 0)
    assert (tree / "e1" / "keep.c").read_text() == "changed"


def test_parents_missing_source_is_an_error(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, "FROM busybox\nCOPY --parents x/./nope /p/\n", {"x/a": "a"})
    result = pybuild("build", str(context))
    assert result.returncode != 0
    assert '"/x/nope": not found' in result.stderr and "Traceback" not in result.stderr


def test_parents_and_exclude_from_a_stage(pybuild: Runner, tmp_path: Path) -> None:
    context = make_context(tmp_path, (
        "FROM busybox AS build\n"
        "RUN mkdir -p /opt/app/lib /opt/app/doc && echo l > /opt/app/lib/l.so"
        " && echo d > /opt/app/doc/d.txt && echo r > /opt/app/readme.txt"
        " && chown -R 5:6 /opt/app\n"
        "FROM busybox\n"
        "COPY --from=build --parents /opt/./app/**/*.txt /p/\n"
        "COPY --from=build --exclude=doc --exclude=*.txt /opt/app/ /e/\n"
        "ADD --exclude=*.md --chown=0:0 src/ /a/\n"
    ), {"src/a.md": "m", "src/a.sh": "s"})
    tree = tmp_path / "tree"
    _build(pybuild, context, tree)
    assert (tree / "p" / "app" / "readme.txt").read_text() == "r\n"
    assert (tree / "p" / "app" / "doc" / "d.txt").read_text() == "d\n"
    assert not (tree / "p" / "app" / "lib").exists()
    assert _entry(tree, "p/app/doc") == ("d", 0o755, 5, 6)  # a kept parent keeps its owner
    assert sorted(str(p.relative_to(tree / "e")) for p in (tree / "e").rglob("*")) == [
        "lib", "lib/l.so"
    ]
    assert _entry(tree, "e/lib/l.so") == ("f", 0o644, 5, 6)
    assert sorted(os.listdir(tree / "a")) == ["a.sh"]
