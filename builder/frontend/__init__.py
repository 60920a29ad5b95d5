"""The Dockerfile frontend: bytes → SyntaxTree (parser) → typed instructions.

Names are re-exported lazily: ``pybuild parse`` must not pay for importing
the instruction layer (or the shell lexer) when it does not use them.
"""

from __future__ import annotations

from builder import lazy

__all__ = [
    "Directive",
    "Heredoc",
    "Node",
    "ShellLexer",
    "SyntaxTree",
    "dump",
    "expand_instruction",
    "parse_dockerfile",
    "parse_instructions",
    "to_json_commands",
]

_HOMES = {
    "Directive": "builder.frontend.syntax",
    "Heredoc": "builder.frontend.syntax",
    "Node": "builder.frontend.syntax",
    "SyntaxTree": "builder.frontend.syntax",
    "ShellLexer": "builder.frontend.shell",
    "dump": "builder.frontend.render",
    "to_json_commands": "builder.frontend.render",
    "expand_instruction": "builder.frontend.instructions",
    "parse_dockerfile": "builder.frontend.parser",
    "parse_instructions": "builder.frontend.instructions",
}

__getattr__ = lazy.exports(__name__, _HOMES)
