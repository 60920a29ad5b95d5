"""argv → request → work → report: the ``pybuild`` command line.

Start-up time matters (``pybuild parse`` is judged as a whole process), so
this module imports only argparse at the top and each command imports what
it needs when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

# typing is imported for the type checker only: it costs start-up time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from builder.errors import PybuildError

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_ERROR = 1  # the Dockerfile or the build failed
EXIT_USAGE = 2  # the command line is wrong (argparse's own code)


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized without importing shutil.

    argparse builds a formatter for every add_argument, and the default one
    imports shutil (with zlib, bz2 and lzma) to ask for the terminal width:
    start-up time a short command cannot spare.
    """

    def __init__(self, prog: str) -> None:
        try:
            width = os.get_terminal_size(sys.stderr.fileno()).columns - 2
        except (OSError, ValueError):
            width = 78
        super().__init__(prog, width=max(width, 40))


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``command``, only that subcommand is declared.

    Declaring all of them costs start-up time (argparse translates every help
    text through gettext), and a run needs only its own.
    """
    parser = argparse.ArgumentParser(
        prog="pybuild",
        formatter_class=_Formatter,
        description="Build OCI images from Dockerfiles, reading them as BuildKit does.",
    )
    from builder import __version__

    parser.add_argument("--version", action="version", version=f"pybuild {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    parse = commands.add_parser(
        "parse",
        formatter_class=_Formatter,
        help="print how a Dockerfile parses",
        description="Parse a Dockerfile and print its instructions.",
    )
    parse.add_argument(
        "-f",
        "--file",
        default="Dockerfile",
        metavar="DOCKERFILE",
        help="the Dockerfile to read ('-' for standard input; default: ./Dockerfile)",
    )
    parse.add_argument(
        "--format",
        choices=("dump", "json"),
        default="dump",
        help="dump: BuildKit's S-expressions; json: one object per instruction",
    )
    parse.add_argument(
        "--check",
        action="store_true",
        help="also type every instruction (refuse unknown instructions and bad flags)",
    )
    parse.set_defaults(run=_run_parse)
    _add_image_commands(commands, only=command)
    if command is None or command in ("du", "prune", "cache"):
        from builder.cli_disk import add_disk_commands

        add_disk_commands(commands, only=command, formatter=_Formatter)
    return parser


class _Unused(argparse.ArgumentParser):
    """Stands in for a subcommand this run does not use: every declaration is dropped."""

    def __init__(self) -> None:  # no ArgumentParser set-up: that is the point
        pass

    def add_argument(self, *args: object, **kwargs: object) -> argparse.Action:
        return argparse.Action(option_strings=[], dest="unused")


_UNUSED = _Unused()

COMMANDS = ("parse", "build", "images", "inspect", "history", "tag", "rmi", "import", "load",
            "pull", "push", "imagetools", "login", "logout", "save", "builds",
            "du", "prune", "cache")


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from builder import cli_images

        command: Callable[[argparse.Namespace], int] = getattr(cli_images, name)
        return command(args)

    return run


def _add_image_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], *, only: str | None
) -> None:
    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        if only is not None and name != only:
            return _UNUSED  # not this run's command: declare nothing
        sub = commands.add_parser(name, help=help_text, description=help_text,
                                  formatter_class=_Formatter)
        sub.add_argument("--root", metavar="DIR",
                         help="the pybuild root (default: $PYBUILD_ROOT or /var/lib/pybuild)")
        sub.set_defaults(run=_lazy(f"run_{name}"))
        return sub

    build = command("build", "build an image from a Dockerfile")
    build.add_argument("context", metavar="CONTEXT", help="the build context directory")
    build.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]",
                       help="name the image (repeatable)")
    build.add_argument("-f", "--file", metavar="DOCKERFILE",
                       help="the Dockerfile (default: CONTEXT/Dockerfile; '-' for stdin)")
    build.add_argument("--build-arg", action="append", default=[], metavar="NAME[=VALUE]",
                       help="set a build argument (repeatable)")
    build.add_argument("--target", metavar="STAGE", help="build this stage")
    build.add_argument("--no-cache", action="store_true", help="do not use the cache")
    build.add_argument("--no-cache-filter", action="append", default=[], metavar="STAGE[,STAGE]",
                       help="do not use the cache for these stages' steps (repeatable)")
    build.add_argument("--gc-keep-storage", metavar="SIZE",
                       help="after the build, prune least recently used cache until the store "
                            "uses at most SIZE (default: gc.keepStorage of ROOT/config.json)")
    build.add_argument("--progress", choices=("auto", "plain", "tty", "quiet", "rawjson"),
                       default="auto", help="how to show progress")
    build.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                       help="reach this registry over plain HTTP (for FROM pulls)")
    build.add_argument("-o", "--output", action="append", default=[], metavar="SPEC",
                       help="also write the image: type=oci|docker|local|tar,dest=... "
                            "(compression=gzip|zstd|uncompressed); DIR alone is type=local")
    build.add_argument("--iidfile", metavar="FILE", help="write the image digest to FILE")
    build.add_argument("--metadata-file", metavar="FILE",
                       help="write buildx's metadata keys and pybuild's build record to FILE")
    build.add_argument("--pull", action="store_true",
                       help="always ask the registry for a newer base image")
    build.add_argument("--explain", action="store_true",
                       help="after the build, say why each missed step missed")
    build.add_argument("--check", action="store_true",
                       help="run the build checks (lint rules) and print the warnings; "
                            "build nothing")
    build.add_argument("--push", action="store_true",
                       help="push the image to its registry (the -t names) after the build")
    build.add_argument("--cache-to", action="append", default=[], metavar="SPEC",
                       help="export the build cache: type=local,dest=DIR | "
                            "type=registry,ref=NAME | type=inline; mode=min|max, "
                            "cache-mounts=true (repeatable)")
    build.add_argument("--secret", action="append", default=[], metavar="id=ID[,src=FILE|env=VAR]",
                       help="a secret for RUN --mount=type=secret (repeatable)")
    build.add_argument("--ssh", action="append", default=[], metavar="ID[=SOCKET]",
                       help="forward an ssh-agent socket to RUN --mount=type=ssh "
                            "(default: $SSH_AUTH_SOCK; repeatable)")
    build.add_argument("--allow", action="append", default=[], metavar="ENTITLEMENT",
                       help="allow security.insecure (RUN --security=insecure) or "
                            "network.host (repeatable)")
    build.add_argument("--build-context", action="append", default=[],
                       metavar="NAME=DIR|docker-image://REF|oci-layout://PATH[:TAG|@DIGEST]",
                       help="a named context for FROM NAME and --from=NAME; it replaces a "
                            "stage or image of that name (repeatable)")
    build.add_argument("--cache-from", action="append", default=[], metavar="SPEC",
                       help="import a build cache: type=local,src=DIR | type=registry,ref=NAME "
                            "| type=image,ref=NAME (repeatable: tried in order)")
    command("images", "list images")
    inspect = command("inspect", "show an image's manifest and config as JSON")
    inspect.add_argument("names", nargs="+", metavar="NAME")
    history = command("history", "show an image's history")
    history.add_argument("name", metavar="NAME")
    history.add_argument("--no-trunc", action="store_true", help="do not truncate")
    tag = command("tag", "give an image another name")
    tag.add_argument("source", metavar="SOURCE")
    tag.add_argument("target", metavar="TARGET")
    rmi = command("rmi", "remove image names")
    rmi.add_argument("names", nargs="+", metavar="NAME")
    imported = command("import", "make an image from a root file system (dir or tar)")
    imported.add_argument("source", metavar="ROOTFS")
    imported.add_argument("-t", "--tag", required=True, metavar="NAME[:TAG]")
    load = command("load", "load images from an OCI or docker archive")
    load.add_argument("-i", "--input", metavar="FILE", help="the archive")
    load.add_argument("archive", nargs="?", metavar="FILE", help="the archive (as -i)")
    for name, help_text in (("pull", "pull an image from a registry"),
                            ("push", "push an image to a registry")):
        sub = command(name, help_text)
        sub.add_argument("name", metavar="NAME")
        if name == "push":
            sub.add_argument("destination", nargs="?", metavar="DEST",
                             help="push under this name instead")
        else:
            sub.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                             help="the platform to pick from a multi-platform image")
        sub.add_argument("--insecure-registry", action="append", default=[],
                         metavar="HOST[:PORT]", help="reach this registry over plain HTTP")
        sub.add_argument("--progress", choices=("auto", "plain", "tty", "quiet", "rawjson"),
                         default="auto", help="how to show each layer's transfer")
    tools = command("imagetools", "make a multi-platform index in a registry from images there")
    tools.add_argument("action", choices=("create",), help="create: one index over SOURCEs")
    tools.add_argument("sources", nargs="+", metavar="SOURCE",
                       help="images (or indexes) in a registry, by tag or digest")
    tools.add_argument("-t", "--tag", action="append", default=[], metavar="REF",
                       help="put the index under this tag (repeatable)")
    tools.add_argument("--dry-run", action="store_true",
                       help="print the index and write nothing")
    tools.add_argument("--insecure-registry", action="append", default=[],
                       metavar="HOST[:PORT]", help="reach this registry over plain HTTP")
    login = command("login", "store credentials for a registry")
    login.add_argument("registry", metavar="REGISTRY")
    login.add_argument("-u", "--username", required=True)
    login.add_argument("--password-stdin", action="store_true",
                       help="read the password from standard input")
    logout = command("logout", "forget the credentials for a registry")
    logout.add_argument("registry", metavar="REGISTRY")
    builds = command("builds", "list recent builds, or show one build's steps")
    builds.add_argument("action", nargs="?", choices=("show", "logs", "diff", "compare"),
                        help="show one build or its step logs; diff or compare two builds "
                             "(compare also takes two --metadata-file outputs)")
    builds.add_argument("build_id", nargs="?", metavar="ID", help="a build id (or prefix)")
    builds.add_argument("other_id", nargs="?", metavar="ID2|STEP",
                        help="the second build, or the step number for logs")
    builds.add_argument("--format", choices=("table", "json"), default="table")
    builds.add_argument("-n", "--last", type=int, default=20, metavar="N",
                        help="how many recent builds to list")
    save = command("save", "write images into one OCI or docker archive")
    save.add_argument("names", nargs="+", metavar="NAME")
    save.add_argument("-o", "--output", metavar="FILE", help="the archive (default: stdout)")
    save.add_argument("--format", choices=("oci", "docker"), default="oci")


def _read_dockerfile(path: str) -> tuple[bytes, str]:
    from builder.errors import UsageError

    if path == "-":
        return sys.stdin.buffer.read(), "<stdin>"
    try:
        with open(path, "rb") as handle:
            return handle.read(), path
    except OSError as err:
        raise UsageError(f"reading {path}: {err.strerror or err}") from err


def _run_parse(args: argparse.Namespace) -> int:
    from builder.frontend.parser import parse_dockerfile

    data, name = _read_dockerfile(args.file)
    tree = parse_dockerfile(data, filename=name)
    if args.check:
        from builder.frontend.instructions import parse_instructions

        parse_instructions(tree, name)
    if args.format == "json":
        import json

        from builder.frontend.render import to_json_commands

        text = json.dumps(to_json_commands(tree), indent=2, ensure_ascii=False) + "\n"
    else:
        from builder.frontend.render import dump

        text = dump(tree)
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))
    return EXIT_OK


def describe_error(err: PybuildError) -> str:
    """An error as the CLI prints it: the place, the message, the lines."""
    from builder.errors import DockerfileError, StepFailed

    lines = [f"error: {err}"]
    if not isinstance(err, DockerfileError | StepFailed):
        return lines[0]
    location, source_lines = err.location, err.source_lines
    if location is not None and source_lines:
        first = location.start_line
        width = len(str(first + len(source_lines) - 1))
        shown = source_lines[:6]
        for offset, text in enumerate(shown):
            lines.append(f" {first + offset:>{width}} | {_printable(text)}")
        if len(source_lines) > len(shown):
            lines.append(f" {'':>{width}} | ...")
    return "\n".join(lines)


def _printable(text: str) -> str:
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > 200:
        text = text[:200] + "..."
    return "".join(char if char.isprintable() or char == "\t" else "?" for char in text)


# Commands that add to the store hold a lease while they run, so a concurrent
# prune keeps what they write before they tag it (cache/leases.py).
_LEASED = ("build", "pull", "load", "import", "tag")


def _run_leased(args: argparse.Namespace) -> int:
    from pathlib import Path

    from builder.request import default_root
    from cache.leases import hold

    with hold(Path(args.root) if args.root else default_root(), args.command):
        code: int = args.run(args)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] not in COMMANDS and arguments[0] not in (
        "-h", "--help", "--version"
    ):
        # `pybuild -t app .` is `pybuild build -t app .`, as docker build is.
        arguments.insert(0, "build")
    wanted = arguments[0] if arguments and arguments[0] in COMMANDS else None
    args = _parser(wanted).parse_args(arguments)
    from builder.errors import PybuildError

    try:
        code: int = _run_leased(args) if args.command in _LEASED else args.run(args)
    except PybuildError as err:
        print(describe_error(err), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    return code
