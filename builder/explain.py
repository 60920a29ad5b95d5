"""Why did a step miss?  The inputs behind each cache key, and how two sets differ.

The solver records, for every keyed step, the inputs its key was made from:
the parent's key, the instruction, the environment and build arguments (by
name, values only as hashes: a secret passed as a build arg never appears),
user, working directory, shell, where a COPY reads from, and for a COPY from
the context each file's content digest, mode and owner.  Comparing two such
records names what changed, in words a CI log can show.
"""

from __future__ import annotations

import xxhash

from builder.plan.graph import (
    ContextSource,
    ImageSource,
    NamedContextSource,
    StageSource,
    Step,
)

__all__ = ["explain_build", "explain_miss", "step_inputs", "value_hash"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cache.records import BuildRecord


def value_hash(value: str) -> str:
    """A short hash of a value: enough to tell that it changed, never what it is."""
    return xxhash.xxh3_64_hexdigest(value.encode("utf-8", "surrogateescape"))


def step_inputs(
    step: Step,
    parent_key: str,
    base: str,
    files: dict[str, list[Any]] | None,
    *,
    source_digest: str = "",
) -> dict[str, Any]:
    """The explainable inputs of a keyed step (JSON-ready).

    ``source_digest`` is what a COPY/ADD reads, as keyed: for a stage or an
    image it is the only sign that the source changed.
    """
    before = step.before
    inputs: dict[str, Any] = {
        "parent": parent_key,
        "base": base,
        "instruction": step.instruction.original,
        "env": {name: value_hash(value) for name, value in before.env},
        "args": {name: value_hash(value) for name, value in step.key_args},
        "user": before.user,
        "workdir": before.effective_workdir(),
        "shell": list(before.effective_shell()),
    }
    if isinstance(step.source, ContextSource):
        inputs["source"] = "context"
    elif isinstance(step.source, StageSource):
        inputs["source"] = f"stage {step.source.stage}"
    elif isinstance(step.source, ImageSource):
        inputs["source"] = f"image {step.source.image.manifest_digest}"
    elif isinstance(step.source, NamedContextSource):
        inputs["source"] = f"build context {step.source.name}"
    if source_digest:
        inputs["source_digest"] = source_digest
    if files is not None:
        inputs["files"] = files
    return inputs


def explain_miss(now: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    """Reasons, most telling first, why a step with inputs ``now`` missed against ``before``."""
    if not before:
        return ["no earlier build ran this step"]
    reasons: list[str] = []
    if now.get("base") != before.get("base"):
        reasons.append(f"base image changed ({before.get('base')} -> {now.get('base')})")
    if now.get("instruction") != before.get("instruction"):
        reasons.append("instruction text changed")
    for field, label in (("args", "build arg"), ("env", "env")):
        old, new = before.get(field, {}), now.get(field, {})
        changed = sorted(name for name in new.keys() & old.keys() if new[name] != old[name])
        added = sorted(new.keys() - old.keys())
        removed = sorted(old.keys() - new.keys())
        if changed:
            reasons.append(f"{label} changed: {', '.join(changed)}")
        if added:
            reasons.append(f"{label} added: {', '.join(added)}")
        if removed:
            reasons.append(f"{label} removed: {', '.join(removed)}")
    for field in ("user", "workdir", "shell", "source"):
        if now.get(field) != before.get(field):
            reasons.append(f"{field} changed")
    file_reasons = _file_changes(now.get("files"), before.get("files"))
    reasons.extend(file_reasons)
    if (not file_reasons and now.get("source") == before.get("source")
            and now.get("source_digest") != before.get("source_digest")):
        if now.get("source") is None:  # a RUN whose --mount binds read a stage, image or context
            reasons.append("what its --mount sources read changed")
        else:
            reasons.append(f"what it copies from changed ({now.get('source')}: "
                           "its result or content differs)")
    if not reasons and now.get("parent") != before.get("parent"):
        reasons.append("an earlier step missed (its parent's key changed)")
    return reasons or ["its inputs match an earlier build, but that result is gone"]


def _file_changes(
    now: dict[str, list[Any]] | None, before: dict[str, list[Any]] | None
) -> list[str]:
    if now is None or before is None:
        return []
    reasons = []
    added = sorted(now.keys() - before.keys())
    removed = sorted(before.keys() - now.keys())
    content, mode, owner = [], [], []
    for path in sorted(now.keys() & before.keys()):
        (digest, new_mode, uid, gid), (old_digest, old_mode, old_uid, old_gid) = (
            now[path], before[path]
        )
        if digest != old_digest:
            content.append(path)
        if new_mode != old_mode:
            mode.append(path)
        if (uid, gid) != (old_uid, old_gid):
            owner.append(path)
    for label, paths in (("context files added", added), ("context files removed", removed),
                         ("content changed", content), ("mode changed", mode),
                         ("owner changed", owner)):
        if paths:
            shown = ", ".join(paths[:10]) + (f" (+{len(paths) - 10} more)" if len(paths) > 10
                                             else "")
            reasons.append(f"{label}: {shown}")
    return reasons


def explain_build(now: BuildRecord, before: BuildRecord | None) -> list[tuple[int, str, list[str]]]:
    """For each keyed step of ``now`` whose key differs from ``before``'s: (number, text, why).

    Steps are matched by position, which is what an edited Dockerfile keeps
    for the steps before the edit.
    """
    import json

    earlier = before.step_records if before is not None else ()
    found = []
    for number, step in enumerate(now.step_records, start=1):
        if not step.cache_key:
            continue
        old = earlier[number - 1] if number <= len(earlier) else None
        if old is not None and old.cache_key == step.cache_key:
            continue
        now_inputs = json.loads(step.inputs) if step.inputs else {}
        old_inputs = json.loads(old.inputs) if old is not None and old.inputs else None
        found.append((number, step.instruction.splitlines()[0], explain_miss(now_inputs,
                                                                             old_inputs)))
    return found
