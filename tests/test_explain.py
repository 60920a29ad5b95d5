"""Miss reasons from two sets of step inputs."""

from __future__ import annotations

from builder.explain import explain_miss


def _inputs(**changes: object) -> dict[str, object]:
    inputs: dict[str, object] = {
        "parent": "p1", "base": "sha256:b", "instruction": "COPY --from=build /a /a",
        "env": {"PATH": "h1"}, "args": {"V": "h2"}, "user": "", "workdir": "/",
        "shell": ["/bin/sh", "-c"], "source": "stage 0", "source_digest": "d1",
    }
    inputs.update(changes)
    return inputs


def test_a_copy_from_a_changed_stage_says_so() -> None:
    reasons = explain_miss(_inputs(source_digest="d2"), _inputs())
    assert reasons == ["what it copies from changed (stage 0: its result or content differs)"]


def test_changed_args_and_env_are_named_without_values() -> None:
    reasons = explain_miss(_inputs(args={"V": "h3"}, env={"PATH": "h1", "NEW": "h4"}),
                           _inputs())
    assert reasons == ["build arg changed: V", "env added: NEW"]


def test_a_parent_that_missed_is_the_last_resort() -> None:
    assert explain_miss(_inputs(parent="p2"), _inputs()) == [
        "an earlier step missed (its parent's key changed)"
    ]
    assert explain_miss(_inputs(), _inputs()) == [
        "its inputs match an earlier build, but that result is gone"
    ]
    assert explain_miss(_inputs(), None) == ["no earlier build ran this step"]


def test_context_file_changes_are_named_by_kind() -> None:
    now = _inputs(source="context", files={"a": ["x", 0o644, 0, 0], "b": ["y", 0o755, 0, 0],
                                           "c": ["z", 0o644, 1, 1]})
    before = _inputs(source="context", files={"a": ["X", 0o644, 0, 0], "b": ["y", 0o644, 0, 0],
                                              "c": ["z", 0o644, 0, 0], "d": ["w", 0o644, 0, 0]})
    assert explain_miss(now, before) == [
        "context files removed: d", "content changed: a", "mode changed: b", "owner changed: c",
    ]


def test_a_run_whose_mount_source_changed_says_so() -> None:
    now = _inputs(instruction="RUN --mount=from=build,target=/b make", source_digest="m2")
    before = _inputs(instruction="RUN --mount=from=build,target=/b make", source_digest="m1")
    del now["source"], before["source"]
    assert explain_miss(now, before) == ["what its --mount sources read changed"]
