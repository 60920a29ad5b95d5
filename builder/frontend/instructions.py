"""Node → typed instruction, with BuildKit's checks and messages (its instructions/parse.go).

This is the frontend's typed layer in one import: the instruction classes
live in ``commands``, word expansion in ``expansion``, and both are
re-exported here.

Each ``_parse_<keyword>`` checks what BuildKit checks, in BuildKit's order,
because the order decides which error a broken line reports: most count
their arguments before reading flags, FROM reads its stage name first, and
a few never read their flags at all (STOPSIGNAL, ARG, HEALTHCHECK NONE), so
any flag there is ignored rather than refused.  Errors get the
instruction's location once, in ``parse_instruction``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from builder.errors import BadFlag, DockerfileError, ParseError, SourceLocation, UnknownInstruction
from builder.frontend import gotext, suggest
from builder.frontend.commands import (
    Add,
    Arg,
    ArgDefinition,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Instruction,
    KeyValue,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    SourceContent,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from builder.frontend.copying import parse_add, parse_copy
from builder.frontend.expansion import (
    expand_from,
    expand_instruction,
    expand_instruction_with_matches,
)
from builder.frontend.flags import FlagKind, FlagSpec, ParsedFlags, parse_flags
from builder.frontend.healthcheck import parse_healthcheck
from builder.frontend.syntax import Node, SyntaxTree

__all__ = [
    "KEYWORDS",
    "Add",
    "Arg",
    "ArgDefinition",
    "Cmd",
    "Copy",
    "Entrypoint",
    "Env",
    "Expose",
    "From",
    "Healthcheck",
    "Instruction",
    "KeyValue",
    "Label",
    "Maintainer",
    "Onbuild",
    "Run",
    "Shell",
    "SourceContent",
    "StopSignal",
    "User",
    "Volume",
    "Workdir",
    "expand_from",
    "expand_instruction",
    "expand_instruction_with_matches",
    "parse_instruction",
    "parse_instructions",
]

KEYWORDS = frozenset(
    {
        "add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck",
        "label", "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume",
        "workdir",
    }
)  # fmt: skip

# The "ONBUILD" prefix BuildKit strips from the trigger text.  Spelled as
# ASCII classes: Go's (?i) folds these letters to ASCII only, while Python's
# re.IGNORECASE would also let "ı" match "I".
_ONBUILD_PREFIX = re.compile(r"\A[\t\n\f\r ]*[Oo][Nn][Bb][Uu][Ii][Ll][Dd][\t\n\f\r ]*")
_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*")
_NETWORK_MODES = frozenset({"default", "none", "host"})
_SECURITY_MODES = frozenset({"sandbox", "insecure"})


def parse_instructions(tree: SyntaxTree, filename: str) -> tuple[Instruction, ...]:
    """Every instruction of the tree, typed; raises at the first bad one.

    Like BuildKit's instructions.Parse, only ARG may come before the first
    FROM: anything else there has no stage to belong to.
    """
    instructions: list[Instruction] = []
    in_stage = False
    for node in tree.nodes:
        instruction = parse_instruction(node, filename=filename, lines=tree.lines)
        if isinstance(instruction, From):
            in_stage = True
        elif not in_stage and not isinstance(instruction, Arg):
            raise ParseError(
                "no build stage in current context",
                location=instruction.location,
                source_lines=_source_lines(lines=tree.lines, node=node),
            )
        instructions.append(instruction)
    return tuple(instructions)


def parse_instruction(node: Node, *, filename: str, lines: tuple[str, ...]) -> Instruction:
    """One Node as a typed instruction; every error carries the node's location and lines."""
    location = SourceLocation(filename, node.start_line, node.end_line)
    try:
        return _parse(node, location)
    except DockerfileError as err:
        raise err.with_location(location, _source_lines(lines=lines, node=node))


def _source_lines(*, lines: tuple[str, ...], node: Node) -> tuple[str, ...]:
    return lines[max(node.start_line, 1) - 1 : node.end_line]


def _parse(node: Node, location: SourceLocation) -> Instruction:
    parser = _PARSERS.get(node.name)
    if parser is None:
        # BuildKit names the keyword as written and suggests in the same case.
        match = suggest.closest(node.keyword, (k.upper() for k in KEYWORDS), case_sensitive=False)
        raise UnknownInstruction(
            f"unknown instruction: {node.keyword}", hint=f"did you mean {match}?" if match else ""
        )
    return parser(node, location)


