"""Mount options: from the strings of ``mounts[].options`` to mount(2) arguments.

Pure, no system calls. :func:`parse_options` reads the list left to right, as
mount(8) does (``["ro", "rw"]`` ends read-write), into a :class:`MountOptions`:

- ``flags``: ``MS_*`` bits for mount(2); ``cleared`` the ones the config turned off
  explicitly (``rw``, ``suid``...), which matter when a bind remount has to keep the
  flags the kernel locked;
- ``propagation``: ``MS_SHARED``/``MS_SLAVE``/... changes, each its own mount(2) call
  after the mount, in the order given (the kernel takes one type per call);
- ``attr_set``/``attr_clr``: ``MOUNT_ATTR_*`` bits of the recursive ``r*`` options
  (``rro``, ``rnosuid``...), applied with mount_setattr(2) and ``AT_RECURSIVE``;
- ``data``: what mount(8) calls filesystem-specific options, comma-joined into the
  fifth argument of mount(2).

config.md says unknown options SHOULD be passed as data. corral does so, with two
limits that turn a typo into an error of ``create`` instead of a silently ignored or
EINVAL mount: a bind mount has no data (the kernel ignores it), and the in-kernel
pseudo filesystems (tmpfs, proc, devpts, ...) accept a small known set of keys.
``tmpcopyup`` sets ``copy_up``: the tmpfs gets a copy of what its destination
directory held (:func:`corral.linux.rootfs.copy_up`); on any other type it is refused.

:func:`check_mounts` runs this over the whole config before anything is created.
"""

from __future__ import annotations

import os

