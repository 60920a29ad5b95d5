"""Per-layer progress of pulls and pushes: plain lines at start and end, against a live registry."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from builder.image.store import ImageStore
from builder.registry.client import RegistryOptions
from builder.registry.pull import pull
from builder.registry.push import push
from builder.transfer_progress import (
    PlainTransfers,
    RawJsonTransfers,
    Transfer,
    TransferProgress,
    TtyTransfers,
    format_size,
    make_transfer_progress,
    short_digest,
)
from tests.conftest import REPO
from tests.export.sample import put_layered_image
from tests.registry.conftest import LiveRegistry

_LINE = re.compile(r"^(pull|push) (sha256:[0-9a-f]{12}) (\d+(?:\.\d)? (?:B|kB|MB|GB|TB))(?: (.*))?$")


def _lines(text: str) -> list[tuple[str, str, str, str]]:
    """(action, short digest, size, tail) per line; every line must have that shape."""
    parsed = []
    for line in text.splitlines():
        match = _LINE.match(line)
        assert match is not None, f"not a transfer line: {line!r}"
        action, digest, size, tail = match.groups()
        parsed.append((action, digest, size, tail or ""))
    return parsed


def _options(tmp_path: Path) -> RegistryOptions:
    return RegistryOptions(config_path=tmp_path / "no-config.json")


class _Recording(TransferProgress):
    """Counts the bytes each transfer reports, and what ends them."""

    def __init__(self) -> None:
        self.moved: dict[str, int] = {}
        self.finished: list[str] = []
        self.skips: list[tuple[str, str]] = []

    def skipped(self, action: str, digest: str, total: int, reason: str) -> None:
        self.skips.append((digest, reason))

    def _advanced(self, transfer: Transfer, count: int) -> None:
        self.moved[transfer.digest] = self.moved.get(transfer.digest, 0) + count

    def _finished(self, transfer: Transfer, seconds: float) -> None:
        self.finished.append(transfer.digest)


@pytest.mark.root
def test_push_then_pull_name_each_layer_once_on_completion(
    registry: LiveRegistry, tmp_path: Path
) -> None:
    store = ImageStore(tmp_path / "store")
    put_layered_image(store, name="layers:1")
    remote = f"{registry.host}/progress/layers:1"
    pushed_out = io.StringIO()
    push(store, store.blobs, "layers:1", remote, options=_options(tmp_path),
         progress=PlainTransfers(pushed_out))
    pushed = _lines(pushed_out.getvalue())
    done = [digest for action, digest, _, tail in pushed if tail.startswith("done ")]
    assert len(done) == 3 and len(set(done)) == 3
    assert all(action == "push" for action, *_ in pushed)
    # One start line and one end line per layer: nothing per chunk.
    assert len(pushed) == 6
    for _, digest, size, tail in pushed:
        assert tail == "" or re.fullmatch(r"done \d+\.\ds", tail)
        assert [(d, s) for _, d, s, _ in pushed].count((digest, size)) == 2

    fresh = ImageStore(tmp_path / "fresh")
    pulled_out = io.StringIO()
    pull(remote, fresh, fresh.blobs, options=_options(tmp_path), progress=PlainTransfers(pulled_out))
    pulled = _lines(pulled_out.getvalue())
    pulled_done = [digest for action, digest, _, tail in pulled if tail.startswith("done ")]
    assert sorted(pulled_done) == sorted(done)  # the registry's (gzip) digests, once each
    assert len(pulled) == 6

    # Again: nothing moves, and each layer still gets its one end line, with the reason.
    again_push = io.StringIO()
    push(store, store.blobs, "layers:1", remote, options=_options(tmp_path),
         progress=PlainTransfers(again_push))
    assert sorted((d, t) for _, d, _, t in _lines(again_push.getvalue())) == sorted(
        (d, "exists") for d in done
    )
    again_pull = io.StringIO()
    pull(remote, fresh, fresh.blobs, options=_options(tmp_path), progress=PlainTransfers(again_pull))
    assert sorted((d, t) for _, d, _, t in _lines(again_pull.getvalue())) == sorted(
        (d, "already present") for d in done
    )


@pytest.mark.root
def test_chunked_push_reports_every_byte_once(registry: LiveRegistry, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    manifest = put_layered_image(store, name="chunks:1")
    recording = _Recording()
    pushed = push(store, store.blobs, "chunks:1", f"{registry.host}/progress/chunks:1",
                  options=_options(tmp_path), chunk_size=700, progress=recording)
    assert pushed.digest.startswith("sha256:")
    assert len(recording.finished) == 3
    layer_sizes = {
        entry["digest"]: entry["size"]
        for entry in json.loads(
            subprocess.run(
                ["skopeo", "--insecure-policy", "inspect", "--tls-verify=false", "--raw",
                 f"docker://{registry.host}/progress/chunks:1"],
                capture_output=True, text=True, check=True,
            ).stdout
        )["layers"]
    }
    assert recording.moved == layer_sizes
    assert len(store.manifest(manifest).layers) == len(layer_sizes)


def _pybuild(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder", *args], capture_output=True, text=True,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300, check=False,
    )


@pytest.mark.root
def test_cli_pull_and_push_show_plain_lines_off_a_terminal(
    registry: LiveRegistry, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    put_layered_image(ImageStore(first), name="cli:1")
    remote = f"{registry.host}/progress/cli:1"
    pushed = _pybuild("push", "--root", str(first), "--insecure-registry", registry.host,
                      "cli:1", remote)
    assert pushed.returncode == 0, pushed.stderr
    push_done = [d for a, d, _, t in _lines(pushed.stderr) if a == "push" and t.startswith("done")]
    assert len(push_done) == 3 == len(set(push_done))
    pulled = _pybuild("pull", "--root", str(tmp_path / "second"), "--progress", "plain", remote)
    assert pulled.returncode == 0, pulled.stderr
    pull_done = [d for a, d, _, t in _lines(pulled.stderr) if a == "pull" and t.startswith("done")]
    assert sorted(pull_done) == sorted(push_done)
    quiet = _pybuild("pull", "--root", str(tmp_path / "third"), "--progress", "quiet", remote)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout.startswith("sha256:")


def test_plain_lines_name_the_layer_its_size_and_the_end() -> None:
    out = io.StringIO()
    view = PlainTransfers(out)
    digest = "sha256:" + "ab" * 32
    with view.begin("pull", digest, 12_345_678) as transfer:
        for _ in range(100):
            transfer.advance(123_456)
        transfer.finish()
    view.skipped("push", digest, 999, "exists")
    lines = out.getvalue().splitlines()
    assert lines[0] == "pull sha256:abababababab 12.3 MB"
    assert re.fullmatch(r"pull sha256:abababababab 12\.3 MB done \d+\.\ds", lines[1])
    assert lines[2] == "push sha256:abababababab 999 B exists"
    assert len(lines) == 3


def test_a_failed_transfer_prints_no_end_line() -> None:
    out = io.StringIO()
    view = PlainTransfers(out)
    with pytest.raises(OSError), view.begin("pull", "sha256:" + "0" * 64, 10) as transfer:
        transfer.advance(5)
        raise OSError("connection reset")
    assert out.getvalue().splitlines() == ["pull sha256:000000000000 10 B"]


def test_rawjson_events() -> None:
    out = io.StringIO()
    view = RawJsonTransfers(out)
    with view.begin("push", "sha256:" + "1" * 64, 2048) as transfer:
        transfer.advance(2048)
        transfer.finish()
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [event["status"] for event in events] == ["started", "done"]
    assert {event["event"] for event in events} == {"transfer"}
    assert all(event["size"] == 2048 and event["action"] == "push" for event in events)


def test_tty_draws_bars_and_keeps_the_end_lines() -> None:
    out = io.StringIO()
    view = TtyTransfers(out)
    digest = "sha256:" + "c" * 64
    with view.begin("pull", digest, 4_000_000) as transfer:
        transfer.advance(2_000_000)
        transfer.advance(2_000_000)
        transfer.finish()
    view.close()
    text = out.getvalue()
    assert "pull sha256:cccccccccccc" in text
    assert re.search(r"pull sha256:cccccccccccc 4\.0 MB done \d+\.\ds\n", text)


def test_modes() -> None:
    assert type(make_transfer_progress("plain", io.StringIO())) is PlainTransfers
    assert type(make_transfer_progress("quiet", io.StringIO())) is TransferProgress
    assert type(make_transfer_progress("rawjson", io.StringIO())) is RawJsonTransfers
    assert type(make_transfer_progress("auto", io.StringIO())) is PlainTransfers  # not a tty


def test_sizes_and_digests() -> None:
    assert format_size(0) == "0 B"
    assert format_size(999) == "999 B"
    assert format_size(1000) == "1.0 kB"
    assert format_size(12_345_678) == "12.3 MB"
    assert format_size(999_960) == "1.0 MB"
    assert format_size(3_200_000_000) == "3.2 GB"
    assert short_digest("sha256:" + "0123456789abcdef" * 4) == "sha256:0123456789ab"


BUSYBOX = Path("/bin/busybox")


@pytest.mark.root
def test_build_shows_from_pull_and_push_progress(registry: LiveRegistry, tmp_path: Path) -> None:
    if not BUSYBOX.exists():
        pytest.skip("builds need busybox-static")
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "busybox").write_bytes(BUSYBOX.read_bytes())
    (rootfs / "bin" / "busybox").chmod(0o755)
    (rootfs / "bin" / "sh").symlink_to("busybox")
    first = tmp_path / "first"
    assert _pybuild("import", "--root", str(first), str(rootfs), "-t", "tiny").returncode == 0
    base = f"{registry.host}/progress/tiny:1"
    pushed = _pybuild("push", "--root", str(first), "--progress", "plain", "tiny", base)
    assert pushed.returncode == 0, pushed.stderr
    (base_layer,) = [d for a, d, _, t in _lines(pushed.stderr) if t.startswith("done")]
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {base}\nRUN echo built > /marker\n")
    target = f"{registry.host}/progress/on-top:1"
    built = _pybuild("build", "--root", str(tmp_path / "second"), "--progress", "plain",
                     "-t", target, "--push", str(context))
    assert built.returncode == 0, built.stderr
    transfers = [line for line in built.stderr.splitlines() if line.startswith(("pull ", "push "))]
    parsed = _lines("\n".join(transfers))
    pull_ends = [(digest, tail.split()[0]) for action, digest, _, tail in parsed
                 if action == "pull" and tail]
    push_ends = sorted((digest, tail.split()[0]) for action, digest, _, tail in parsed
                       if action == "push" and tail)
    # FROM pulled the base's one layer; --push sent it (another repository) and the new one:
    # compressed in another root, the base layer has the same digest as first pushed.
    assert pull_ends == [(base_layer, "done")]
    assert len(push_ends) == 2 and all(end == "done" for _, end in push_ends)
    assert base_layer in {digest for digest, _ in push_ends}
