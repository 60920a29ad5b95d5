"""RUN with heredocs, run as BuildKit runs them, in real builds on busybox."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Runner

pytestmark = pytest.mark.root


def _build(pybuild: Runner, tmp_path: Path, dockerfile: str) -> Path:
    context = tmp_path / "context"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    tree = tmp_path / "tree"
    result = pybuild("build", "--progress", "plain", "-o", str(tree), str(context))
    assert result.returncode == 0, result.stderr
    return tree


def test_lone_heredoc_is_the_script_and_a_shebang_picks_the_interpreter(
    pybuild: Runner, tmp_path: Path
) -> None:
    tree = _build(pybuild, tmp_path, (
        "FROM busybox\n"
        "ENV WHO=world\n"
        "RUN <<EOF\n"
        "echo \"hello $WHO\" > /script\n"
        "false\n"  # not the last line: sh -c goes on, as BuildKit's does
        "echo \"$0\" >> /script\n"
        "EOF\n"
        "RUN <<EOF\n"
        "#!/bin/awk -f\n"
        "BEGIN { print \"from awk\" > \"/awk\" }\n"
        "EOF\n"
        "RUN <<-'EOT'\n"
        "\t#!/bin/sh\n"  # the tab goes, but the body did not start with #!: a plain script
        "\techo \"quoted $WHO\" > /quoted\n"
        "\tEOT\n"
        "RUN 3<<EOF\n"
        "echo fd > /fd\n"
        "EOF\n"
        "RUN <<EOF\n"
        "#!/bin/sh -e\n"
        "echo \"$0\" > /shebang\n"
        "test -x \"$0\" && ! touch \"$0\" 2>/dev/null\n"
        "EOF\n"
    ))
    assert (tree / "script").read_text() == "hello world\n/bin/sh\n"
    assert (tree / "awk").read_text() == "from awk\n"
    # Variables of a lone heredoc are the shell's, quoted delimiter or not.
    assert (tree / "quoted").read_text() == "quoted world\n"
    assert (tree / "fd").read_text() == "fd\n"
    assert (tree / "shebang").read_text() == "/dev/pipes/EOF\n"
    assert not (tree / "dev" / "pipes").exists()


def test_heredocs_inside_a_command_go_to_the_shell_whole(
    pybuild: Runner, tmp_path: Path
) -> None:
    tree = _build(pybuild, tmp_path, (
        "FROM busybox\n"
        "RUN <<A cat > /a && cat <<'B' > /b\n"
        "first $HOME\n"
        "A\n"
        "second $HOME\n"
        "B\n"
        "RUN 3<<EOF cat <&3 > /three\n"
        "through fd 3\n"
        "EOF\n"
        "RUN cat <<-EOF > /chomped\n"
        "\t\tindented\n"
        "\tEOF\n"
        "RUN <<'EOF' sh -s arg1\n"  # quoted: the inner shell expands $1, not the outer
        "echo \"script got $1\" > /stdin-script\n"
        "EOF\n"
    ))
    assert (tree / "a").read_text() == "first /root\n"
    assert (tree / "b").read_text() == "second $HOME\n"
    assert (tree / "three").read_text() == "through fd 3\n"
    assert (tree / "chomped").read_text() == "indented\n"
    assert (tree / "stdin-script").read_text() == "script got arg1\n"


def test_a_failing_heredoc_script_fails_the_step_naming_its_line(
    pybuild: Runner, tmp_path: Path
) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM busybox\nRUN <<EOF\n#!/bin/sh -e\nfalse\necho not reached\nEOF\n"
    )
    result = pybuild("build", "--progress", "plain", str(context))
    assert result.returncode != 0
    assert "Dockerfile:2" in result.stderr and "exit code: 1" in result.stderr
    assert "not reached" not in result.stderr.split("error:", 1)[1]
