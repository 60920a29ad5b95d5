"""The Dockerfile as the checks read it: each node beside its typed instruction.

Rules about how a line is written (keyword casing, ``AS`` casing) need the
node's words as written; rules about meaning need the typed instruction.
Both come from one parse, paired here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from builder.frontend.commands import From, Instruction
from builder.frontend.instructions import parse_instruction
from builder.frontend.syntax import Node, SyntaxTree

__all__ = ["Source", "read_source"]


@dataclass(frozen=True, slots=True)
class Source:
    tree: SyntaxTree
    instructions: tuple[Instruction, ...]  # one per node of tree, in order
    filename: str

    def pairs(self) -> Iterator[tuple[Node, Instruction]]:
        return zip(self.tree.nodes, self.instructions, strict=True)

    def first_stage_index(self) -> int:
        """Where the first FROM is: what comes before it are the global ARGs."""
        for index, instruction in enumerate(self.instructions):
            if isinstance(instruction, From):
                return index
        return len(self.instructions)


def read_source(tree: SyntaxTree, filename: str) -> Source:
    """Type every node; raises the frontend's DockerfileError at the first bad one."""
    instructions = tuple(
        parse_instruction(node, filename=filename, lines=tree.lines) for node in tree.nodes
    )
    return Source(tree, instructions, filename)
