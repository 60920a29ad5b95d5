"""RUN: turn a planned step into the sandbox's RunSpec and run it.

The command line is the exec form as written, or the shell form handed to
SHELL (default ``/bin/sh -c``).  A RUN whose command is a lone heredoc
(``RUN <<EOF``) runs the heredoc's text as the shell command; a command that
merely uses heredocs (``RUN cat <<EOF > f``) is handed to the shell whole,
bodies included, and the shell reads them as a script would.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from builder.errors import StepFailed
from builder.frontend import commands
from builder.plan.graph import Step
from builder.sandbox.spec import RunSpec
from builder.sandbox.users import home_directory, resolve_user

__all__ = ["run_argv", "run_step"]

_TAIL_LINES = 20


def run_argv(instruction: commands.Run, shell: tuple[str, ...]) -> tuple[str, ...]:
    if not instruction.prepends_shell:
        return instruction.command
    script = " ".join(instruction.command)
    if instruction.heredocs:
        only = instruction.heredocs[0]
        if len(instruction.heredocs) == 1 and script.strip() in (
            f"<<{only.name}", f"<<-{only.name}", f"<<'{only.name}'", f'<<"{only.name}"'
        ):
            return (*shell, _body(only.content, only.chomp))
        bodies = "".join(
            "\n" + _body(doc.content, doc.chomp) + doc.name for doc in instruction.heredocs
        )
        script += bodies
    return (*shell, script)


def _network(mode: str) -> Literal["default", "host", "none"]:
    if mode == "none":
        return "none"
    if mode == "host":
        return "host"
    return "default"


def _body(content: str, chomp: bool) -> str:
    if not chomp:
        return content
    return "".join(line.lstrip("\t") for line in content.splitlines(keepends=True))


def run_step(
    step: Step,
    rootfs: Path,
    output: Callable[[bytes], None],
    *,
    cancel: threading.Event | None = None,
) -> None:
    """Run the step's command in rootfs; StepFailed (with the output's tail) if it fails.

    Setting ``cancel`` (the build was interrupted, or another stage failed)
    kills the step; the sandbox then raises SandboxError.
    """
    from builder.sandbox import runner

    instruction = step.instruction
    assert isinstance(instruction, commands.Run)
    before = step.before
    user = resolve_user(rootfs, before.user or "0")
    env = [f"{key}={value}" for key, value in step.run_env]
    if not any(key == "HOME" for key, _ in step.run_env):
        # runc adds HOME from the image's passwd entry when the env has none.
        env.append(f"HOME={home_directory(rootfs, user.uid)}")
    spec = RunSpec(
        argv=run_argv(instruction, before.effective_shell()),
        rootfs=rootfs,
        env=tuple(env),
        cwd=before.effective_workdir(),
        user=user,
        network=_network(instruction.network),
    )
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    partial = [b""]

    def collect(data: bytes) -> None:
        output(data)
        text = partial[0] + data
        *lines, partial[0] = text.split(b"\n")
        tail.extend(line.decode("utf-8", "replace") for line in lines)

    status = runner.run(spec, output=collect, cancel=cancel)
    if status != 0:
        if partial[0]:
            tail.append(partial[0].decode("utf-8", "replace"))
        shown = " ".join(spec.argv)
        message = f"process \"{shown}\" did not complete successfully: exit code: {status}"
        if tail:
            message += "\n" + "\n".join(f"  {line}" for line in tail)
        raise StepFailed(message, exit_code=status, location=step.location)
