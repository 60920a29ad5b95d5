"""No input, however broken, makes the frontend crash or hang.

Binary garbage, huge files, deep nesting, long continuations: the parser and
the instruction layer either read them or refuse them with a DockerfileError
that names a line, and both finish quickly.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builder.errors import DockerfileError, ParseError
from builder.frontend.instructions import parse_instructions
from builder.frontend.parser import parse_dockerfile


def _read_fully(data: bytes) -> None:
    """Parse and type; only DockerfileError may come out."""
    try:
        tree = parse_dockerfile(data)
    except ParseError as err:
        assert err.location is not None, "a refusal must name its line"
        return
    try:
        parse_instructions(tree, "Dockerfile")
    except DockerfileError as err:
        assert err.location is not None, "a refusal must name its line"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_are_read_or_refused(data: bytes) -> None:
    _read_fully(data)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [b"FROM a", b"RUN ", b"COPY --from=", b"<<EOF", b"EOF", b"\\", b"`", b"\n", b"\r\n",
             b"[", b"]", b'"', b"'", b"${", b"}", b"ONBUILD ", b"HEALTHCHECK ", b"ENV ",
             b"# escape=`", b"\x00", b"\xff", b"\xc3", b"\x85", b" ", b"\t", b"=", b"--", b"AS"]
        ),
        max_size=60,
    )
)
def test_dockerfile_fragments_are_read_or_refused(pieces: list[bytes]) -> None:
    _read_fully(b"".join(pieces))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"FROM a\nCMD " + b"[" * 200_000 + b"\n", id="deep-json"),
        pytest.param(b"FROM a\nCMD " + b"[" * 5000 + b"]" * 5000 + b"\n", id="deep-closed-json"),
        pytest.param(b"FROM a\nRUN " + b"${a:-" * 5000 + b"}" * 5000 + b"\n", id="deep-expansion"),
        pytest.param(b"ONBUILD " * 8000 + b"RUN x\n", id="nested-onbuild"),
        pytest.param(b"FROM a\n" + b"RUN x \\\n" * 50_000 + b"y\n", id="long-continuation"),
        pytest.param(b"FROM a\nRUN <<EOF\n" + b"line\n" * 100_000, id="unterminated-heredoc"),
        pytest.param(b"FROM a\n" + b"RUN echo hi\n" * 50_000, id="many-instructions"),
        pytest.param(b"\x00\xff" * 100_000, id="binary"),
        pytest.param(b"FROM a\nENV " + b"a=b " * 15_000 + b"\n", id="wide-env"),
        pytest.param(b"x" * 70_000, id="line-too-long"),
    ],
)
def test_hostile_input_finishes_quickly(data: bytes) -> None:
    start = time.perf_counter()
    _read_fully(data)
    assert time.perf_counter() - start < 10
