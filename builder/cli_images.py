"""The image-store commands of the CLI: build, images, inspect, history, tag, rmi, import, load.

Each ``run_*`` takes the parsed argparse namespace and returns an exit code;
cli.py only declares the arguments.  Imports are late: ``pybuild parse``
must not pay for any of this.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from typing import Any

    from builder.cachexport.options import CacheSpec
    from builder.engine import BuildResult, Root
    from builder.export.options import OutputSpec
    from builder.image import oci
    from builder.registry import RegistryOptions
    from builder.request import BuildRequest
    from builder.transfer_progress import TransferProgress
    from cache.records import BuildRecord, BuildRecords

__all__ = [
    "run_build",
    "run_builds",
    "run_history",
    "run_images",
    "run_imagetools",
    "run_import",
    "run_inspect",
    "run_load",
    "run_login",
    "run_logout",
    "run_pull",
    "run_push",
    "run_rmi",
    "run_save",
    "run_tag",
]


def _root(args: argparse.Namespace) -> Root:
    from builder.engine import open_root
    from builder.request import default_root

    return open_root(Path(args.root) if args.root else default_root())


def _build_arg(text: str) -> tuple[str, str | None]:
    name, sep, value = text.partition("=")
    return (name, value if sep else None)


def _mount_sources(args: argparse.Namespace) -> dict[str, Any]:
    """--secret, --ssh and --allow, checked up front (BuildRequest fields)."""
    from builder.errors import UsageError
    from builder.secrets import parse_secret_flag, parse_ssh_flag

    allowed = ("security.insecure", "network.host")
    for entitlement in args.allow:
        for name in entitlement.split(","):
            if name not in allowed:
                raise UsageError(f"--allow {entitlement}: unknown entitlement {name!r} "
                                 f"(known: {', '.join(allowed)})")
    return {
        "secrets": tuple(parse_secret_flag(text) for text in args.secret),
        "ssh": tuple(parse_ssh_flag(text) for text in args.ssh),
        "allow": tuple(name for text in args.allow for name in text.split(",")),
    }


def _disk_flags(args: argparse.Namespace) -> dict[str, Any]:
    """--no-cache-filter and --gc-keep-storage, read by builder/cli_disk.py."""
    from builder.cli_disk import build_flags

    return build_flags(args)


def run_build(args: argparse.Namespace) -> int:
    from builder.errors import UsageError
    from builder.request import BuildRequest, default_root

    context = Path(args.context)
    if args.file == "-":
        dockerfile, name, path = sys.stdin.buffer.read(), "Dockerfile", None
    else:
        path = Path(args.file) if args.file else context / "Dockerfile"
        try:
            dockerfile = path.read_bytes()
        except OSError as err:
            raise UsageError(f"reading {path}: {err.strerror or err}") from err
        name = str(path) if args.file else "Dockerfile"
    for text in args.build_arg:
        if not text.partition("=")[0]:
            raise UsageError(f"--build-arg {text!r}: expected NAME[=VALUE]")
    if args.build_context:
        from builder.contexts import parse_build_context

        for text in args.build_context:
            parse_build_context(text)  # refuse a bad --build-context before any work
    outputs = []
    if args.output:
        from builder.export.options import parse_output

        outputs = [parse_output(text) for text in args.output]  # refuse bad specs up front
    if args.push:
        from builder.export.options import OutputSpec

        outputs.append(OutputSpec(type="registry", dest=""))
    request = BuildRequest(
        context=context,
        dockerfile=dockerfile,
        dockerfile_name=name,
        dockerfile_path=path,
        root=Path(args.root) if args.root else default_root(),
        tags=tuple(args.tag),
        build_args=tuple(_build_arg(text) for text in args.build_arg),
        target=args.target or "",
        no_cache=args.no_cache,
        progress=args.progress,
        insecure_registries=tuple(args.insecure_registry),
        pull=args.pull,
        cache_from=_cache_specs(args.cache_from, "from"),
        cache_to=_cache_specs(args.cache_to, "to"),
        build_contexts=tuple(args.build_context),
        **_mount_sources(args),
        **_disk_flags(args),
    )
    if args.check:
        return _check_only(request)
    journal_ok = not (outputs or args.iidfile or args.metadata_file or args.no_cache
                      or args.pull or args.explain)
    if journal_ok and args.progress != "rawjson" and _replay(
        request, args.progress
    ):
        _replay_warnings(request)
        return 0
    result = _build_checked(request)
    _print_warnings(request, result, journaled=journal_ok)
    if outputs:
        from builder.engine import open_root
        from builder.export.exporter import export

        root = open_root(request.root)
        manifest = root.images.resolve(result.manifest_digest)
        for spec in outputs:
            if spec.type == "registry":
                _push_all(root, result.manifest_digest, (*result.tags, *spec.names), args, spec)
            elif spec.type != "image":  # type=image: the local store, done already
                export(root.images, root.blobs, manifest, names=result.tags, spec=spec)
    if args.iidfile:
        _write_atomically(Path(args.iidfile), result.manifest_digest)
    if args.explain:
        _explain(request.root, result.build_id)
    if args.metadata_file:
        _write_atomically(Path(args.metadata_file), _metadata(request.root, result))
    if args.progress == "quiet":
        print(result.manifest_digest)
    return 0


def _check_only(request: BuildRequest) -> int:
    """build --check: every stage's warnings (the target's, with --target); nothing is built.

    Exit 1 only when the Dockerfile asks for ``# check=error=true`` and
    something was found, as BuildKit's check fails.
    """
    from builder.checks.report import render_full
    from builder.engine import check_dockerfile

    result = check_dockerfile(request, all_stages=True)
    sys.stdout.write(render_full(result))
    sys.stdout.flush()
    if result.failed:
        print(f"error: {result.failure_message()}", file=sys.stderr)
        return 1
    return 0


def _build_checked(request: BuildRequest) -> BuildResult:
    """The build; with ``# check=error=true`` and warnings, the warnings then the error."""
    from builder.engine import build
    from builder.errors import BuildCheckFailed

    try:
        return build(request)
    except BuildCheckFailed as err:
        sys.stderr.write(err.report)
        raise