def _original(node: Node) -> str:
    return gotext.trim_space(node.original)


def _flags(node: Node, *specs: FlagSpec) -> ParsedFlags:
    return parse_flags(node.flags, *specs)


def _exactly_one(node: Node, name: str) -> str:
    if len(node.arguments) != 1:
        raise ParseError(f"{name} requires exactly one argument")
    return node.arguments[0]


def _at_least_one(node: Node, name: str) -> None:
    if not node.arguments:
        raise ParseError(f"{name} requires at least one argument")


def _command_words(node: Node) -> tuple[str, ...]:
    """BuildKit's handleJSONArgs: the JSON words, or the shell form as one string."""
    if not node.arguments or node.is_json:
        return node.arguments
    return (" ".join(node.arguments),)


def _parse_env(node: Node, location: SourceLocation) -> Env:
    _flags(node)
    return Env(original=_original(node), location=location, pairs=_pairs(node, "ENV"))


def _parse_label(node: Node, location: SourceLocation) -> Label:
    _flags(node)
    return Label(original=_original(node), location=location, pairs=_pairs(node, "LABEL"))


def _pairs(node: Node, name: str) -> tuple[KeyValue, ...]:
    """The node's (key, value, separator) triples as pairs; separator "" is ``ENV k v``."""
    words = node.arguments
    _at_least_one(node, name)
    if len(words) % 3:
        raise ParseError(f"Bad input to {name}, too many arguments")
    pairs: list[KeyValue] = []
    for index in range(0, len(words), 3):
        key, value, separator = words[index : index + 3]
        if key == "":
            raise ParseError(f"{name} names can not be blank")
        pairs.append(KeyValue(key, value, no_delimiter=separator == ""))
    return tuple(pairs)


def _parse_maintainer(node: Node, location: SourceLocation) -> Maintainer:
    maintainer = _exactly_one(node, "MAINTAINER")
    _flags(node)
    return Maintainer(original=_original(node), location=location, maintainer=maintainer)


def _parse_from(node: Node, location: SourceLocation) -> From:
    words = node.arguments
    stage_name = ""
    if len(words) == 3 and gotext.go_lower(words[1]) == "as":
        stage_name = gotext.go_lower(words[2])
        if not _STAGE_NAME.fullmatch(stage_name):
            raise ParseError(
                f"invalid name for build stage: {gotext.go_quote(words[2])},"
                " name can't start with a number or contain symbols"
            )
    elif len(words) != 1:
        raise ParseError("FROM requires either one or three arguments")
    flags = _flags(node, FlagSpec("platform", FlagKind.STRING))
    return From(
        original=_original(node),
        location=location,
        base_name=words[0],
        stage_name=stage_name,
        platform=flags.value("platform"),
    )


def _parse_onbuild(node: Node, location: SourceLocation) -> Onbuild:
    child = node.child
    if child is None:
        raise ParseError("ONBUILD requires at least one argument")
    _flags(node)
    trigger_keyword = gotext.go_upper(gotext.trim_space(child.keyword))
    if trigger_keyword == "ONBUILD":
        raise ParseError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger_keyword in ("MAINTAINER", "FROM"):
        raise ParseError(f"{trigger_keyword} isn't allowed as an ONBUILD trigger")
    text = _onbuild_text(node)
    expression = text + "".join("\n" + doc.content + doc.name for doc in node.heredocs)
    # Our parser hangs the here-documents on the ONBUILD node; the trigger
    # is the instruction that reads them.
    inner = dataclasses.replace(
        child,
        original=expression + ("\n" if node.heredocs else ""),
        heredocs=node.heredocs,
    )
    try:
        trigger: Instruction | None = _parse(inner, location)
        error = ""
    except DockerfileError as err:
        trigger, error = None, str(err)
    return Onbuild(
        original=_original(node),
        location=location,
        expression=expression,
        trigger=trigger,
        trigger_error=error,
    )


def _onbuild_text(node: Node) -> str:
    """The ONBUILD line without its keyword and without here-document bodies."""
    line = node.original
    if node.heredocs:
        bodies = "".join("\n" + doc.content + doc.name for doc in node.heredocs) + "\n"
        line = line.removesuffix(bodies)
    return _ONBUILD_PREFIX.sub("", line, count=1)


