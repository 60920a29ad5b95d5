"""RUN: turn a planned step into the sandbox's RunSpec and run it.

The command line is the exec form as written, or the shell form handed to
SHELL (default ``/bin/sh -c``).  Heredocs run as BuildKit runs them:

- a command that is one heredoc and nothing else (``RUN <<EOF``, ``RUN
  3<<-"EOF"``) runs the heredoc's body: when the body starts with ``#!`` it
  is written to a read-only file, mode 0755, at /dev/pipes/NAME, and the
  shell runs that file (so the shebang picks the interpreter); otherwise
  the body itself is the shell's script (``<<-`` strips leading tabs first);
- a command that merely uses heredocs (``RUN cat <<A >/a && cat 3<<B``) goes
  to the shell whole, each body appended after its line, as a script file
  would hold them; the shell then reads the bodies, redirections and all.

``--mount`` mounts arrive prepared (ops/mounts.py); ``--network`` picks the
sandbox's network, and ``--security=insecure`` (allowed only by ``pybuild
build --allow security.insecure``, see check_entitlements) makes the step
privileged.
"""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from builder.errors import ExpansionError, NotAllowed, StepFailed
from builder.frontend import commands
from builder.frontend.syntax import Heredoc
from builder.plan.graph import Graph, Step
from builder.sandbox.spec import ContentMount, Mount, RunSpec
from builder.sandbox.users import home_directory, resolve_user

TYPE_CHECKING = False
if TYPE_CHECKING:
    from builder.ops.mounts import PreparedMounts

__all__ = ["RunCommand", "check_entitlements", "run_argv", "run_command", "run_step"]

_TAIL_LINES = 20
# BuildKit's test for "this command is one heredoc": [N]<<[-]WORD and nothing after WORD.
_LONE_HEREDOC = re.compile(r"([0-9]*)<<(-?)([^<]*)\Z")
_SCRIPT_DIRECTORY = "/dev/pipes/"
_MASK = b"****"


@dataclass(frozen=True, slots=True)
class RunCommand:
    """What a RUN executes: argv, and the script file a shebang heredoc needs (or None)."""

    argv: tuple[str, ...]
    script: ContentMount | None = None


def run_command(instruction: commands.Run, shell: tuple[str, ...]) -> RunCommand:
    """The argv of a RUN (and its heredoc script file), as BuildKit's dispatchRun makes it."""
    if not instruction.prepends_shell:
        return RunCommand(instruction.command)
    script = " ".join(instruction.command)
    if not instruction.heredocs:
        return RunCommand((*shell, script))
    if _is_lone_heredoc(script):
        first = instruction.heredocs[0]
        body = _body(first.content, first.chomp)
        if first.content.startswith("#!"):
            path = _SCRIPT_DIRECTORY + _file_name(first)
            content = body.encode("utf-8", "surrogateescape")
            return RunCommand((*shell, path), ContentMount(path, content, mode=0o755))
        return RunCommand((*shell, body))
    full = script + "".join("\n" + doc.content + doc.name for doc in instruction.heredocs)
    return RunCommand((*shell, full))


def run_argv(instruction: commands.Run, shell: tuple[str, ...]) -> tuple[str, ...]:
    """The argv alone (what history and messages show)."""
    return run_command(instruction, shell).argv


def _is_lone_heredoc(script: str) -> bool:
    match = _LONE_HEREDOC.match(script)
    if match is None or not match.group(3):
        return False
    from builder.frontend.shell import ShellLexer

    try:
        words = ShellLexer(escape="\\", skip_unset_env=True).process_words(match.group(3), {})
    except ExpansionError:
        return False
    return len(words) == 1


def _file_name(heredoc: Heredoc) -> str:
    name = heredoc.name.replace("/", "_")
    return name if name not in ("", ".", "..") else "heredoc"


def _body(content: str, chomp: bool) -> str:
    if not chomp:
        return content
    return "".join(line.lstrip("\t") for line in content.splitlines(keepends=True))


def _network(mode: str) -> Literal["default", "host", "none"]:
    if mode == "none":
        return "none"
    if mode == "host":
        return "host"
    return "default"