def _warnings_file(request: BuildRequest) -> Path | None:
    """Where a journaled build keeps its warnings, for a replay to print them again.

    Keyed by the journal key: whatever the warnings depend on (Dockerfile,
    build args, target, base images via index.json, ignore files via the
    journal's own stat checks) is what the key and the replay check cover.
    """
    from builder.request import journal_key

    key = journal_key(request)
    return None if key is None else request.root / "checks" / key


def _print_warnings(request: BuildRequest, result: BuildResult, *, journaled: bool) -> None:
    """The build checks' findings after a build: buildx's short list (JSON events for rawjson)."""
    from builder.checks.report import render_short

    if request.progress == "rawjson":
        for warning in result.warnings:
            event = {"event": "warning", "rule": warning.rule, "message": warning.message,
                     "description": warning.description, "line": warning.location.start_line}
            sys.stderr.write(json.dumps(event, ensure_ascii=False) + "\n")
    else:
        sys.stderr.write(render_short(result.warnings))
    if journaled:
        path = _warnings_file(request)
        if path is not None:
            path.parent.mkdir(exist_ok=True)
            _write_atomically(path, render_short(result.warnings))


def _replay_warnings(request: BuildRequest) -> None:
    path = _warnings_file(request)
    try:
        text = path.read_text() if path is not None else ""
    except OSError:
        return  # recorded before warnings were kept, or removed: nothing to repeat
    sys.stderr.write(text)


def _cache_specs(values: list[str], direction: str) -> tuple[CacheSpec, ...]:
    """--cache-from / --cache-to values, refused up front if malformed."""
    if not values:
        return ()
    from builder.cachexport.options import parse_cache_spec

    return tuple(parse_cache_spec(text, direction=direction) for text in values)


def _metadata(root: Path, result: BuildResult) -> str:
    """The --metadata-file document: buildx's keys, then pybuild's build record.

    Its shape is docs/metadata.schema.json.  Build args appear in no form:
    the record names steps by instruction text and cache key only.
    """
    from cache.records import BuildRecords

    record = BuildRecords(root / "cache.db").get(result.build_id)
    steps = [] if record is None else [
        {"instruction": step.instruction, "stage": step.stage, "line": step.line,
         "cache_key": step.cache_key, "result": _state(step.hit).lower(),
         "hit_source": step.source if step.hit == 1 else "",
         "seconds": round(step.seconds, 3), "bytes": step.bytes}
        for step in record.step_records
    ]
    keyed = result.cached + result.ran
    document = {
        "containerimage.digest": result.manifest_digest,
        "containerimage.config.digest": result.config_digest,
        "image.name": ",".join(result.tags),
        "pybuild.build": {
            "id": result.build_id,
            "steps": result.steps,
            "cached": result.cached,
            "ran": result.ran,
            "hit_rate": round(result.cached / keyed, 4) if keyed else 1.0,
            "seconds": round(result.seconds, 3),
            "step_records": steps,
        },
    }
    return json.dumps(document, indent=2) + "\n"