from corral.errors import ConfigError, UnsupportedError
from corral.linux.syscalls import (
    MS_BIND,
    MS_DIRSYNC,
    MS_I_VERSION,
    MS_LAZYTIME,
    MS_MANDLOCK,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_NOSYMFOLLOW,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SILENT,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.spec.model import Spec

# <linux/mount.h>, for mount_setattr(2)
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70  # the access-time field: clear all of it to set one mode
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

# Filesystem-independent options of mount(8): name -> (flag, True to set / False to clear).
FLAG_OPTIONS: dict[str, tuple[int, bool]] = {
    "async": (MS_SYNCHRONOUS, False),
    "atime": (MS_NOATIME, False),
    "defaults": (0, True),
    "dev": (MS_NODEV, False),
    "diratime": (MS_NODIRATIME, False),
    "dirsync": (MS_DIRSYNC, True),
    "exec": (MS_NOEXEC, False),
    "iversion": (MS_I_VERSION, True),
    "lazytime": (MS_LAZYTIME, True),
    "loud": (MS_SILENT, False),
    "mand": (MS_MANDLOCK, True),
    "noatime": (MS_NOATIME, True),
    "nodev": (MS_NODEV, True),
    "nodiratime": (MS_NODIRATIME, True),
    "noexec": (MS_NOEXEC, True),
    "noiversion": (MS_I_VERSION, False),
    "nolazytime": (MS_LAZYTIME, False),
    "nomand": (MS_MANDLOCK, False),
    "norelatime": (MS_RELATIME, False),
    "nostrictatime": (MS_STRICTATIME, False),
    "nosuid": (MS_NOSUID, True),
    "nosymfollow": (MS_NOSYMFOLLOW, True),
    "relatime": (MS_RELATIME, True),
    "remount": (MS_REMOUNT, True),
    "ro": (MS_RDONLY, True),
    "rw": (MS_RDONLY, False),
    "silent": (MS_SILENT, True),
    "strictatime": (MS_STRICTATIME, True),
    "suid": (MS_NOSUID, False),
    "symfollow": (MS_NOSYMFOLLOW, False),
    "sync": (MS_SYNCHRONOUS, True),
    "bind": (MS_BIND, True),
    "rbind": (MS_BIND | MS_REC, True),
    "idmap": (0, True),
    "ridmap": (0, True),
}

PROPAGATION_OPTIONS = {
    "shared": MS_SHARED,
    "slave": MS_SLAVE,
    "private": MS_PRIVATE,
    "unbindable": MS_UNBINDABLE,
    "rshared": MS_SHARED | MS_REC,
    "rslave": MS_SLAVE | MS_REC,
    "rprivate": MS_PRIVATE | MS_REC,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

# Recursive options (mount_setattr(2), Linux 5.12): name -> (attr_set, attr_clr).
# An access-time mode is set by clearing the whole MOUNT_ATTR__ATIME field. "atime" and
# "nostrictatime" mean "the kernel default", which is relatime; "norelatime" means
# every access updates atime, which is strictatime.
_ATIME = MOUNT_ATTR__ATIME
RECURSIVE_OPTIONS: dict[str, tuple[int, int]] = {
    "rro": (MOUNT_ATTR_RDONLY, 0),
    "rrw": (0, MOUNT_ATTR_RDONLY),
    "rnosuid": (MOUNT_ATTR_NOSUID, 0),
    "rsuid": (0, MOUNT_ATTR_NOSUID),
    "rnodev": (MOUNT_ATTR_NODEV, 0),
    "rdev": (0, MOUNT_ATTR_NODEV),
    "rnoexec": (MOUNT_ATTR_NOEXEC, 0),
    "rexec": (0, MOUNT_ATTR_NOEXEC),
    "rnodiratime": (MOUNT_ATTR_NODIRATIME, 0),
    "rdiratime": (0, MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (MOUNT_ATTR_NOSYMFOLLOW, 0),
    "rsymfollow": (0, MOUNT_ATTR_NOSYMFOLLOW),
    "rnoatime": (MOUNT_ATTR_NOATIME, _ATIME),
    "rstrictatime": (MOUNT_ATTR_STRICTATIME, _ATIME),
    "rrelatime": (MOUNT_ATTR_RELATIME, _ATIME),
    "ratime": (MOUNT_ATTR_RELATIME, _ATIME),
    "rnostrictatime": (MOUNT_ATTR_RELATIME, _ATIME),
    "rnorelatime": (MOUNT_ATTR_STRICTATIME, _ATIME),
}

# Known to config.md but not applied yet: refused, never ignored.
UNSUPPORTED_OPTIONS: dict[str, str] = {}

# The data keys the in-kernel pseudo filesystems accept (Documentation/filesystems/*
# and the fs_parameter tables of Linux 6.x). Other types (overlay, ext4, nfs, fuse...)
# get their data passed through unchecked: the list would never be complete.
_FS_DATA_KEYS: dict[str, frozenset[str]] = {
    "tmpfs": frozenset(
        (
            "size", "nr_blocks", "nr_inodes", "mode", "uid", "gid", "huge", "mpol",
            "inode32", "inode64", "noswap", "quota", "usrquota", "grpquota",
            "usrquota_block_hardlimit", "usrquota_inode_hardlimit",
            "grpquota_block_hardlimit", "grpquota_inode_hardlimit",
            "casefold", "strict_encoding",
        )
    ),
    "devpts": frozenset(("uid", "gid", "mode", "ptmxmode", "newinstance", "max")),
    "proc": frozenset(("hidepid", "gid", "subset", "pidns")),
    "sysfs": frozenset(),
    "mqueue": frozenset(),
    "cgroup2": frozenset(
        (
            "nsdelegate", "favordynmods", "memory_localevents", "memory_recursiveprot",
            "memory_hugetlb_accounting", "pids_localevents",
        )
    ),
}  # fmt: skip
# Security-module options every filesystem takes (SELinux contexts from podman, Smack).
_LSM_DATA_KEYS = frozenset(
    (
        "context", "fscontext", "defcontext", "rootcontext", "seclabel",
        "smackfsdef", "smackfsroot", "smackfshat", "smackfsfloor", "smackfstransmute",
    )
)  # fmt: skip

_BIND_AND_REC = MS_BIND | MS_REC


class MountOptions:
    """What one mount's option list asks for; see the module docstring."""

    __slots__ = ("attr_clr", "attr_set", "cleared", "copy_up", "data", "flags", "propagation")

    def __init__(self) -> None:
        self.copy_up = False
        self.flags = 0
        self.cleared = 0
        self.propagation: list[int] = []
        self.attr_set = 0
        self.attr_clr = 0
        self.data = ""

    @property
    def bind(self) -> bool:
        return bool(self.flags & MS_BIND)

    @property
    def remount_flags(self) -> int:
        """The flags a bind mount needs a second, ``MS_REMOUNT`` call for (0: none)."""
        return self.flags & ~(_BIND_AND_REC | MS_REMOUNT)

    def __repr__(self) -> str:
        return (
            f"MountOptions(flags={self.flags:#x}, cleared={self.cleared:#x}, "
            f"propagation={[hex(p) for p in self.propagation]}, attr_set={self.attr_set:#x}, "
            f"attr_clr={self.attr_clr:#x}, data={self.data!r}, copy_up={self.copy_up})"
        )


def parse_options(options: list[str], path: str, fstype: str = "") -> MountOptions:
    """Translate ``options`` (found at JSON path ``path``) for a mount of ``fstype``.

    Raises :class:`ConfigError` naming ``path[j]`` for an option that cannot be
    applied, :class:`UnsupportedError` for one corral does not implement yet.
    """
    result = MountOptions()
    data: list[tuple[int, str]] = []
    for index, option in enumerate(options):
        flag = FLAG_OPTIONS.get(option)
        if flag is not None:
            bits, turn_on = flag
            if turn_on:
                result.flags |= bits
                result.cleared &= ~bits
            else:
                result.flags &= ~bits
                result.cleared |= bits
            continue
        propagation = PROPAGATION_OPTIONS.get(option)
        if propagation is not None:
            result.propagation.append(propagation)
            continue
        recursive = RECURSIVE_OPTIONS.get(option)
        if recursive is not None:
            attr_set, attr_clr = recursive
            # A later option wins: drop what an earlier one set in the same field.
            result.attr_set = (result.attr_set & ~(attr_set | attr_clr)) | attr_set
            result.attr_clr = (result.attr_clr & ~attr_set) | attr_clr
            continue
        where = f"{path}[{index}]"
        if option == "tmpcopyup":
            # config.md lists it for tmpfs only: there is nothing to copy "up" into a
            # bind mount or a pseudo filesystem.
            if fstype != "tmpfs":
                raise ConfigError(where, '"tmpcopyup" applies to tmpfs mounts only')
            result.copy_up = True
            continue
        if option in UNSUPPORTED_OPTIONS:
            raise UnsupportedError(where, f'"{option}": {UNSUPPORTED_OPTIONS[option]}')
        if not option:
            raise ConfigError(where, "empty mount option")
        data.append((index, option))
    if data:
        if result.bind:
            index, option = data[0]
            raise ConfigError(
                f"{path}[{index}]",
                f'unknown mount option "{option}" (a bind mount takes no filesystem options)',
            )
        known = _FS_DATA_KEYS.get(fstype)
        if known is not None:
            for index, option in data:
                key = option.partition("=")[0]
                if key not in known and key not in _LSM_DATA_KEYS:
                    raise ConfigError(
                        f"{path}[{index}]", f'unknown mount option "{option}" for {fstype}'
                    )
        result.data = ",".join(option for _, option in data)
    return result


def bind_source(source: str, bundle: str) -> str:
    """A bind mount's host path: config.md reads a relative one from the bundle."""
    return source if source.startswith("/") else os.path.join(bundle, source)


def check_mounts(spec: Spec, bundle: str) -> None:
    """Reject, before anything is created, the mounts that cannot be applied."""
    for index, mount in enumerate(spec.mounts):
        where = f"mounts[{index}]"
        options = parse_options(mount.options, f"{where}.options", mount.type)
        if options.bind:
            if not mount.source:
                raise ConfigError(f"{where}.source", "a bind mount needs a source")
            source = bind_source(mount.source, bundle)
            if not os.path.exists(source):
                raise ConfigError(f"{where}.source", f'bind source "{source}" does not exist')
        elif mount.type == "bind":
            # mount(2) knows no "bind" filesystem (ENODEV): say what is missing instead.
            raise ConfigError(f"{where}.options", 'type "bind" needs "bind" or "rbind" here')
        elif not mount.type and not options.flags & MS_REMOUNT:
            raise ConfigError(f"{where}.type", "required unless the mount is a bind or a remount")
