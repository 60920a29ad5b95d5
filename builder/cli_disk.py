"""The disk commands of the CLI: ``du``, ``prune`` and ``cache verify``.

cli.py declares them through ``add_disk_commands`` only when one of them
runs (or for --help), so other commands pay nothing for this module.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cache.gc import PruneResult
    from cache.usage import Item

__all__ = ["DISK_COMMANDS", "add_disk_commands", "build_flags", "format_size", "parse_size_flag",
           "run_cache", "run_du", "run_prune"]

DISK_COMMANDS = ("du", "prune", "cache")
# Items shown one line each; the rest (journal entries, cache rows of empty
# steps) are summed into one line per reason unless --verbose.
_LISTED = ("layer", "image", "blob", "compressed", "snapshot", "cachemount", "tmp")


def add_disk_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    only: str | None,
    formatter: type[argparse.HelpFormatter],
) -> None:
    def command(name: str, help_text: str, run: Callable[[argparse.Namespace], int]
                ) -> argparse.ArgumentParser | None:
        if only is not None and name != only:
            return None
        sub = commands.add_parser(name, help=help_text, description=help_text,
                                  formatter_class=formatter)
        sub.add_argument("--root", metavar="DIR",
                         help="the pybuild root (default: $PYBUILD_ROOT or /var/lib/pybuild)")
        sub.set_defaults(run=run)
        return sub

    du = command("du", "show what the store holds on disk and what prune could reclaim", run_du)
    if du is not None:
        du.add_argument("-v", "--verbose", action="store_true",
                        help="list every item (journal entries and empty steps too)")
        du.add_argument("--format", choices=("table", "json"), default="table")
    prune = command("prune", "remove build cache nothing refers to (--all: all unused cache)",
                    run_prune)
    if prune is not None:
        prune.add_argument("-a", "--all", action="store_true",
                           help="also remove build cache that no tag refers to (layers, cache "
                                "mounts, compressed copies), not only what nothing refers to")
        prune.add_argument("--keep-storage", metavar="SIZE",
                           help="remove least recently used first, until the store uses at "
                                "most SIZE (e.g. 10GB)")
        prune.add_argument("--filter", action="append", default=[], metavar="until=DURATION",
                           help="only what was last used more than DURATION ago (e.g. 24h)")
        prune.add_argument("--dry-run", action="store_true",
                           help="list what would be removed, and why; remove nothing")
        prune.add_argument("-f", "--force", action="store_true",
                           help="accepted for docker's sake: pybuild never asks")
        prune.add_argument("-v", "--verbose", action="store_true", help="list every item")
    cache = command("cache", "check the store's consistency: pybuild cache verify [--repair]",
                    run_cache)
    if cache is not None:
        cache.add_argument("action", choices=("verify",), metavar="verify")
        cache.add_argument("--repair", action="store_true",
                           help="drop what is broken and clear leftovers of dead builds")
        cache.add_argument("--format", choices=("table", "json"), default="table")


def _root(args: argparse.Namespace) -> Path:
    from builder.request import default_root

    root = Path(args.root) if args.root else default_root()
    if not root.is_dir():
        from builder.errors import UsageError

        raise UsageError(f"--root {root}: no pybuild store there")
    return root


def format_size(size: int) -> str:
    """Sizes as docker prints them: decimal units, three significant digits."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{size}B" if unit == "B" else f"{value:.3g}{unit}"
        value /= 1000
    return f"{size}B"