def _explain(root: Path, build_id: str) -> None:
    """--explain: why each step that missed missed, against the previous same build."""
    from builder.explain import explain_build
    from cache.records import BuildRecords

    records = BuildRecords(root / "cache.db")
    now = records.get(build_id)
    if now is None:
        return
    before = records.previous(now)
    lines = [f"explain: compared with build {before.id}" if before else
             "explain: no earlier build of this Dockerfile and target"]
    for number, text, reasons in explain_build(now, before):
        lines.append(f"#{number} {text}")
        lines.extend(f"    {reason}" for reason in reasons)
    print("\n".join(lines), file=sys.stderr)


def _push_all(
    root: Root, digest: str, names: tuple[str, ...], args: argparse.Namespace, spec: OutputSpec
) -> None:
    """--push / -o type=registry: push the built image under each name, its layers
    compressed as ``spec`` says."""
    from builder.errors import UsageError
    from builder.registry import push

    if not names:
        raise UsageError("--push: name the image with -t (or -o type=registry,name=...)")
    manifest = root.images.resolve(digest)
    progress = _transfer_progress(args)
    try:
        for name in dict.fromkeys(names):
            root.images.tag(name, manifest)  # a no-op when the tag is already there
            pushed = push(root.images, root.blobs, name, options=_registry_options(args),
                          progress=progress, compression=spec.compression,
                          oci_media_types=spec.oci_media_types)
            print(f"pushed {name}: {pushed.digest}", file=sys.stderr)
    finally:
        progress.close()


def _transfer_progress(args: argparse.Namespace) -> TransferProgress:
    """Per-layer progress of a pull or push, in the command's --progress mode."""
    from builder.transfer_progress import make_transfer_progress

    return make_transfer_progress(getattr(args, "progress", "auto"))


def _write_atomically(path: Path, text: str) -> None:
    from cache.files import write_atomically

    write_atomically(path, text.encode())


def _replay(request: BuildRequest, progress: str) -> bool:
    """Answer the build from the journal when nothing it depends on changed."""
    import time

    from builder import journal
    from builder.progress import summary_line
    from builder.request import journal_key

    started = time.perf_counter()
    key = journal_key(request)
    entry = journal.load(request.root, key, request.context.resolve()) if key else None
    if entry is None:
        return False
    seconds = time.perf_counter() - started
    summary = summary_line(steps=entry["steps"], cached=entry["cached"], ran=0,
                           seconds=seconds, digest=entry["manifest"])
    _record_replay(request, entry, seconds)
    if progress == "quiet":
        print(entry["manifest"])
    else:
        sys.stderr.write("\n".join([*journal.replay_lines(entry), summary]) + "\n")
    return True


def _record_replay(request: BuildRequest, entry: dict[str, Any], seconds: float) -> None:
    """A build answered by the journal is still a build: record it, every step a hit."""
    import time

    from cache.records import BuildRecord, BuildRecords, StepRecord, new_build_id

    steps = tuple(
        StepRecord(stage, instruction, line, key, 1 if key else -1, 0.0, 0)
        for _, _, key, line, stage, instruction in entry["lines"]
    )
    BuildRecords(request.root / "cache.db").save(BuildRecord(
        id=new_build_id(), started=time.time(), dockerfile=request.dockerfile_name,
        target=request.target, steps=entry["steps"], cached=entry["cached"], ran=0,
        seconds=seconds, digest=entry["manifest"], outcome="ok", step_records=steps,
    ))


def run_images(args: argparse.Namespace) -> int:
    root = _root(args)
    rows = [("NAME", "IMAGE ID", "CREATED", "SIZE")]
    for record in root.images.images():
        digest = record.manifest_digest.removeprefix("sha256:")[:12]
        rows.append((record.name, digest, record.created, _size(record.size)))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.3g}{unit}" if unit != "B" else f"{size}B"
        value /= 1000
    return f"{size}B"


