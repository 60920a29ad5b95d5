"""Every error pybuild raises on purpose, in one tree.

    PybuildError                      root: the CLI prints these, never a traceback
    ├── DockerfileError               the Dockerfile is wrong; carries a SourceLocation
    │   ├── ParseError                text that is not a Dockerfile (BuildKit refuses it too)
    │   │   └── UnknownInstruction    a word that is no instruction, with a "did you mean"
    │   ├── BadFlag                   a flag the instruction does not take, or a bad value
    │   │   └── BadMount              a RUN --mount spec BuildKit refuses (type, key, target)
    │   ├── NotAllowed                RUN --security=insecure without --allow security.insecure
    │   ├── ExpansionError            ${VAR?msg}, an unterminated quote, a bad substitution
    │   ├── UnknownStage              FROM/COPY --from naming no stage or image
    │   ├── InvalidPort               an EXPOSE port spec BuildKit refuses
    │   └── BuildCheckFailed          # check=error=true and the build checks found something
    ├── UsageError                    a command-line flag or argument is wrong
    ├── BuildError
    │   ├── StepFailed                a RUN step exited non-zero, a COPY failed
    │   │   └── MountUnavailable      a RUN --mount's secret, SSH agent or source is missing
    │   ├── ContextError              the build context could not be read
    │   │   └── SourceNotFound        a COPY/ADD source names nothing
    │   ├── CopyError                 a COPY/ADD could not be carried out
    │   ├── UnpackError               an ADD archive could not be extracted
    │   ├── RemoteSourceError         an ADD URL or git repository could not be fetched,
    │   │                             or failed its --checksum
    │   └── IgnoreFileError           a .dockerignore or --exclude pattern is invalid
    ├── SandboxError
    ├── CacheError
    ├── RegistryError
    └── StoreError
        └── DiskFull                  no space left on the store's file system

Locations are attached once, where the instruction is known (the frontend
boundary), and the CLI renders them as ``Dockerfile:LINE`` plus the lines.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BadFlag",
    "BadMount",
    "BuildCheckFailed",
    "BuildError",
    "CacheError",
    "ContextError",
    "CopyError",
    "DiskFull",
    "DockerfileError",
    "ExpansionError",
    "IgnoreFileError",
    "InvalidPort",
    "MountUnavailable",
    "NotAllowed",
    "ParseError",
    "PybuildError",
    "RegistryError",
    "RemoteSourceError",
    "SandboxError",
    "SourceLocation",
    "SourceNotFound",
    "StepFailed",
    "StoreError",
    "UnknownInstruction",
    "UnknownStage",
    "UnpackError",
    "UsageError",
]


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """Where in a Dockerfile something is: 1-based, inclusive lines; column 1-based or 0."""

    file: str
    start_line: int
    end_line: int
    column: int = 0

    def __str__(self) -> str:
        where = f"{self.file}:{self.start_line}"
        if self.end_line > self.start_line:
            where += f"-{self.end_line}"
        if self.column:
            where += f":{self.column}"
        return where


class PybuildError(Exception):
    """Root of every error that pybuild raises on purpose."""


class DockerfileError(PybuildError):
    """Something wrong with the Dockerfile itself, at a known place when known.

    ``source_lines`` holds the offending lines (for the CLI to show);
    ``hint`` is an optional suggestion ("did you mean RUN?").
    """

    def __init__(
        self,
        message: str,
        *,
        location: SourceLocation | None = None,
        source_lines: tuple[str, ...] = (),
        hint: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.source_lines = source_lines
        self.hint = hint

    def with_location(
        self, location: SourceLocation, source_lines: tuple[str, ...] = ()
    ) -> DockerfileError:
        """Attach a location if none is set yet; returns self for ``raise ... from``."""
        if self.location is None:
            self.location = location
            self.source_lines = source_lines
        return self

    def __str__(self) -> str:
        text = self.message
        if self.hint:
            text += f" ({self.hint})"
        if self.location is not None:
            text = f"{self.location}: {text}"
        return text


class ParseError(DockerfileError):
    """The text is not a Dockerfile that BuildKit would accept."""


class UnknownInstruction(ParseError):
    """A line starts with a word that is not an instruction."""


class BadFlag(DockerfileError):
    """An instruction was given a flag it does not take, or a flag value it cannot use."""


class BadMount(BadFlag):
    """A RUN --mount value BuildKit refuses: unknown type or key, bad value, bad target."""


class NotAllowed(DockerfileError):
    """A step needs an entitlement (``--allow security.insecure``) the build was not given."""


class ExpansionError(DockerfileError):
    """Word expansion failed: ${VAR?msg}, an unterminated quote, a bad substitution."""


class UnknownStage(DockerfileError):
    """A stage reference that names no stage."""


class InvalidPort(DockerfileError):
    """An EXPOSE port spec BuildKit refuses: a bad port, range, protocol or address."""


class BuildCheckFailed(DockerfileError):
    """The build checks found warnings and the Dockerfile asks for ``# check=error=true``.

    ``report`` is the warnings as the CLI prints them; the message names the
    rules, as BuildKit's does.
    """

    def __init__(self, message: str, *, report: str = "") -> None:
        super().__init__(message)
        self.report = report


class UsageError(PybuildError):
    """The command line is wrong: an unknown flag, a missing argument."""


class BuildError(PybuildError):
    """A build could not complete."""


class StepFailed(BuildError):
    """A step failed: its command exited non-zero, or a COPY could not be done.

    Carries the step's place in the Dockerfile (and its lines) so the CLI can
    point at it, and the exit code when a command failed.
    """

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None = None,
        location: SourceLocation | None = None,
        source_lines: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.location = location
        self.source_lines = source_lines

    def __str__(self) -> str:
        if self.location is None:
            return self.message
        return f"{self.location}: {self.message}"


class MountUnavailable(StepFailed):
    """What a RUN --mount needs is missing: a required secret or SSH agent, a bind source."""


class SandboxError(PybuildError):
    """The sandbox could not be set up or torn down."""


class CacheError(PybuildError):
    """The build cache is unreadable or inconsistent."""


class RegistryError(PybuildError):
    """A registry refused or garbled a request."""


class StoreError(PybuildError):
    """The image store is unreadable or a write to it failed."""


class DiskFull(StoreError):
    """A write to the store ran out of space (ENOSPC, EDQUOT, SQLite's "disk is full")."""


class ContextError(BuildError):
    """The context could not be read: permission denied, a file vanished mid-walk."""


class SourceNotFound(ContextError):
    """A COPY/ADD source names nothing; the message is BuildKit's (``"/x": not found``)."""


class CopyError(BuildError):
    """A COPY/ADD could not be carried out; the message names paths as the image sees them."""


class UnpackError(BuildError):
    """An archive could not be extracted, or an entry would land outside its directory."""


class RemoteSourceError(BuildError):
    """An ADD of a URL or a git repository failed: the transfer, the server's answer, or the
    content's --checksum."""


class IgnoreFileError(BuildError):
    """An ignore file (or ``--exclude``) holds a pattern Docker refuses."""