def _ago(moment: float, now: float) -> str:
    seconds = max(now - moment, 0.0)
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            count = int(seconds // length)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    if seconds < 1:
        return "just now"
    return "1 second ago" if int(seconds) == 1 else f"{int(seconds)} seconds ago"


def _status(item: Item) -> str:
    from cache.usage import CACHE, DANGLING

    if item.status == DANGLING:
        return f"prune: {item.reason}"
    if item.status == CACHE:
        return f"prune --all: {item.reason}"
    return f"kept: {item.reason}"


def _display_name(item: Item) -> str:
    name = item.name
    if name.startswith("sha256:"):
        return name[:19]
    return name if len(name) <= 24 else name[:21] + "..."


def _rows(items: list[tuple[Item, str]], verbose: bool, now: float) -> list[tuple[str, ...]]:
    """One row per listed item; the others summed into one row per (kind, reason)."""
    rows: list[tuple[str, ...]] = []
    grouped: dict[tuple[str, str], list[Item]] = {}
    for item, text in items:
        if verbose or item.kind in _LISTED:
            rows.append((item.kind, _display_name(item), format_size(item.size),
                         _ago(item.last_used, now), text))
        else:
            grouped.setdefault((item.kind, text), []).append(item)
    for (kind, text), members in grouped.items():
        newest = max(member.last_used for member in members)
        rows.append((kind, f"({len(members)} entries)", format_size(sum(m.size for m in members)),
                     _ago(newest, now), text))
    return rows


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    if len(rows) <= 1:
        return
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


def run_du(args: argparse.Namespace) -> int:
    from cache.usage import KEPT, category_totals, take_inventory

    inventory = take_inventory(_root(args))
    totals = category_totals(inventory.items)
    reclaim_prune = sum(row["prune"] for row in totals.values())
    reclaim_all = sum(row["all"] for row in totals.values())
    if args.format == "json":
        document = {
            "items": [
                {"kind": item.kind, "name": item.name, "size": item.size,
                 "last_used": round(item.last_used, 3), "status": item.status,
                 "reason": item.reason,
                 "parts": [{"category": part.category, "target": part.target, "size": part.size}
                           for part in item.parts]}
                for item in inventory.items
            ],
            "categories": totals,
            "total": inventory.total(),
            "reclaimable": {"prune": reclaim_prune, "prune_all": reclaim_all},
            "running_builds": sorted({info.pid for info in inventory.live}),
        }
        print(json.dumps(document, indent=2))
        return 0
    now = inventory.taken
    shown = [(item, _status(item)) for item in inventory.items
             if item.kind not in ("records", "logs", "metadata", "other")]
    shown.sort(key=lambda pair: (pair[0].status == KEPT, -pair[0].size))
    _print_table([("KIND", "ID", "SIZE", "LAST USED", "STATUS"),
                  *_rows(shown, args.verbose, now)])
    print()
    table = [("CATEGORY", "SIZE", "PRUNE", "PRUNE --ALL", "")]
    for category in ("snapshots", "layers", "configs", "manifests", "other blobs",
                     "cache mounts", "journal", "tmp", "build records", "logs", "metadata",
                     "other"):
        row = totals.get(category)
        if row is None:
            continue
        table.append((category, format_size(row["total"]), format_size(row["prune"]),
                      format_size(row["all"]), ""))
    _print_table(table)
    print()
    print(f"Total:       {format_size(inventory.total())}")
    print(f"Reclaimable: {format_size(reclaim_prune)} by prune, "
          f"{format_size(reclaim_all)} by prune --all")
    if inventory.live:
        pids = ", ".join(str(pid) for pid in sorted({info.pid for info in inventory.live}))
        print(f"Running builds: {pids} (what they use is kept)")
    return 0


def _until(filters: list[str]) -> float | None:
    from builder.errors import UsageError
    from builder.frontend.gonumbers import parse_duration

    until = None
    for text in filters:
        key, sep, value = text.partition("=")
        if not sep or key.strip().lower() != "until":
            raise UsageError(f"--filter {text!r}: pybuild supports only until=DURATION")
        try:
            nanoseconds = parse_duration(value.strip())
        except ValueError as err:
            raise UsageError(f"--filter {text!r}: {err}") from err
        if nanoseconds < 0:
            raise UsageError(f"--filter {text!r}: the duration must not be negative")
        until = nanoseconds / 1e9
    return until


def parse_size_flag(flag: str, text: str) -> int:
    from builder.errors import UsageError
    from cache.gcpolicy import parse_size

    try:
        return parse_size(text)
    except ValueError as err:
        raise UsageError(f"{flag} {text!r}: {err}") from err


def build_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The BuildRequest fields of ``build --no-cache-filter`` and ``--gc-keep-storage``."""
    from builder.errors import UsageError

    stages: list[str] = []
    for text in getattr(args, "no_cache_filter", []):
        names = [name.strip().lower() for name in text.split(",")]
        if not all(names):
            raise UsageError(f"--no-cache-filter {text!r}: expected STAGE[,STAGE]")
        stages.extend(names)
    keep = getattr(args, "gc_keep_storage", None)
    return {
        "no_cache_filter": tuple(dict.fromkeys(stages)),
        "gc_keep_storage": None if keep is None else parse_size_flag("--gc-keep-storage", keep),
    }


def run_prune(args: argparse.Namespace) -> int:
    from cache.gc import PruneOptions, prune

    options = PruneOptions(
        all=args.all,
        keep_storage=(None if args.keep_storage is None
                      else parse_size_flag("--keep-storage", args.keep_storage)),
        until=_until(args.filter),
        dry_run=args.dry_run,
    )
    result = prune(_root(args), options)
    _report_prune(result, args.verbose)
    return 0


def _report_prune(result: PruneResult, verbose: bool) -> None:
    now = time.time()
    if result.removed:
        print("would remove:" if result.dry_run else "removed:")
        _print_table([("KIND", "ID", "SIZE", "LAST USED", "WHY"),
                      *_rows(list(result.removed), verbose, now)])
    if result.skipped:
        print("kept, in use meanwhile:")
        _print_table([("KIND", "ID", "SIZE", "LAST USED", "WHY"),
                      *_rows(list(result.skipped), verbose, now)])
    verb = "would reclaim" if result.dry_run else "reclaimed"
    print(f"Total: {verb} {format_size(result.reclaimed)} of {format_size(result.total_before)}")


def run_cache(args: argparse.Namespace) -> int:
    from cache.verify import verify

    findings = verify(_root(args), repair=args.repair)
    problems = [finding for finding in findings if not finding.harmless]
    leftovers = [finding for finding in findings if finding.harmless]
    if args.format == "json":
        print(json.dumps([{"kind": f.kind, "name": f.name, "problem": f.problem,
                           "harmless": f.harmless, "repaired": f.repaired} for f in findings],
                         indent=2))
    else:
        for finding in findings:
            label = "leftover" if finding.harmless else "BROKEN"
            done = " (repaired)" if finding.repaired else ""
            print(f"{label} {finding.kind} {finding.name}: {finding.problem}{done}")
        unrepaired = [finding for finding in problems if not finding.repaired]
        if not problems:
            note = f"; {len(leftovers)} harmless leftovers" if leftovers else ""
            cleared = " (cleared)" if leftovers and args.repair else ""
            print(f"store is consistent{note}{cleared}", file=sys.stderr)
        elif unrepaired:
            print(f"store has {len(unrepaired)} problems: run pybuild cache verify --repair",
                  file=sys.stderr)
        else:
            print(f"repaired {len(problems)} problems", file=sys.stderr)
    return 1 if any(not finding.repaired for finding in problems) else 0