def run_inspect(args: argparse.Namespace) -> int:
    root = _root(args)
    out = []
    for name in args.names:
        manifest = root.images.resolve(name)
        out.append({
            "Name": name,
            "Digest": manifest.digest,
            "Manifest": root.images.manifest(manifest).to_json(),
            "Config": root.images.config(manifest).to_json(),
        })
    print(json.dumps(out, indent=2))
    return 0


def run_history(args: argparse.Namespace) -> int:
    root = _root(args)
    config = root.images.config(root.images.resolve(args.name))
    print("CREATED              CREATED BY                                          LAYER")
    for entry in reversed(config.history):
        text = entry.created_by.replace("\n", " ")
        if len(text) > 50 and not args.no_trunc:
            text = text[:47] + "..."
        layer = "-" if entry.empty_layer else "yes"
        print(f"{entry.created[:19]:<20} {text:<51} {layer}")
    return 0


def run_tag(args: argparse.Namespace) -> int:
    root = _root(args)
    root.images.tag(args.target, root.images.resolve(args.source))
    return 0


def run_rmi(args: argparse.Namespace) -> int:
    root = _root(args)
    for name in args.names:
        for removed in root.images.remove(name):
            print(f"Untagged: {removed}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from builder.image.archive import import_rootfs

    root = _root(args)
    manifest = import_rootfs(Path(args.source), root.images, root.blobs, name=args.tag)
    _unpack_for_builds(root, manifest)
    print(manifest.digest)
    return 0


def _unpack_for_builds(root: Root, manifest: oci.Descriptor) -> None:
    """Extract an image's layers as snapshots now, as buildah and podman do when an image
    arrives, so the first build on it need not. Best effort: a layer that cannot be
    extracted here is left to the build, which extracts it (and reports a failure) itself."""
    import functools

    from builder.errors import PybuildError
    from builder.snapshot.store import SnapshotStore

    snapshots = SnapshotStore(root.path)
    try:
        diff_ids = root.images.config(root.images.manifest(manifest).config).diff_ids
        for diff_id in diff_ids:
            if not root.blobs.has(diff_id):
                return  # a layer kept compressed (a foreign archive): the build unpacks it
            snapshots.ensure_from_tar(
                diff_id.removeprefix("sha256:"),
                functools.partial(root.blobs.open, diff_id, verify=True),
            )
    except (PybuildError, OSError):
        return


def run_load(args: argparse.Namespace) -> int:
    from builder.errors import UsageError
    from builder.image.archive import load_archive

    source = args.input or args.archive
    if not source:
        raise UsageError("load: name the archive (pybuild load FILE, or -i FILE)")
    root = _root(args)
    for name, manifest in load_archive(Path(source), root.images, root.blobs):
        _unpack_for_builds(root, manifest)
        print(f"Loaded image: {name or manifest.digest}")
    return 0


def _registry_options(args: argparse.Namespace) -> RegistryOptions:
    from builder.registry import RegistryOptions

    return RegistryOptions(insecure_registries=tuple(args.insecure_registry))


def run_pull(args: argparse.Namespace) -> int:
    from builder.image import oci
    from builder.registry import pull

    root = _root(args)
    platform = None
    if args.platform:
        parts = args.platform.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            from builder.errors import UsageError

            raise UsageError(f"--platform {args.platform!r}: expected OS/ARCH[/VARIANT]")
        platform = oci.Platform(architecture=parts[1], os=parts[0],
                                variant=parts[2] if len(parts) == 3 else "")
    progress = _transfer_progress(args)
    try:
        manifest = pull(args.name, root.images, root.blobs, platform=platform,
                        options=_registry_options(args), progress=progress)
    finally:
        progress.close()
    _unpack_for_builds(root, manifest)
    print(manifest.digest)
    return 0


def run_push(args: argparse.Namespace) -> int:
    from builder.registry import push

    root = _root(args)
    progress = _transfer_progress(args)
    try:
        pushed = push(root.images, root.blobs, args.name, args.destination or None,
                      options=_registry_options(args), progress=progress)
    finally:
        progress.close()
    print(f"digest: {pushed.digest} size: {pushed.size}")
    return 0


def run_imagetools(args: argparse.Namespace) -> int:
    """imagetools create: an index over SOURCEs, put under each -t (or printed)."""
    from builder.registry.imagetools import create_index

    created = create_index(args.sources, args.tag, options=_registry_options(args),
                           dry_run=args.dry_run)
    if args.dry_run:
        print(json.dumps(json.loads(created.data), indent=2))
        return 0
    for target in created.targets:
        print(f"{target}: {created.descriptor.digest}")
    return 0


def run_login(args: argparse.Namespace) -> int:
    import getpass

    from builder.registry import Credentials, save_credentials

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
    save_credentials(args.registry, Credentials(args.username, password))
    print("Login Succeeded")
    return 0


def run_logout(args: argparse.Namespace) -> int:
    from builder.registry import remove_credentials

    if remove_credentials(args.registry):
        print(f"Removing login credentials for {args.registry}")
    else:
        print(f"Not logged in to {args.registry}")
    return 0


def run_save(args: argparse.Namespace) -> int:
    from builder.errors import UsageError
    from builder.export.save import save

    dest = args.output or "-"
    if dest == "-" and sys.stdout.isatty():
        raise UsageError("save: refusing to write an archive to a terminal; use -o FILE")
    root = _root(args)
    save(root.images, root.blobs, args.names, dest=dest, format=args.format)
    return 0


def run_builds(args: argparse.Namespace) -> int:
    """pybuild builds [show ID]: the build records of this root."""
    import dataclasses
    import datetime

    from builder.errors import UsageError
    from cache.records import BuildRecords

    root = _root(args)
    records = BuildRecords(root.path / "cache.db")
    if args.action in ("diff", "compare"):
        return _two_builds(records, args)
    if args.action == "logs":
        return _build_logs(root.path, records, args)
    if args.action == "show":
        if not args.build_id:
            raise UsageError("builds show: name a build id (see pybuild builds)")
        record = records.get(args.build_id)
        if record is None:
            raise UsageError(f"builds show {args.build_id}: no such build (or the prefix is "
                             "ambiguous)")
        if args.format == "json":
            print(json.dumps(dataclasses.asdict(record), indent=2))
            return 0
        print(f"build {record.id}  {record.dockerfile}  target={record.target or '-'}  "
              f"{record.outcome}  {record.digest}")
        for number, step in enumerate(record.step_records, start=1):
            # An imported hit says where from: "CACHED (import:host/repo:cache)".
            state = _state(step.hit)
            if step.hit == 1 and step.source.startswith("import:"):
                state = f"{state} ({step.source})"
            print(f"#{number:<3} {state:<7} {step.seconds:7.2f}s  {step.bytes:>10}  "
                  f"line {step.line:<4} [{step.stage}] {step.instruction.splitlines()[0][:80]}")
        from cache.logs import read_index

        logged = read_index(root.path, record.id)
        if logged:
            cut = [str(position) for position, info in sorted(logged.items()) if info.cut]
            print(f"output of steps {', '.join(map(str, sorted(logged)))}: "
                  f"pybuild builds logs {record.id} [STEP]"
                  + (f" (cut in the middle: steps {', '.join(cut)})" if cut else ""))
        return 0
    rows = records.recent(args.last)
    if args.format == "json":
        print(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
        return 0
    print(f"{'ID':<13}{'STARTED':<21}{'DOCKERFILE':<24}{'TARGET':<10}{'STEPS':>6}{'HITS':>6}"
          f"{'HIT RATE':>10}{'TIME':>9}  OUTCOME")
    for row in rows:
        started = datetime.datetime.fromtimestamp(row.started).strftime("%Y-%m-%d %H:%M:%S")
        keyed = row.cached + row.ran
        print(f"{row.id:<13}{started:<21}{row.dockerfile[-23:]:<24}{(row.target or '-'):<10}"
              f"{row.steps:>6}{row.cached:>6}{f'{row.cached}/{keyed}':>10}{row.seconds:>8.2f}s"
              f"  {row.outcome[:40]}")
    return 0


def _two_builds(records: BuildRecords, args: argparse.Namespace) -> int:
    """builds diff|compare ID1 ID2."""
    from builder.errors import UsageError
    from builder.explain import explain_build

    if not (args.build_id and args.other_id):
        raise UsageError(f"builds {args.action}: name two build ids")
    first, second = (_find_build(records, given, args.action)
                     for given in (args.build_id, args.other_id))
    if args.action == "diff":
        differences = explain_build(second, first)
        if args.format == "json":
            print(json.dumps([{"step": n, "instruction": t, "reasons": r}
                              for n, t, r in differences], indent=2))
            return 0
        if not differences:
            print(f"builds {first.id} and {second.id} have the same cache keys")
        for number, text, reasons in differences:
            print(f"#{number} {text}")
            for reason in reasons:
                print(f"    {reason}")
        return 0
    rows: list[dict[str, Any]] = []
    for number, step in enumerate(second.step_records, start=1):
        old = first.step_records[number - 1] if number <= len(first.step_records) else None
        rows.append({
            "step": number,
            "instruction": step.instruction.splitlines()[0],
            "first": _state(old.hit) if old else "",
            "second": _state(step.hit),
            "first_seconds": round(old.seconds, 3) if old else 0.0,
            "second_seconds": round(step.seconds, 3),
        })
    totals: dict[str, dict[str, Any]] = {
        build.id: {"steps": build.steps, "hits": build.cached, "keyed": build.cached + build.ran,
                   "hit_rate": round(build.hit_rate, 4), "seconds": round(build.seconds, 3)}
        for build in (first, second)
    }
    saved = sum(max(r["first_seconds"] - r["second_seconds"], 0.0) for r in rows
                if r["second"] == "CACHED")
    if args.format == "json":
        print(json.dumps({"steps": rows, "totals": totals,
                          "seconds_saved_by_cache": round(saved, 3)}, indent=2))
        return 0
    print(f"{'#':<4}{first.id:<14}{second.id:<14}{'TIME 1':>9}{'TIME 2':>9}  INSTRUCTION")
    for row in rows:
        print(f"{row['step']:<4}{row['first']:<14}{row['second']:<14}"
              f"{row['first_seconds']:>8.2f}s{row['second_seconds']:>8.2f}s"
              f"  {row['instruction'][:60]}")
    for build in (first, second):
        total = totals[build.id]
        print(f"{build.id}: {total['steps']} steps, {total['hits']}/{total['keyed']} hits "
              f"({100 * total['hit_rate']:.0f}%), {total['seconds']:.2f}s")
    print(f"time saved by the cache in the second build: {saved:.2f}s")
    return 0


def _find_build(records: BuildRecords, given: str, action: str) -> BuildRecord:
    """A build by id prefix or, for compare, by a --metadata-file another run wrote."""
    from builder.errors import UsageError
    from builder.metadata import record_from_metadata

    path = Path(given)
    if action == "compare" and ("/" in given or given.endswith(".json") or path.is_file()):
        return record_from_metadata(path)
    record = records.get(given)
    if record is None:
        raise UsageError(f"builds {action}: no such build {given} (or the prefix is ambiguous)")
    return record


def _build_logs(root: Path, records: BuildRecords, args: argparse.Namespace) -> int:
    """builds logs ID [STEP]: the full output of a build's RUN steps."""
    from builder.errors import UsageError
    from cache.logs import log_path, read_index

    if not args.build_id:
        raise UsageError("builds logs: name a build id (see pybuild builds)")
    record = _find_build(records, args.build_id, "logs")
    kept = read_index(root, record.id)
    if args.other_id is not None:
        try:
            position = int(args.other_id)
        except ValueError:
            raise UsageError(f"builds logs: STEP must be a step number, not {args.other_id!r}"
                             ) from None
        if not 1 <= position <= len(record.step_records):
            raise UsageError(f"builds logs: build {record.id} has steps 1 to "
                             f"{len(record.step_records)}")
        if position not in kept:
            print(f"build {record.id} step {position} wrote no output", file=sys.stderr)
            return 0
        _copy_to_stdout(log_path(root, record.id, position))
        return 0
    if not kept:
        print(f"build {record.id} kept no step output", file=sys.stderr)
    for position, info in sorted(kept.items()):
        step = record.step_records[position - 1]
        cut = f", {info.cut} bytes cut at byte {info.cut_at}" if info.cut else ""
        print(f"==> step {position} [{step.stage}] line {step.line}: "
              f"{step.instruction.splitlines()[0][:80]} ({info.written} bytes{cut})", flush=True)
        _copy_to_stdout(log_path(root, record.id, position))
    return 0


def _copy_to_stdout(path: Path) -> None:
    import shutil

    from builder.errors import CacheError

    try:
        with path.open("rb") as log:
            shutil.copyfileobj(log, sys.stdout.buffer)
    except OSError as err:
        raise CacheError(f"reading {path}: {err}") from err
    sys.stdout.buffer.flush()


def _state(hit: int) -> str:
    return {1: "CACHED", 0: "RUN", -1: "-"}[hit]
