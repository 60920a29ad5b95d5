"""argv → request → work → report: the ``pybuild`` command line.

Start-up time matters (``pybuild parse`` is judged as a whole process), so
this module imports only argparse at the top and each command imports what
it needs when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

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


def _parser() -> argparse.ArgumentParser:
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
    return parser


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
    from builder.errors import DockerfileError

    lines = [f"error: {err}"]
    if isinstance(err, DockerfileError) and err.location is not None and err.source_lines:
        first = err.location.start_line
        width = len(str(first + len(err.source_lines) - 1))
        shown = err.source_lines[:6]
        for offset, text in enumerate(shown):
            lines.append(f" {first + offset:>{width}} | {_printable(text)}")
        if len(err.source_lines) > len(shown):
            lines.append(f" {'':>{width}} | ...")
    return "\n".join(lines)


def _printable(text: str) -> str:
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > 200:
        text = text[:200] + "..."
    return "".join(char if char.isprintable() or char == "\t" else "?" for char in text)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from builder.errors import PybuildError

    try:
        code: int = args.run(args)
    except PybuildError as err:
        print(describe_error(err), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    return code
