"""Print a SyntaxTree: BuildKit's S-expression dump, or JSON in the oracle's shape.

The dump is what BuildKit's parser tests compare byte for byte
(``(copy ["--from=b"] "a" "b")``); the JSON is the shape of the
``commands`` entries of the reference parser's reading (one object per
instruction: cmd, sub_cmd, json, flags, value, start_line, end_line,
heredocs), so the two parsers can be diffed directly.
"""

from __future__ import annotations

# typing is imported for the type checker only: it costs start-up time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from builder.frontend.gotext import go_quote, trim_space
from builder.frontend.syntax import Node, SyntaxTree

__all__ = ["dump", "dump_node", "to_json_commands"]


def dump(tree: SyntaxTree) -> str:
    """The whole tree, one ``(instruction ...)`` per line, ending with a newline."""
    return "".join(f"({dump_node(node)})\n" for node in tree.nodes)


def dump_node(node: Node) -> str:
    """One instruction without its outer parentheses.

    Heredoc bodies follow the arguments as quoted strings, so a dump shows
    everything the instruction will use.
    """
    # ONBUILD nests; walk the chain instead of recursing, then close the
    # parentheses of every inner instruction at once.
    text: list[str] = []
    depth = 0
    current: Node | None = node
    while current is not None:
        parts = [current.name]
        if current.flags:
            parts.append("[" + " ".join(go_quote(flag) for flag in current.flags) + "]")
        if current.child is None:
            parts.extend(go_quote(argument) for argument in current.arguments)
        # BuildKit trims the joined text, so an empty keyword leaves no gap.
        text.append(trim_space(" ".join(parts)))
        current = current.child
        depth += 1
    # Only the outermost node holds heredocs (ONBUILD RUN <<EOF keeps them there).
    bodies = "".join(" " + go_quote(heredoc.content) for heredoc in node.heredocs)
    return " (".join(text) + ")" * (depth - 1) + bodies


def to_json_commands(tree: SyntaxTree) -> list[dict[str, Any]]:
    return [_command(node) for node in tree.nodes]


# ENV and LABEL hold (key, value, separator) triples; the reference's reading
# lists only the keys and values.
_KEY_VALUE_KEYWORDS = frozenset({"env", "label"})


def _without_separators(arguments: tuple[str, ...]) -> list[str]:
    return [word for index, word in enumerate(arguments) if index % 3 != 2]


def _command(node: Node) -> dict[str, Any]:
    # For ONBUILD the reference reports the inner instruction's words, form
    # and heredocs, under the outer instruction's flags.
    inner = node.child if node.child is not None else node
    if inner.child is not None:
        value: list[str] = [""]  # ONBUILD ONBUILD ...: a node holding a node
    elif inner.name in _KEY_VALUE_KEYWORDS:
        value = _without_separators(inner.arguments)
    else:
        value = list(inner.arguments)
    return {
        # The reference reports keywords as written ("run" stays "run").
        "cmd": node.keyword or None,
        "sub_cmd": (node.child.keyword or None) if node.child is not None else None,
        "json": inner.is_json,
        "flags": list(node.flags),
        "value": value,
        "start_line": node.start_line,
        "end_line": node.end_line,
        "heredocs": [
            {"name": heredoc.name, "content": heredoc.content}
            for heredoc in (inner.heredocs if node.child is None else ())
        ],
    }
