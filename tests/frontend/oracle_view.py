"""What the reference parser's reading looks like after it crosses into Python.

The ``dockerfile`` package hands BuildKit's Go strings to Python as C strings,
so each string ends at its first NUL character.  BuildKit itself keeps the
NUL (its own dump test shows ``\\x00``), and so do we; to compare with the
package's reading, cut our strings the same way.
"""

from __future__ import annotations

from typing import Any


def _c_string(text: Any) -> Any:
    if isinstance(text, str):
        return text.split("\0", 1)[0]
    return text


def as_oracle_sees(commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = []
    for command in commands:
        copy = {key: _c_string(value) for key, value in command.items()}
        copy["flags"] = [_c_string(flag) for flag in command["flags"]]
        copy["value"] = [_c_string(word) for word in command["value"]]
        copy["heredocs"] = [
            {key: _c_string(value) for key, value in heredoc.items()}
            for heredoc in command["heredocs"]
        ]
        seen.append(copy)
    return seen
