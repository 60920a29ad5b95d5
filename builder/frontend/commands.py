"""One frozen value per Dockerfile instruction: the typed layer (BuildKit's commands.go).

Every instruction keeps the text it came from (``original``, trimmed as
BuildKit's ``String()`` gives it) and where it was (``location``), so any
later error can point back at the Dockerfile.  Words are kept as written,
quotes and ``$VARS`` included, until ``expansion.expand_instruction``
expands the ones the Dockerfile reference says are expanded.

Field names follow the Dockerfile reference rather than Go: ``from_stage``
(``COPY --from``), ``excludes`` (``--exclude``), ``interval_ns``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from builder.errors import SourceLocation
from builder.frontend.syntax import Heredoc

__all__ = [
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
]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Located:
    """What every instruction has: its source text and its place in the file."""

    keyword: ClassVar[str]
    original: str
    location: SourceLocation


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One ``key=value`` of ENV or LABEL; a tuple of these keeps the written order.

    ``no_delimiter`` marks the legacy ``ENV key value`` form (for the
    LegacyKeyValueFormat warning).
    """

    key: str
    value: str
    no_delimiter: bool = False


@dataclass(frozen=True, slots=True)
class ArgDefinition:
    """One name of an ARG line; default is None for ``ARG name`` (no ``=``)."""

    name: str
    default: str | None


@dataclass(frozen=True, slots=True)
class SourceContent:
    """A here-document used as a COPY/ADD source: a file named ``path`` holding ``data``.

    ``data`` is already chomped for ``<<-``; ``expand`` is False when the
    delimiter was quoted, and then ``$VARS`` in the data stay as they are.
    """

    path: str
    data: str
    expand: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class From(_Located):
    """``FROM [--platform=P] base [AS name]``: the start of a build stage.

    ``stage_name`` is lower-cased ("" when unnamed); ``base_name`` and
    ``platform`` are expanded later with the global ARGs (``expand_from``).
    """

    keyword: ClassVar[str] = "FROM"
    base_name: str
    stage_name: str
    platform: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Run(_Located):
    """``RUN``: ``command`` is the JSON words, or one shell string when ``prepends_shell``.

    Mounts and devices are the raw ``--mount``/``--device`` values; their
    fields are read (and their variables expanded) where mounts are planned,
    because BuildKit expands each field after splitting, not the raw string.
    """

    keyword: ClassVar[str] = "RUN"
    command: tuple[str, ...]
    prepends_shell: bool
    heredocs: tuple[Heredoc, ...]
    mounts: tuple[str, ...]
    network: str  # default, none or host
    security: str  # sandbox or insecure
    devices: tuple[str, ...]
    flags_used: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Cmd(_Located):
    """``CMD``: the default command; an empty tuple for ``CMD []`` or a bare ``CMD``."""

    keyword: ClassVar[str] = "CMD"
    command: tuple[str, ...]
    prepends_shell: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Entrypoint(_Located):
    """``ENTRYPOINT``: like CMD; an empty one clears the entrypoint."""

    keyword: ClassVar[str] = "ENTRYPOINT"
    command: tuple[str, ...]
    prepends_shell: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Shell(_Located):
    """``SHELL ["exe", "args"]``: JSON form only."""

    keyword: ClassVar[str] = "SHELL"
    shell: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Env(_Located):
    """``ENV k=v …`` or ``ENV k v``: pairs in written order, quotes kept until expansion."""

    keyword: ClassVar[str] = "ENV"
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Label(_Located):
    """``LABEL k=v …``: pairs in written order, quotes kept until expansion."""

    keyword: ClassVar[str] = "LABEL"
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Arg(_Located):
    """``ARG a b=1 …``: one or more build arguments, each with an optional default."""

    keyword: ClassVar[str] = "ARG"
    args: tuple[ArgDefinition, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Expose(_Located):
    """``EXPOSE 80/tcp …``: sorted as BuildKit sorts them (by bytes) when parsing."""

    keyword: ClassVar[str] = "EXPOSE"
    ports: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume(_Located):
    """``VOLUME /a /b`` or the JSON form; each path trimmed of white space."""

    keyword: ClassVar[str] = "VOLUME"
    volumes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class User(_Located):
    keyword: ClassVar[str] = "USER"
    user: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Workdir(_Located):
    keyword: ClassVar[str] = "WORKDIR"
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StopSignal(_Located):
    keyword: ClassVar[str] = "STOPSIGNAL"
    signal: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Maintainer(_Located):
    keyword: ClassVar[str] = "MAINTAINER"
    maintainer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Healthcheck(_Located):
    """``HEALTHCHECK NONE`` or ``HEALTHCHECK [flags] CMD …``, as the image config stores it.

    ``test`` is ``("NONE",)``, ``("CMD", *words)`` for the JSON form or
    ``("CMD-SHELL", text)`` for the shell form.  Durations are nanoseconds
    (Go's time.Duration, as the OCI config holds them); 0 means "not set,
    use the default", and so does ``retries`` 0.
    """

    keyword: ClassVar[str] = "HEALTHCHECK"
    test: tuple[str, ...]
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    start_interval_ns: int = 0
    retries: int = 0

    @property
    def is_disabled(self) -> bool:
        return self.test == ("NONE",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Onbuild(_Located):
    """``ONBUILD <instruction>``: a trigger stored as text for images built FROM this one.

    ``expression`` is what goes into the image config (the line without
    ``ONBUILD``, plus any here-documents).  BuildKit only checks that the
    trigger is not ONBUILD, FROM or MAINTAINER here and parses it when a
    child build runs it; so ``trigger`` is the trigger parsed now, for early
    warnings, or None with ``trigger_error`` saying why it would fail then.
    """

    keyword: ClassVar[str] = "ONBUILD"
    expression: str
    trigger: Instruction | None
    trigger_error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Copy(_Located):
    """``COPY [flags] src… dest``; here-document sources are in ``source_contents``.

    ``from_stage`` is kept as written: BuildKit does not expand variables in
    ``--from`` (define the source as a stage with ``FROM $IMAGE AS src``).
    ``excludes`` are not expanded either.
    """

    keyword: ClassVar[str] = "COPY"
    sources: tuple[str, ...]
    source_contents: tuple[SourceContent, ...]
    destination: str
    from_stage: str
    chown: str
    chmod: str
    link: bool
    parents: bool
    excludes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Add(_Located):
    """``ADD [flags] src… dest``: COPY plus URLs, git and archives.

    ``unpack`` is None when ``--unpack`` was not given (BuildKit then unpacks
    local archives but not remote ones), else the flag's value.
    """

    keyword: ClassVar[str] = "ADD"
    sources: tuple[str, ...]
    source_contents: tuple[SourceContent, ...]
    destination: str
    chown: str
    chmod: str
    link: bool
    keep_git_dir: bool
    checksum: str
    unpack: bool | None
    excludes: tuple[str, ...]


Instruction = (
    From
    | Run
    | Cmd
    | Entrypoint
    | Shell
    | Env
    | Label
    | Arg
    | Expose
    | Volume
    | User
    | Workdir
    | StopSignal
    | Maintainer
    | Healthcheck
    | Onbuild
    | Copy
    | Add
)
