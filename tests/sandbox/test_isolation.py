"""What a step sees: identity, environment, hostname, processes, /dev, /proc, /sys, capabilities."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.errors import SandboxError
from builder.sandbox import RunSpec, UserSpec
from builder.sandbox.credentials import DEFAULT_CAPABILITIES, capability_mask
from builder.sandbox.mounts import MASKED_PATHS
from tests.sandbox.conftest import execute, sh

pytestmark = pytest.mark.root

DOCKER_CAPABILITIES = f"{capability_mask(DEFAULT_CAPABILITIES):016x}"


def test_docker_default_capabilities_are_the_known_mask() -> None:
    assert DOCKER_CAPABILITIES == "00000000a80425fb"


def test_identity_is_root_without_groups_by_default(rootfs: Path) -> None:
    result = sh(rootfs, "id -u; id -g; id -G")
    assert (result.code, result.lines) == (0, ["0", "0", "0"])


def test_identity_is_the_given_user_and_groups(rootfs: Path) -> None:
    result = sh(rootfs, "id -u; id -g; id -G", user=UserSpec(1000, 1001, (50, 10)))
    assert result.lines == ["1000", "1001", "1001 10 50"]  # the kernel sorts them


def test_working_directory_is_created_and_owned_by_the_user(rootfs: Path) -> None:
    result = sh(rootfs, "pwd; stat -c %u:%g /srv/app /srv/app/sub; touch mine",
                cwd="/srv/app/sub", user=UserSpec(1000, 1000))
    assert result.code == 0, result.output
    assert result.lines == ["/srv/app/sub", "1000:1000", "1000:1000"]
    assert (rootfs / "srv/app/sub/mine").stat().st_uid == 1000


def test_existing_working_directory_keeps_its_owner(rootfs: Path) -> None:
    result = sh(rootfs, "pwd; stat -c %u /tmp", cwd="/tmp", user=UserSpec(1000, 1000))
    assert result.lines == ["/tmp", "0"]


def test_environment_is_exactly_the_spec(rootfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYBUILD_HOST_SECRET", "leak")
    spec = RunSpec(argv=("/bin/cat", "/proc/self/environ"), rootfs=rootfs,
                   env=("PATH=/bin", "A=1", "EMPTY=", "B=x=y"))
    result = execute(spec)
    assert result.output.split("\0") == ["PATH=/bin", "A=1", "EMPTY=", "B=x=y", ""]


def test_command_is_found_on_the_spec_path(rootfs: Path) -> None:
    result = execute(RunSpec(argv=("echo", "found"), rootfs=rootfs, env=("PATH=/nowhere:/bin",)))
    assert result.lines == ["found"]


def test_missing_command_is_a_sandbox_error(rootfs: Path) -> None:
    with pytest.raises(SandboxError, match='exec: "nope": executable file not found in'):
        execute(RunSpec(argv=("nope",), rootfs=rootfs, env=("PATH=/bin",)))
    with pytest.raises(SandboxError, match='exec: "/bin/nope": no such file or directory'):
        execute(RunSpec(argv=("/bin/nope",), rootfs=rootfs))


def test_hostname_is_buildkits_unless_given(rootfs: Path) -> None:
    assert sh(rootfs, "hostname").lines == ["buildkitsandbox"]
    assert sh(rootfs, "hostname", hostname="builder-1").lines == ["builder-1"]


def test_only_the_steps_processes_are_visible(rootfs: Path) -> None:
    script = "sleep 30 & ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; " \
             "echo; cat /proc/1/cmdline | tr '\\0' ' '; kill $!"
    result = sh(rootfs, script)
    pids = [int(pid) for pid in result.lines[0].split()]
    assert pids[0] == 1 and max(pids) < 20, result.output  # sh, sleep, ls, grep, sort, tr
    assert os.getpid() not in pids or os.getpid() < 20
    assert result.lines[1].startswith("/bin/sh -c sleep 30 &")


def test_dev_has_only_the_standard_devices(rootfs: Path) -> None:
    result = sh(rootfs, "ls /dev | tr '\\n' ' '; echo; stat -c '%n %t:%T %a' /dev/null "
                "/dev/zero /dev/full /dev/random /dev/urandom /dev/tty; head -c 3 /dev/zero "
                "| od -An -tx1; echo x > /dev/null && echo null-ok; readlink /dev/fd; readlink /dev/ptmx; "
                "mount | grep -E ' /dev(/pts|/shm|/mqueue)? ' | cut -d' ' -f1,3,5")
    assert result.code == 0, result.output
    assert result.lines[0].split() == ["fd", "full", "mqueue", "null", "ptmx", "pts", "random",
                                       "shm", "stderr", "stdin", "stdout", "tty", "urandom",
                                       "zero"]
    assert result.lines[1:7] == ["/dev/null 1:3 666", "/dev/zero 1:5 666", "/dev/full 1:7 666",
                                 "/dev/random 1:8 666", "/dev/urandom 1:9 666",
                                 "/dev/tty 5:0 666"]
    assert result.lines[7].split() == ["00", "00", "00"]
    assert result.lines[8:11] == ["null-ok", "/proc/self/fd", "pts/ptmx"]
    assert sorted(result.lines[11:]) == ["devpts /dev/pts devpts", "mqueue /dev/mqueue mqueue",
                                         "shm /dev/shm tmpfs", "tmpfs /dev tmpfs"]


def test_devpts_is_a_private_instance(rootfs: Path) -> None:
    result = sh(rootfs, "ls /dev/pts | tr '\\n' ' '; echo; mount | grep ' /dev/pts '")
    assert result.lines[0].split() == ["ptmx"]
    assert "ptmxmode=666" in result.lines[1]


def test_device_nodes_outside_dev_do_not_work(rootfs: Path) -> None:
    result = sh(rootfs, "mknod /tmp/null c 1 3 && echo made && cat /tmp/null")
    assert result.code != 0
    assert result.lines[0] == "made"
    assert "Permission denied" in result.output


def test_proc_sys_and_friends_are_read_only(rootfs: Path) -> None:
    result = sh(rootfs, "(echo 1 > /proc/sys/kernel/domainname) 2>/dev/null; echo $?; "
                "mount | grep -E ' /proc/(sys|bus|fs|irq|sysrq-trigger) ' | cut -d' ' -f3,6")
    assert result.lines[0] == "1"
    readonly = {line.split()[0] for line in result.lines[1:]}
    assert "/proc/sys" in readonly
    assert all(line.split()[1].startswith("(ro,") for line in result.lines[1:])


def test_kernel_files_are_masked(rootfs: Path) -> None:
    present = [path for path in MASKED_PATHS if os.path.lexists(path)]
    assert present, "the host shows none of the masked paths"
    script = "; ".join(f"echo {path} $(cat {path} 2>/dev/null | wc -c) $(ls -A {path} | wc -l)"
                       if Path(path).is_dir() else f"echo {path} $(cat {path} | wc -c)"
                       for path in present)
    result = sh(rootfs, script)
    for line in result.lines:
        _, *sizes = line.split()
        assert all(size == "0" for size in sizes), line


def test_sys_is_read_only(rootfs: Path) -> None:
    result = sh(rootfs, "mount | grep ' /sys '; touch /sys/x")
    assert "sysfs on /sys type sysfs (ro," in result.lines[0]
    assert result.code != 0


def test_capabilities_are_dockers_default_for_root(rootfs: Path) -> None:
    result = sh(rootfs, "grep -E '^(Cap|NoNewPrivs)' /proc/self/status")
    status = dict(line.split(":\t") for line in result.lines)
    assert status == {"CapInh": "0" * 16, "CapPrm": DOCKER_CAPABILITIES,
                      "CapEff": DOCKER_CAPABILITIES, "CapBnd": DOCKER_CAPABILITIES,
                      "CapAmb": "0" * 16, "NoNewPrivs": "1"}


def test_non_root_user_has_no_capabilities(rootfs: Path) -> None:
    result = sh(rootfs, "grep -E '^(Cap|NoNewPrivs)' /proc/self/status",
                user=UserSpec(1000, 1000))
    status = dict(line.split(":\t") for line in result.lines)
    assert status == {"CapInh": "0" * 16, "CapPrm": "0" * 16, "CapEff": "0" * 16,
                      "CapBnd": DOCKER_CAPABILITIES, "CapAmb": "0" * 16, "NoNewPrivs": "1"}


def test_root_in_the_step_cannot_mount(rootfs: Path) -> None:
    result = sh(rootfs, "mount -t tmpfs none /tmp")
    assert result.code != 0


def test_ipc_namespace_is_fresh(rootfs: Path) -> None:
    result = sh(rootfs, "cat /proc/sysvipc/shm | wc -l; ls -A /dev/shm | wc -l")
    assert result.lines == ["1", "0"]  # the header line only


def test_network_none_has_only_loopback_and_it_is_up(rootfs: Path) -> None:
    result = sh(rootfs, "ls /sys/class/net; ip -o link show lo | grep -c UP; "
                "ping -c 1 -W 2 127.0.0.1 >/dev/null && echo ping-ok", network="none")
    assert result.lines == ["lo", "1", "ping-ok"], result.output


def test_default_network_is_the_hosts(rootfs: Path) -> None:
    result = sh(rootfs, "ls /sys/class/net")
    assert sorted(result.lines) == sorted(os.listdir("/sys/class/net"))
