"""PID 1 of the step: builds the step's view of the system, then becomes the command.

Order matters: mounts are made while the host's file system is still
visible (bind sources, /proc/self/fd), the root is switched, the kernel's
files are protected, and privileges go last, right before execve. Any
failure is reported on the status pipe and ends the process with 127; the
builder raises it as a SandboxError.
"""

from __future__ import annotations

import errno
import os

from builder.sandbox import credentials, mounts, root, syscalls
from builder.sandbox.init import describe, report

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

# Used only to find the command when the step's env has no PATH; never added
# to the environment.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def start(request: dict[str, Any]) -> NoReturn:
    status_fd: int = request["status_fd"]
    try:
        _prepare(request)
        _execute(request["argv"], request["env"])
    except OSError as err:
        report(status_fd, "error", describe(err))
    except BaseException as err:  # noqa: BLE001 - the builder must hear of anything
        report(status_fd, "error", f"sandbox setup failed: {type(err).__name__}: {err}")
    os._exit(127)


def _prepare(request: dict[str, Any]) -> None:
    # Dying with init, should init be killed outright. (Our parent is outside
    # the namespace, so getppid() is 0 either way and cannot tell whether it
    # died before this line; init's owner SIGKILLs it only after a grace.)
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, syscalls.SIGKILL)
    os.setsid()  # no controlling terminal: the builder's tty is not the step's
    os.umask(0)
    rootfs: str = request["rootfs"]
    mounts.mount_filesystems(rootfs, request)
    pivoted = root.enter(rootfs)
    privileged: bool = request.get("privileged", False)
    if not privileged:  # RUN --security=insecure sees /proc and /sys unmasked
        mounts.protect_kernel_files()
    syscalls.sethostname(request["hostname"])
    if request["network"] == "none":
        syscalls.interface_up("lo")
    uid, gid = request["uid"], request["gid"]
    _enter_workdir(request["cwd"], uid, gid)
    os.dup2(request["stdin_fd"], 0)
    os.close(request["stdin_fd"])
    syscalls.reset_signals()
    os.umask(0o022)
    # chroot fallback: without CAP_SYS_CHROOT a root process cannot chroot
    # its way back out to the host's root (see root.py).
    credentials.drop(uid=uid, gid=gid, groups=request["groups"], allow_chroot=pivoted,
                     privileged=privileged)
    # Changing credentials cleared the parent-death signal; set it again.
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, syscalls.SIGKILL)


def _enter_workdir(cwd: str, uid: int, gid: int) -> None:
    """chdir to cwd, creating missing directories owned by the step's user (as WORKDIR does).

    This runs after the root switch, so symlinks resolve inside the root.
    The chdir happens as root, like runc's first attempt: a user who cannot
    search a parent still starts there.
    """
    path = ""
    for name in cwd.split("/"):
        if not name or name == ".":
            continue
        path = f"{path}/{name}"
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            continue
        except OSError as err:
            raise OSError(err.errno, err.strerror, f"create working directory {cwd}") from err
        os.chown(path, uid, gid)
    try:
        os.chdir(cwd)
    except OSError as err:
        raise OSError(err.errno, err.strerror, f"chdir to working directory {cwd}") from err


def _execute(argv: list[str], env: list[str]) -> None:
    """execve the command, searching the step's PATH when argv[0] has no slash."""
    environment = dict(entry.split("=", 1) for entry in env)
    name = argv[0]
    if "/" in name:
        try:
            os.execve(name, argv, environment)
        except OSError as err:
            raise OSError(err.errno, err.strerror, f'exec: "{name}"') from err
    denied: OSError | None = None
    for directory in environment.get("PATH", DEFAULT_PATH).split(":"):
        try:
            os.execve(os.path.join(directory or ".", name), argv, environment)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EPERM, errno.ENOEXEC):
                raise OSError(err.errno, err.strerror, f'exec: "{name}"') from err
            denied = denied or err  # keep looking, as execvp does; report if nothing runs
    if denied is not None:
        raise OSError(denied.errno, denied.strerror, f'exec: "{name}"')
    raise OSError(errno.ENOENT, "executable file not found in $PATH", f'exec: "{name}"')