def check_entitlements(graph: Graph, allowed: Iterable[str]) -> None:
    """Refuse RUN --security=insecure unless the build was given --allow security.insecure.

    Checked for every step the build needs, cached or not, before anything
    runs (BuildKit validates entitlements on the whole definition).
    """
    if "security.insecure" in allowed:
        return
    for stage in graph.stages:
        for step in stage.steps:
            instruction = step.instruction
            if isinstance(instruction, commands.Run) and instruction.security == "insecure":
                raise NotAllowed(
                    "RUN --security=insecure needs the security.insecure entitlement",
                    location=step.location,
                    hint="pass --allow security.insecure to pybuild build",
                )


def run_step(
    step: Step,
    rootfs: Path,
    output: Callable[[bytes], None],
    *,
    cancel: threading.Event | None = None,
    prepared: PreparedMounts | None = None,
) -> None:
    """Run the step's command in rootfs; StepFailed (with the output's tail) if it fails.

    Setting ``cancel`` (the build was interrupted, or another stage failed)
    kills the step; the sandbox then raises SandboxError.  ``prepared`` are
    the step's --mount mounts, extra variables and secret values, which are
    masked in everything the step prints.
    """
    from builder.sandbox import runner

    instruction = step.instruction
    assert isinstance(instruction, commands.Run)
    before = step.before
    user = resolve_user(rootfs, before.user or "0")
    extra_env = prepared.env if prepared is not None else ()
    overridden = {key for key, _ in extra_env}
    env = [f"{key}={value}" for key, value in step.run_env if key not in overridden]
    env += [f"{key}={value}" for key, value in extra_env]
    if not any(key == "HOME" for key, _ in (*step.run_env, *extra_env)):
        # runc adds HOME from the image's passwd entry when the env has none.
        env.append(f"HOME={home_directory(rootfs, user.uid)}")
    command = run_command(instruction, before.effective_shell())
    mounts: list[Mount] = list(prepared.mounts) if prepared is not None else []
    if command.script is not None:
        mounts.append(command.script)
    spec = RunSpec(
        argv=command.argv,
        rootfs=rootfs,
        env=tuple(env),
        cwd=before.effective_workdir(),
        user=user,
        mounts=tuple(mounts),
        network=_network(instruction.network),
        privileged=instruction.security == "insecure",
    )
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    partial = [b""]

    def collect(data: bytes) -> None:
        output(data)
        text = partial[0] + data
        *lines, partial[0] = text.split(b"\n")
        tail.extend(line.decode("utf-8", "replace") for line in lines)

    masker = _Masker(prepared.masked if prepared is not None else (), collect)
    try:
        status = runner.run(spec, output=masker.feed, cancel=cancel)
    finally:
        masker.flush()
    if status != 0:
        if partial[0]:
            tail.append(partial[0].decode("utf-8", "replace"))
        shown = " ".join(spec.argv)
        message = f"process \"{shown}\" did not complete successfully: exit code: {status}"
        if tail:
            message += "\n" + "\n".join(f"  {line}" for line in tail)
        raise StepFailed(message, exit_code=status, location=step.location)


class _Masker:
    """Replaces secret values in a byte stream with ****, even across chunk boundaries.

    The last (longest value - 1) bytes are held back until more output
    arrives, since they may be the start of a value.
    """

    def __init__(self, values: Iterable[bytes], output: Callable[[bytes], None]) -> None:
        self._values = sorted({value for value in values if value}, key=len, reverse=True)
        self._output = output
        self._held = b""
        self._keep = max((len(value) for value in self._values), default=1) - 1

    def feed(self, data: bytes) -> None:
        if not self._values:
            self._output(data)
            return
        text = self._mask(self._held + data)
        cut = len(text) - self._keep
        if cut <= 0:
            self._held = text
            return
        self._held = text[cut:]
        self._output(text[:cut])

    def flush(self) -> None:
        if self._held:
            self._output(self._mask(self._held))
            self._held = b""

    def _mask(self, text: bytes) -> bytes:
        for value in self._values:
            text = text.replace(value, _MASK)
        return text
