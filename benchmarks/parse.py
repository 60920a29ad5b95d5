"""Time the Dockerfile frontend: in-process parsing and whole-process `pybuild parse`.

    python benchmarks/parse.py [--runs N] [--pybuild PATH]

Prints medians (and the fastest run) for:
  * parsing a generated 1000-instruction Dockerfile in-process (target < 50 ms),
    syntax only and with every instruction typed;
  * `pybuild parse` on examples/hello/Dockerfile (40 lines) as a whole process,
    interpreter start included (target < 120 ms), next to `python -c pass`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EXAMPLE = REPO / "examples" / "hello" / "Dockerfile"

# One line of each common shape; the generated file cycles through them.
TEMPLATE = [
    "FROM debian:bookworm-slim AS stage{n}",
    "ARG VERSION{n}=1.{n}",
    "ENV PATH=/opt/bin{n}:$PATH LANG=C.UTF-8 \\\n    HOME=/root",
    'LABEL org.example.step="{n}" maintainer="dev@example.com"',
    (
        "RUN --mount=type=cache,target=/var/cache/apt apt-get update \\\n"
        "    && apt-get install -y --no-install-recommends curl ca-certificates \\\n"
        "    && rm -rf /var/lib/apt/lists/*"
    ),
    "COPY --chown=app:app --chmod=0644 src/{n}/ /opt/app/{n}/",
    'CMD ["/opt/app/bin/server", "--port", "80{n}"]',
    "WORKDIR /opt/app/{n}",
    "EXPOSE 80{n}/tcp",
    "RUN <<EOF\necho step {n}\nEOF",
]


def generated_dockerfile(instructions: int) -> str:
    lines = ["# syntax=docker/dockerfile:1"]
    for index in range(instructions):
        lines.append(TEMPLATE[index % len(TEMPLATE)].format(n=index))
    return "\n".join(lines) + "\n"


def time_in_process(text: str, runs: int, *, typed: bool) -> list[float]:
    from builder.frontend.instructions import parse_instructions
    from builder.frontend.parser import parse_dockerfile

    data = text.encode()
    parse_dockerfile(data)  # warm: tables loaded, regexes compiled
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        tree = parse_dockerfile(data)
        if typed:
            parse_instructions(tree, "Dockerfile")
        times.append(time.perf_counter() - start)
    return times


def time_process(argv: list[str], runs: int) -> list[float]:
    subprocess.run(argv, check=True, capture_output=True)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def report(label: str, times: list[float]) -> None:
    print(f"{label:<58} median {statistics.median(times) * 1000:7.1f} ms"
          f"   min {min(times) * 1000:7.1f} ms   ({len(times)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--pybuild", help="the pybuild executable (default: found on PATH)")
    args = parser.parse_args()

    text = generated_dockerfile(1000)
    report("in-process: 1000 instructions, syntax", time_in_process(text, args.runs, typed=False))
    report("in-process: 1000 instructions, syntax + typed",
           time_in_process(text, args.runs, typed=True))

    pybuild = args.pybuild or shutil.which("pybuild")
    python = str(Path(pybuild).parent / "python") if pybuild else sys.executable
    report("process: python -c pass", time_process([python, "-c", "pass"], args.runs))
    command = [pybuild] if pybuild else [sys.executable, "-m", "builder"]
    report(f"process: {Path(command[0]).name} parse (40-line example)",
           time_process([*command, "parse", "-f", str(EXAMPLE)], args.runs))
    report(f"process: {Path(command[0]).name} parse --format json",
           time_process([*command, "parse", "--format", "json", "-f", str(EXAMPLE)], args.runs))


if __name__ == "__main__":
    main()