def _parse_workdir(node: Node, location: SourceLocation) -> Workdir:
    path = _exactly_one(node, "WORKDIR")
    _flags(node)
    return Workdir(original=_original(node), location=location, path=path)


def _parse_run(node: Node, location: SourceLocation) -> Run:
    flags = _flags(
        node,
        FlagSpec("device", FlagKind.STRINGS),
        FlagSpec("mount", FlagKind.STRINGS),
        FlagSpec("network", FlagKind.STRING, "default"),
        FlagSpec("security", FlagKind.STRING, "sandbox"),
    )
    network = flags.value("network")
    if network not in _NETWORK_MODES:
        raise BadFlag(f"invalid network mode {gotext.go_quote(network)}")
    security = flags.value("security")
    if security not in _SECURITY_MODES:
        raise BadFlag(f"security {gotext.go_quote(security)} is not valid")
    return Run(
        original=_original(node),
        location=location,
        command=_command_words(node),
        prepends_shell=not node.is_json,
        heredocs=node.heredocs,
        mounts=flags.values("mount"),
        network=network,
        security=security,
        devices=flags.values("device"),
        flags_used=flags.used,
    )


def _parse_cmd(node: Node, location: SourceLocation) -> Cmd:
    _flags(node)
    return Cmd(
        original=_original(node),
        location=location,
        command=_command_words(node),
        prepends_shell=not node.is_json,
    )


def _parse_entrypoint(node: Node, location: SourceLocation) -> Entrypoint:
    _flags(node)
    return Entrypoint(
        original=_original(node),
        location=location,
        command=_command_words(node),
        prepends_shell=not node.is_json,
    )


def _parse_expose(node: Node, location: SourceLocation) -> Expose:
    _at_least_one(node, "EXPOSE")
    _flags(node)
    # Go's sort.Strings orders by bytes; code points differ only for the
    # surrogates that stand for invalid bytes, so sort by the bytes.
    ports = tuple(sorted(node.arguments, key=gotext.encode_source))
    return Expose(original=_original(node), location=location, ports=ports)


def _parse_user(node: Node, location: SourceLocation) -> User:
    user = _exactly_one(node, "USER")
    _flags(node)
    return User(original=_original(node), location=location, user=user)


def _parse_volume(node: Node, location: SourceLocation) -> Volume:
    _at_least_one(node, "VOLUME")
    _flags(node)
    volumes = tuple(gotext.trim_space(word) for word in node.arguments)
    if "" in volumes:
        raise ParseError("VOLUME specified can not be an empty string")
    return Volume(original=_original(node), location=location, volumes=volumes)


def _parse_stopsignal(node: Node, location: SourceLocation) -> StopSignal:
    # BuildKit never reads STOPSIGNAL's flags: any are ignored.
    signal = _exactly_one(node, "STOPSIGNAL")
    return StopSignal(original=_original(node), location=location, signal=signal)


def _parse_arg(node: Node, location: SourceLocation) -> Arg:
    # BuildKit never reads ARG's flags: any are ignored.
    _at_least_one(node, "ARG")
    definitions: list[ArgDefinition] = []
    for word in node.arguments:
        name, has_default, default = word.partition("=")
        if has_default and name == "":
            raise ParseError("ARG names can not be blank")
        definitions.append(ArgDefinition(name, default if has_default else None))
    return Arg(original=_original(node), location=location, args=tuple(definitions))


def _parse_shell(node: Node, location: SourceLocation) -> Shell:
    _flags(node)
    words = _command_words(node)
    if not words:
        raise ParseError("SHELL requires at least one argument")
    if not node.is_json:
        raise ParseError("SHELL requires the arguments to be in JSON form")
    return Shell(original=_original(node), location=location, shell=words)


_PARSERS: dict[str, Callable[[Node, SourceLocation], Instruction]] = {
    "add": parse_add,
    "arg": _parse_arg,
    "cmd": _parse_cmd,
    "copy": parse_copy,
    "entrypoint": _parse_entrypoint,
    "env": _parse_env,
    "expose": _parse_expose,
    "from": _parse_from,
    "healthcheck": parse_healthcheck,
    "label": _parse_label,
    "maintainer": _parse_maintainer,
    "onbuild": _parse_onbuild,
    "run": _parse_run,
    "shell": _parse_shell,
    "stopsignal": _parse_stopsignal,
    "user": _parse_user,
    "volume": _parse_volume,
    "workdir": _parse_workdir,
}
