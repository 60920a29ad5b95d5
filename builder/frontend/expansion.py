"""Variable expansion in instruction words, exactly where BuildKit expands them.

The Dockerfile reference lists the instructions whose words are expanded
before the instruction runs: ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL,
USER, VOLUME, WORKDIR and ARG (and ONBUILD's trigger, but only when a child
build runs it).  RUN, CMD, ENTRYPOINT, SHELL and HEALTHCHECK are left alone:
their text goes to a shell, which expands it itself.  Expansion also removes
quotes, so ``ENV a="b c"`` sets ``b c``.

BuildKit does *not* expand ``COPY --from`` (use ``FROM $IMAGE AS src`` and
copy from ``src``) nor ``--exclude`` patterns, so neither is expanded here.
RUN ``--mount`` values are expanded field by field where mounts are read,
not as whole strings, so they stay as written too.

Every function returns new values (instructions are frozen) and the names
that were referenced but unset, for the UndefinedVar check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from builder.errors import DockerfileError, ExpansionError
from builder.frontend.commands import (
    Add,
    Arg,
    ArgDefinition,
    Copy,
    Env,
    Expose,
    From,
    Instruction,
    KeyValue,
    Label,
    SourceContent,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from builder.frontend.shell import ShellLexer

__all__ = ["expand_from", "expand_instruction", "expand_instruction_with_matches"]


def expand_instruction(
    instruction: Instruction, env: Mapping[str, str], *, escape: str
) -> Instruction:
    """A copy of instruction with its expandable words expanded against env."""
    return expand_instruction_with_matches(instruction, env, escape=escape)[0]


def expand_instruction_with_matches(
    instruction: Instruction, env: Mapping[str, str], *, escape: str
) -> tuple[Instruction, frozenset[str]]:
    """The expanded copy and the variable names it referenced that env does not set.

    FROM is returned unchanged: its words are expanded with the global ARGs
    only, by ``expand_from``.  Raises ExpansionError (located at the
    instruction) for a word the lexer refuses, such as ``${X?unset}``.
    """
    expander = _Expander(env, escape)
    try:
        expanded = _expand(instruction, expander)
    except DockerfileError as err:
        raise err.with_location(instruction.location)
    return expanded, frozenset(expander.unmatched)


def expand_from(
    instruction: From, global_args: Mapping[str, str], *, escape: str
) -> tuple[From, frozenset[str]]:
    """FROM with its base name and ``--platform`` expanded by the ARGs before the first FROM.

    The caller adds the automatic platform ARGs (BUILDPLATFORM, TARGETOS…)
    to global_args, as BuildKit does for ``--platform``.  A base name that
    expands to nothing is refused, as BuildKit refuses it.
    """
    expander = _Expander(global_args, escape)
    try:
        base_name = expander.word(instruction.base_name)
        platform = expander.word(instruction.platform) if instruction.platform else ""
        if base_name == "":
            raise ExpansionError(f"base name ({instruction.base_name}) should not be blank")
    except DockerfileError as err:
        raise err.with_location(instruction.location)
    expanded = dataclasses.replace(instruction, base_name=base_name, platform=platform)
    return expanded, frozenset(expander.unmatched)


class _Expander:
    """One lexer and environment, collecting the unset names every word referenced."""

    def __init__(self, env: Mapping[str, str], escape: str) -> None:
        self._lexer = ShellLexer(escape=escape)
        # Here-document bodies are expanded with quotes left alone and
        # always with a backslash escape, whatever the escape directive says
        # (BuildKit's ExpandRaw makes a fresh lexer for them).
        self._raw_lexer = ShellLexer(escape="\\", skip_process_quotes=True)
        self._env = env
        self.unmatched: set[str] = set()

    def word(self, text: str) -> str:
        result = self._lexer.process_word_with_matches(text, self._env)
        self.unmatched.update(result.unmatched)
        return result.word

    def words(self, text: str) -> list[str]:
        # BuildKit's EXPOSE uses ProcessWords, which reports no names.
        return self._lexer.process_words(text, self._env)

    def raw(self, text: str) -> str:
        result = self._raw_lexer.process_word_with_matches(text, self._env)
        self.unmatched.update(result.unmatched)
        return result.word

    def pairs(self, pairs: tuple[KeyValue, ...]) -> tuple[KeyValue, ...]:
        return tuple(
            dataclasses.replace(pair, key=self.word(pair.key), value=self.word(pair.value))
            for pair in pairs
        )

    def contents(self, contents: tuple[SourceContent, ...]) -> tuple[SourceContent, ...]:
        return tuple(
            dataclasses.replace(content, data=self.raw(content.data)) if content.expand else content
            for content in contents
        )


def _expand(instruction: Instruction, expander: _Expander) -> Instruction:
    """The per-instruction rule; the order of words matches BuildKit's Expand methods."""
    match instruction:
        case Env() | Label():
            return dataclasses.replace(instruction, pairs=expander.pairs(instruction.pairs))
        case Arg():
            return dataclasses.replace(
                instruction,
                args=tuple(
                    ArgDefinition(
                        expander.word(arg.name),
                        None if arg.default is None else expander.word(arg.default),
                    )
                    for arg in instruction.args
                ),
            )
        case Copy():
            chown = expander.word(instruction.chown)
            chmod = expander.word(instruction.chmod)
            return dataclasses.replace(
                instruction,
                chown=chown,
                chmod=chmod,
                sources=tuple(expander.word(source) for source in instruction.sources),
                destination=expander.word(instruction.destination),
                source_contents=expander.contents(instruction.source_contents),
            )
        case Add():
            chown = expander.word(instruction.chown)
            chmod = expander.word(instruction.chmod)
            checksum = expander.word(instruction.checksum)
            return dataclasses.replace(
                instruction,
                chown=chown,
                chmod=chmod,
                checksum=checksum,
                sources=tuple(expander.word(source) for source in instruction.sources),
                destination=expander.word(instruction.destination),
                source_contents=expander.contents(instruction.source_contents),
            )
        case Expose():
            ports = tuple(port for text in instruction.ports for port in expander.words(text))
            return dataclasses.replace(instruction, ports=ports)
        case Volume():
            volumes = tuple(expander.word(volume) for volume in instruction.volumes)
            if "" in volumes:
                raise ExpansionError("VOLUME specified can not be an empty string")
            return dataclasses.replace(instruction, volumes=volumes)
        case User():
            return dataclasses.replace(instruction, user=expander.word(instruction.user))
        case Workdir():
            return dataclasses.replace(instruction, path=expander.word(instruction.path))
        case StopSignal():
            return dataclasses.replace(instruction, signal=expander.word(instruction.signal))
        case _:
            # FROM (see expand_from), ONBUILD (expanded when triggered),
            # MAINTAINER, and the shell-run instructions keep their text.
            return instruction
