"""Where buildah 1.28 and pybuild (following the Dockerfile reference and BuildKit) differ.

Each allowance names one exact difference (path or config key, field,
pybuild's value, buildah's value) in one case, and the quirk behind it.
Every quirk's title appears in docs/compatibility.md, which explains it.
Nothing here is a blanket ignore: a difference that is not listed fails
its case, and so does a listed one that stops happening.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.conformance.differences import Difference

__all__ = ["Allowance", "Quirk", "cases_without_directory", "for_case", "quirks_in_use"]


@dataclass(frozen=True, slots=True)
class Quirk:
    """One documented way buildah departs from the reference (title as in compatibility.md)."""

    title: str
    reason: str


@dataclass(frozen=True, slots=True)
class Allowance:
    """``difference`` is expected because of ``quirk`` (only on buildah's ``driver``, if set)."""

    difference: Difference
    quirk: Quirk
    driver: str | None = None


MOUNT_STUBS = Quirk(
    "RUN leaves its mount points in the image",
    "buildah creates /etc/hostname, /etc/hosts, /etc/resolv.conf and /run to mount over "
    "when the image lacks them and commits them; BuildKit removes the stubs it created "
    "(MountStubsCleaner), and so does pybuild",
)
LAZY_WORKDIR = Quirk(
    "WORKDIR is created lazily",
    "with --layers buildah creates the directory only at the next RUN/COPY/ADD, owned by "
    "the USER of that moment, and never when nothing follows; BuildKit creates it at "
    "WORKDIR time owned by the current USER",
)
SHELL_FORMS = Quirk(
    "SHELL does not apply to CMD and ENTRYPOINT",
    "buildah wraps shell-form CMD/ENTRYPOINT in /bin/sh -c whatever SHELL says; the "
    "reference applies SHELL to RUN, CMD and ENTRYPOINT",
)
EXPOSE_RAW = Quirk(
    "EXPOSE keeps ranges and upper-case protocols",
    "buildah stores 9000-9002/tcp and 5000/TCP as written; BuildKit parses each spec "
    "(nat.ParsePortSpec): ranges become one key per port, protocols are lower-cased",
)
ESCAPE_DIRECTIVE = Quirk(
    "`# escape=` changes only line continuation",
    "in buildah a backslash still escapes inside ENV/LABEL/COPY words after "
    "`# escape=``; in BuildKit the directive's character is the escape everywhere",
)
SET_ID_BITS = Quirk(
    "setuid and setgid bits are stripped from context files",
    "buildah (like the classic docker builder) drops S_ISUID/S_ISGID from files and "
    "directories COPY/ADD takes from the build context; BuildKit keeps the full mode",
)
ADD_CHOWN = Quirk(
    "ADD --chown leaves an archive's owners",
    "buildah applies --chown only to the directories extraction implies and keeps the "
    "owners written in the archive; BuildKit v0.23+ gives every extracted entry the "
    "--chown owner and creates implied parents as root",
)
CHMOD_DIRECTORIES = Quirk(
    "COPY --chmod leaves directories 0755",
    "buildah creates missing parents 0755 and does not apply --chmod to a copied "
    "directory; BuildKit v0.21+ (fsutil#228) gives both the --chmod mode",
)
VOLUME_CHANGES = Quirk(
    "RUN changes inside a VOLUME are discarded",
    "buildah, like the classic builder, throws away what a RUN writes below a declared "
    "volume and creates some volume mount points; BuildKit keeps the changes and creates "
    "nothing for VOLUME",
)
RAW_WORKDIR = Quirk(
    "WorkingDir is stored unnormalised",
    "buildah stores WORKDIR's text (/tmp/../opt/./x); BuildKit stores the cleaned path",
)
SCRATCH_WORKDIR = Quirk(
    "FROM scratch leaves WorkingDir empty",
    "BuildKit's empty image has WorkingDir / (and the default PATH); buildah leaves it "
    "unset",
)
SUPPLEMENTARY_GROUPS = Quirk(
    "RUN adds the primary group to the supplementary groups",
    "buildah puts the user's primary gid into a RUN's groups; runc, under BuildKit, "
    "takes them from /etc/group memberships only, and none when USER names a group",
)
COPY_ONTO_SYMLINK = Quirk(
    "COPY onto a symlink replaces the link",
    "when the destination file is an existing symlink buildah replaces the link; "
    "BuildKit resolves the whole destination path in the image (continuity's RootPath) "
    "and writes the file the link points to",
)
VFS_HARD_LINKS = Quirk(
    "on the vfs driver a hard-link group changes as one",
    "buildah's vfs storage has no copy-up: a chmod of one name of a hard-link group from "
    "a lower layer changes every name, and a new link to it is not linked in the image; "
    "on overlayfs (BuildKit's default snapshotter, pybuild, buildah's overlay driver) "
    "copy-up splits the changed name from its group",
)
WILDCARD_LINKS = Quirk(
    "hard links between a wildcard's matches are not kept",
    "buildah keeps hard links only inside one copied directory; BuildKit copies all "
    "matches of one source with one copier, which links files sharing an inode",
)


def _tree(path: str, field: str, pybuild: Any, buildah: Any, quirk: Quirk,
          driver: str | None = None) -> Allowance:
    return Allowance(Difference(path, field, pybuild, buildah), quirk, driver)


def _config(key: str, pybuild: Any, buildah: Any, quirk: Quirk) -> Allowance:
    return Allowance(Difference("config", key, pybuild, buildah), quirk)


def _owner(path: str, pybuild: tuple[int, int], buildah: tuple[int, int],
           quirk: Quirk) -> tuple[Allowance, ...]:
    return (_tree(path, "uid", pybuild[0], buildah[0], quirk),
            _tree(path, "gid", pybuild[1], buildah[1], quirk))


def _mount_stubs() -> tuple[Allowance, ...]:
    """The stubs buildah leaves in a case whose final image has a RUN layer."""
    return tuple(_tree(path, "kind", None, kind, MOUNT_STUBS) for path, kind in (
        ("/etc/hostname", "file"), ("/etc/hosts", "file"), ("/etc/resolv.conf", "file"),
        ("/run", "dir"),
    ))


def _groups(path: str, ours: str, extra: str) -> Allowance:
    """``id`` output: pybuild's, and buildah's with ``extra`` groups listed."""
    theirs = f"{ours} groups={extra}" if " groups=" not in ours else f"{ours},{extra}"
    return _tree(path, "content", f"{ours}\n".encode(), f"{theirs}\n".encode(),
                 SUPPLEMENTARY_GROUPS)


_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

ALLOWED: dict[str, tuple[Allowance, ...]] = {
    "add_archive_chown": (
        *_owner("/chowned-archive/dot-prefixed", (1000, 50), (0, 0), ADD_CHOWN),
        *_owner("/chowned-archive/top/script", (1000, 50), (0, 0), ADD_CHOWN),
        *_owner("/chowned-archive/top/soft", (1000, 50), (0, 0), ADD_CHOWN),
        *_owner("/chowned-archive/implied/parent/file", (1000, 50), (65534, 65534), ADD_CHOWN),
        *_owner("/chowned-archive/implied", (0, 0), (1000, 50), ADD_CHOWN),
        *_owner("/chowned-archive/implied/parent", (0, 0), (1000, 50), ADD_CHOWN),
    ),
    "arg_env_scoping": _mount_stubs(),
    "copy_chmod": (
        _tree("/modes", "mode", "0640", "0755", CHMOD_DIRECTORIES),
        _tree("/modes/tree", "mode", "0600", "0755", CHMOD_DIRECTORIES),
    ),
    "copy_overwrite_kinds": (
        *_mount_stubs(),
        _tree("/link", "kind", "symlink", "file", COPY_ONTO_SYMLINK),
        _tree("/link-target", "mode", "0644", "0700", COPY_ONTO_SYMLINK),
        _tree("/link-target", "content", b"plain\n", b"target\n", COPY_ONTO_SYMLINK),
    ),
    "copy_symlinks": _mount_stubs(),
    "env_expansion": _mount_stubs(),
    "escape_directive": (
        *_mount_stubs(),
        _config("Env", (_PATH, "WIN=C:\\dir\\sub"), (_PATH, "WIN=C:dirsub"), ESCAPE_DIRECTIVE),
        _tree("/C:\\not\\a\\windows\\path", "kind", "file", None, ESCAPE_DIRECTIVE),
        _tree("/C:notawindowspath", "kind", None, "file", ESCAPE_DIRECTIVE),
    ),
    "expose_ports": (
        _config("ExposedPorts",
                ("443/tcp", "5000/tcp", "53/udp", "80/tcp", "8080/tcp", "9000/tcp",
                 "9001/tcp", "9002/tcp"),
                ("443/tcp", "5000/TCP", "53/udp", "80/tcp", "8080/tcp", "9000-9002/tcp"),
                EXPOSE_RAW),
    ),
    "from_platform": _mount_stubs(),
    "from_scratch": (_config("WorkingDir", "/", None, SCRATCH_WORKDIR),),
    "hardlinks_copy": tuple(
        _tree(path, "links", ("/globbed/first", "/globbed/second", "/globbed/third"), None,
              WILDCARD_LINKS)
        for path in ("/globbed/first", "/globbed/second", "/globbed/third")
    ),
    "hardlinks_run": (
        *_mount_stubs(),
        _tree("/hl/a", "mode", "0644", "0600", VFS_HARD_LINKS, "vfs"),
        _tree("/hl/a", "links", ("/hl/a", "/hl/d"), ("/hl/a", "/hl/b", "/hl/c"),
              VFS_HARD_LINKS, "vfs"),
        _tree("/hl/b", "mode", "0644", "0600", VFS_HARD_LINKS, "vfs"),
        _tree("/hl/b", "links", None, ("/hl/a", "/hl/b", "/hl/c"), VFS_HARD_LINKS, "vfs"),
        _tree("/hl/c", "links", None, ("/hl/a", "/hl/b", "/hl/c"), VFS_HARD_LINKS, "vfs"),
        _tree("/hl/d", "links", ("/hl/a", "/hl/d"), None, VFS_HARD_LINKS, "vfs"),
    ),
    "multistage_target": _mount_stubs(),
    "odd_names": _mount_stubs(),
    "onbuild_triggers": _mount_stubs(),
    "run_environment": _mount_stubs(),
    "scratch_stage_copy": _mount_stubs(),
    "shell_entrypoint": (
        _config("Entrypoint", ("/bin/sh", "-xc", "exec echo from the entrypoint"),
                ("/bin/sh", "-c", "exec echo from the entrypoint"), SHELL_FORMS),
    ),
    "shell_instruction": (
        *_mount_stubs(),
        _config("Cmd", ("/bin/busybox", "sh", "-c", "echo the command"),
                ("/bin/sh", "-c", "echo the command"), SHELL_FORMS),
    ),
    "special_modes_copy": (
        _tree("/modes/setuid", "mode", "4755", "0755", SET_ID_BITS),
        _tree("/modes/setgid", "mode", "2755", "0755", SET_ID_BITS),
        _tree("/modes/both-ids", "mode", "6750", "0750", SET_ID_BITS),
        _tree("/modes/setgid-dir", "mode", "2750", "0750", SET_ID_BITS),
        _tree("/single-setuid", "mode", "4755", "0755", SET_ID_BITS),
    ),
    "special_modes_run": _mount_stubs(),
    "type_replacements": _mount_stubs(),
    "user_and_copy": _mount_stubs(),
    "user_forms": (
        *_mount_stubs(),
        _groups("/ids/by-name", "uid=1000(app) gid=1000(app) groups=50(staff)", "1000(app)"),
        _groups("/ids/by-number", "uid=1000(app) gid=1000(app) groups=50(staff)",
                "1000(app)"),
        _groups("/ids/name-and-group", "uid=1000(app) gid=50(staff)", "50(staff)"),
        _groups("/ids/numbers", "uid=1000(app) gid=50(staff)", "50(staff)"),
        _groups("/ids/unknown-uid", "uid=4242 gid=0(root)", "0(root)"),
        _groups("/ids/from-arg", "uid=65534(nobody) gid=65534(nogroup)", "65534(nogroup)"),
    ),
    "volumes": (
        *_mount_stubs(),
        _tree("/data/after", "kind", "file", None, VOLUME_CHANGES),
        _tree("/cache", "kind", None, "dir", VOLUME_CHANGES),
        _tree("/logs", "kind", None, "dir", VOLUME_CHANGES),
    ),
    "whiteout_directories": _mount_stubs(),
    "whiteout_files": _mount_stubs(),
    "workdir_forms": (
        *_mount_stubs(),
        _config("WorkingDir", "/never/used", "/tmp/../never/./used", RAW_WORKDIR),
        _tree("/never", "kind", "dir", None, LAZY_WORKDIR),
        _tree("/never/used", "kind", "dir", None, LAZY_WORKDIR),
    ),
    "workdir_owner": (
        *_mount_stubs(),
        *_owner("/srv/app-owned", (1000, 1000), (0, 0), LAZY_WORKDIR),
        _groups("/srv/app-owned/numbers/id.txt", "uid=1000(app) gid=50(staff)", "50(staff)"),
    ),
}


def for_case(name: str, driver: str) -> tuple[Allowance, ...]:
    """The differences case ``name`` is known to show on buildah's storage ``driver``."""
    return tuple(allowance for allowance in ALLOWED.get(name, ())
                 if allowance.driver in (None, driver))


def quirks_in_use() -> list[Quirk]:
    return sorted({allowance.quirk for allowances in ALLOWED.values()
                   for allowance in allowances}, key=lambda quirk: quirk.title)


def cases_without_directory(names: list[str]) -> list[str]:
    """Allow-list entries naming a case that does not exist."""
    return sorted(set(ALLOWED) - set(names))
