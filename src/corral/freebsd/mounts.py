"""FreeBSD mounts: ``mounts`` as nmount(2) calls, made from the host into the jail's root.

A jail has no mount namespace: the runtime mounts every entry of ``mounts`` on the
host, on a path under the root filesystem, before the jail exists (jail(8) does its
``mount.devfs``/``mount.fstab`` the same way), and the jail sees what lies under its
``path``. As on Linux, planning and doing are apart:

:func:`plan_mounts` changes nothing (it only stats nullfs sources) and turns each entry
into a :class:`MountStep`: the FreeBSD file system, the host path, the nmount(2)
options as name/value pairs and the ``MNT_*`` flags. :func:`check_mounts` runs it
before anything is created. :func:`apply_mounts` makes the mounts in order, each
destination created inside the rootfs first (see below), and unmounts what it did if
one fails. :func:`unmount_all` undoes them for ``delete``, last first, going on past
errors.

Types (config.md leaves ``type`` to the platform; these are lsvfs(1) names):

- ``nullfs``: a host directory or a single file (nullfs(5) mounts files on FreeBSD
  13.3 and 14.0 onwards; older kernels refuse). ``source`` is read from the bundle when
  relative. Linux-style binds are taken too, as containerd's FreeBSD configs and runj
  write them: type ``bind`` (with or without options), or type ``none``/empty with a
  ``bind`` or ``rbind`` option, becomes nullfs. ``rbind`` gives the same nullfs as
  ``bind``: nullfs is not recursive, file systems mounted under the source stay hidden.
- ``devfs``: ``ruleset=N`` (0-65535) travels in the nmount options, as jail(8)'s
  ``mount.devfs`` passes ``-oruleset=N`` to mount(8): devfs applies it before the mount
  is visible, so there is no moment when the container sees every host device. Without
  the option corral uses ruleset 4 (``devfsrules_jail`` of /etc/defaults/devfs.rules,
  jail(8)'s default); ``ruleset=0`` asks for no ruleset at all.
- ``tmpfs`` (``size``, ``maxfilesize``, ``easize`` with k/m/g/t/p/e suffixes;
  ``mode`` in octal; ``uid``, ``gid``, ``inodes``; ``nonc``, ``nomtime``),
  ``fdescfs`` (``linrdlnk``, ``nodup``), ``procfs``, ``linprocfs``, ``linsysfs``.

Options for every type, read left to right (the last one wins): ``ro``/``rw``,
``noexec``/``exec``, ``nosuid``/``suid``, ``noatime``/``atime``/``strictatime``,
``nosymfollow``/``symfollow``, ``sync``/``async`` become ``MNT_*`` flags
(sys/mount.h). ``defaults``, ``dev``, ``nodev`` do nothing (FreeBSD has no device
nodes outside devfs, MNT_NODEV is gone), nor do ``private``/``rprivate`` (FreeBSD
mounts never propagate). The other propagation modes cannot be had and are refused;
anything else is an error naming ``mounts[i].options[j]``.

``freebsd.devices``: after the devfs mount on ``/dev``, each listed device is unhidden
with ``devfs -m <dev> rule apply path <p> unhide [mode <m>]`` (devfs(8)), its parent
directories first. ``rule apply`` acts on this mount only, where ``rule add`` would
change a ruleset every jail using it shares; the price is that it touches only nodes
that exist now, not ones a driver creates later.

Destinations are created inside the rootfs one component at a time with the ``*at``
calls (FreeBSD has no ``openat2``): each directory is opened ``O_NOFOLLOW`` from its
parent's fd, a missing one is made with ``mkdirat``, and a symlink met on the way is
read and followed *inside the rootfs*, as a chroot would (an absolute target starts
again at the rootfs, ``..`` stops there; 32 links at most, MAXSYMLINKS). What gets
mounted on is that resolved path, never the config's string joined to the rootfs, so
``/dev -> /`` in an image mounts under the rootfs and not on the host's ``/``.
nmount(2) takes a path, not an fd, so a link swapped in after the walk would still be
followed; at ``create`` nothing runs in the jail yet to do that. ``delete`` unmounts
a target only if it still resolves to itself (realpath), since by then the container
has had the chance to turn a parent directory into a link to the host.
"""

from __future__ import annotations

import errno
import os
import stat

from corral.errors import ConfigError, CreateError, UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    from corral.spec.model import Mount, Spec

    class MountSyscalls(Protocol):
        """The part of :class:`corral.freebsd.syscalls.FreeBSDSyscalls` used here."""

        def nmount(
            self, fstype: str, target: str, options: list[tuple[str, str | None]], flags: int = 0
        ) -> None: ...

        def unmount(self, path: str, flags: int = 0) -> None: ...


# <sys/mount.h> (FreeBSD 14): the user-settable flags, and MNT_FORCE for unmount(2).
MNT_RDONLY = 0x00000001
MNT_SYNCHRONOUS = 0x00000002
MNT_NOEXEC = 0x00000004
MNT_NOSUID = 0x00000008
MNT_ASYNC = 0x00000040
MNT_FORCE = 0x00080000
MNT_NOSYMFOLLOW = 0x00400000
MNT_NOATIME = 0x10000000

FS_TYPES = ("nullfs", "devfs", "tmpfs", "fdescfs", "procfs", "linprocfs", "linsysfs")
DEFAULT_DEVFS_RULESET = 4  # devfsrules_jail, /etc/defaults/devfs.rules; jail(8)'s default
MAX_DEVFS_RULESET = 65535  # devfs_vfsops.c refuses larger ones
DEVFS = "/sbin/devfs"
MAXSYMLINKS = 32  # <sys/param.h>

# Generic options: name -> (MNT_* bits to set, MNT_* bits to clear).
FLAG_OPTIONS: dict[str, tuple[int, int]] = {
    "ro": (MNT_RDONLY, 0),
    "rw": (0, MNT_RDONLY),
    "noexec": (MNT_NOEXEC, 0),
    "exec": (0, MNT_NOEXEC),
    "nosuid": (MNT_NOSUID, 0),
    "suid": (0, MNT_NOSUID),
    "noatime": (MNT_NOATIME, 0),
    "atime": (0, MNT_NOATIME),
    "strictatime": (0, MNT_NOATIME),  # FreeBSD updates atime strictly unless noatime
    "nosymfollow": (MNT_NOSYMFOLLOW, 0),
    "symfollow": (0, MNT_NOSYMFOLLOW),
    "sync": (MNT_SYNCHRONOUS, MNT_ASYNC),
    "async": (MNT_ASYNC, MNT_SYNCHRONOUS),
}
IGNORED_OPTIONS = frozenset(("defaults", "dev", "nodev", "private", "rprivate"))
BIND_OPTIONS = frozenset(("bind", "rbind"))
REFUSED_PROPAGATION = frozenset(
    ("shared", "rshared", "slave", "rslave", "unbindable", "runbindable")
)
# The flags that also go into the option list by name. vfs_mount.c's global option
# list has just these (plus rw), so every file system accepts them, and one that
# reads its options rather than mnt_flag still sees them; mount(8) sends names too.
_NAMED_FLAGS = ((MNT_RDONLY, "ro"), (MNT_NOSUID, "nosuid"), (MNT_NOEXEC, "noexec"))

# File-system options per type: name -> how its value is checked.
_SIZE, _OCTAL, _UINT, _FLAG, _RULESET = "size", "octal", "uint", "flag", "ruleset"
FS_OPTIONS: dict[str, dict[str, str]] = {
    "nullfs": {},
    "devfs": {"ruleset": _RULESET},
    "tmpfs": {
        "size": _SIZE,
        "maxfilesize": _SIZE,
        "easize": _SIZE,
        "mode": _OCTAL,
        "uid": _UINT,
        "gid": _UINT,
        "inodes": _UINT,
        "nonc": _FLAG,
        "nomtime": _FLAG,
    },
    "fdescfs": {"linrdlnk": _FLAG, "nodup": _FLAG},
    "procfs": {},
    "linprocfs": {},
    "linsysfs": {},
}
# Linux types a config written for Linux may carry, and what FreeBSD has instead.
_LINUX_TYPES = {
    "proc": "procfs, or linprocfs for Linux binaries",
    "sysfs": "linsysfs",
    "devpts": "devfs, which has the ptys",
    "mqueue": "mqueuefs, which corral does not mount",
    "cgroup": "nothing: use rctl annotations for limits",
    "cgroup2": "nothing: use rctl annotations for limits",
}
_SIZE_SUFFIXES = frozenset("kmgtpeKMGTPE")
_GLOB_CHARACTERS = frozenset("*?[\\")


class MountStep:
    """One planned mount.

    ``target`` is the host path ``rootfs + destination`` (lexical: :func:`apply_mounts`
    resolves it inside the rootfs); ``options`` the nmount(2) pairs after ``fstype``
    and ``fspath``; ``is_file`` says a nullfs source is a file, so the destination is
    an empty file; ``devices`` are ``(path, mode)`` to unhide after a devfs mount.
    """

    __slots__ = (
        "destination",
        "devices",
        "flags",
        "fstype",
        "index",
        "is_file",
        "options",
        "rootfs",
        "target",
    )

    def __init__(
        self,
        *,
        index: int,
        fstype: str,
        rootfs: str,
        destination: str,
        options: list[tuple[str, str | None]],
        flags: int,
        is_file: bool = False,
    ) -> None:
        self.index = index
        self.fstype = fstype
        self.rootfs = rootfs
        self.destination = destination
        self.target = rootfs.rstrip("/") + destination
        self.options = options
        self.flags = flags
        self.is_file = is_file
        self.devices: list[tuple[str, int | None]] = []

    def __repr__(self) -> str:
        return (
            f"MountStep(mounts[{self.index}]: {self.fstype} on {self.target}, "
            f"options={self.options!r}, flags={self.flags:#x}, is_file={self.is_file}, "
            f"devices={self.devices!r})"
        )


# -- planning (no system changes) -------------------------------------------------------


def plan_mounts(spec: Spec, rootfs: str, bundle: str) -> list[MountStep]:
    """The mounts of ``spec`` as steps on host paths under ``rootfs``.

    ``rootfs`` is read from ``bundle`` when relative. Raises :class:`ConfigError`
    naming the field for anything that cannot be mounted.
    """
    root = os.path.abspath(os.path.join(bundle, rootfs))
    steps = [plan_mount(index, mount, root, bundle) for index, mount in enumerate(spec.mounts)]
    devices = spec.freebsd.devices if spec.freebsd is not None else []
    if devices:
        dev_steps = [s for s in steps if s.fstype == "devfs" and s.destination == "/dev"]
        if not dev_steps:
            raise ConfigError("freebsd.devices", 'needs a devfs mount on "/dev" in mounts')
        for index, device in enumerate(devices):
            if _GLOB_CHARACTERS.intersection(device.path):
                # devfs(8) reads a rule's path as a glob: "*" would unhide every device.
                raise ConfigError(
                    f"freebsd.devices[{index}].path",
                    f'"{device.path}" is a pattern, not a device path',
                )
        # The last devfs on /dev is the one the container sees.
        dev_steps[-1].devices = [(device.path, device.mode) for device in devices]
    return steps


def check_mounts(spec: Spec, bundle: str) -> None:
    """Reject, before anything is created, the mounts :func:`plan_mounts` would."""
    rootfs = spec.root.path if spec.root is not None else "rootfs"
    plan_mounts(spec, rootfs, bundle)


def plan_mount(index: int, mount: Mount, rootfs: str, bundle: str) -> MountStep:
    """One entry of ``mounts`` (at ``mounts[index]``) as a :class:`MountStep`."""
    where = f"mounts[{index}]"
    if mount.destination == "/":
        raise ConfigError(f"{where}.destination", "cannot mount over the container's root")
    fstype = _fstype(mount, where)
    flags, options = parse_options(mount.options, f"{where}.options", fstype)
    is_file = False
    if fstype == "nullfs":
        source = _nullfs_source(mount, where, bundle)
        is_file = not os.path.isdir(source)
        options.insert(0, ("target", source))  # nullfs calls the lower path "target"
    else:
        options.insert(0, ("from", mount.source or fstype))  # as mount(8) always sends
        if fstype == "devfs" and not any(name == "ruleset" for name, _ in options):
            options.append(("ruleset", str(DEFAULT_DEVFS_RULESET)))
    return MountStep(
        index=index,
        fstype=fstype,
        rootfs=rootfs,
        destination=mount.destination,
        options=options,
        flags=flags,
        is_file=is_file,
    )


def _fstype(mount: Mount, where: str) -> str:
    kind = mount.type
    bind = any(option in BIND_OPTIONS for option in mount.options)
    if kind in ("nullfs", "bind") or (bind and kind in ("", "none")):
        return "nullfs"
    if bind:
        raise ConfigError(f"{where}.type", f'"{kind}" cannot be a bind (nullfs) mount')
    if kind in FS_TYPES:
        return kind
    if not kind:
        raise ConfigError(f"{where}.type", "required unless the mount is a bind (nullfs)")
    if kind == "none":
        raise ConfigError(f"{where}.type", '"none" needs a "bind" or "rbind" option')
    hint = _LINUX_TYPES.get(kind)
    if hint is not None:
        raise ConfigError(f"{where}.type", f'"{kind}" is a Linux file system; FreeBSD has {hint}')
    raise ConfigError(
        f"{where}.type",
        f'unknown file system type "{kind}" (corral mounts {", ".join(FS_TYPES)})',
    )


def _nullfs_source(mount: Mount, where: str, bundle: str) -> str:
    if not mount.source:
        raise ConfigError(f"{where}.source", "a nullfs (bind) mount needs a source")
    if "\0" in mount.source:
        raise ConfigError(f"{where}.source", "must not contain a NUL byte")
    # config.md: a relative source is read from the bundle.
    source = os.path.normpath(os.path.join(bundle, mount.source))
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        raise ConfigError(f"{where}.source", f'"{source}" does not exist') from None
    except OSError as error:
        raise ConfigError(f"{where}.source", f'"{source}": {error.strerror}') from None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        # mount_nullfs(8): "must be either a file or directory".
        raise ConfigError(f"{where}.source", f'"{source}" is neither a directory nor a file')
    return source


def parse_options(
    options: list[str], where: str, fstype: str
) -> tuple[int, list[tuple[str, str | None]]]:
    """``MNT_*`` flags and nmount(2) option pairs for ``options`` of a ``fstype`` mount.

    ``where`` is the JSON path of the list; an error names ``where[j]``.
    """
    flags = 0
    named: dict[str, str | None] = {}  # file-system options, the last value wins
    known = FS_OPTIONS[fstype]
    for index, option in enumerate(options):
        at = f"{where}[{index}]"
        bits = FLAG_OPTIONS.get(option)
        if bits is not None:
            flags = (flags & ~bits[1]) | bits[0]
            continue
        if option in IGNORED_OPTIONS or (option in BIND_OPTIONS and fstype == "nullfs"):
            continue
        if option in REFUSED_PROPAGATION:
            raise UnsupportedError(at, f'"{option}": FreeBSD mounts do not propagate')
        if not option:
            raise ConfigError(at, "empty mount option")
        name, equals, value = option.partition("=")
        kind = known.get(name)
        if kind is None:
            raise ConfigError(at, f'unknown mount option "{option}" for {fstype}')
        named[name] = _option_value(kind, name, value if equals else None, at)
    pairs: list[tuple[str, str | None]] = [(n, None) for bit, n in _NAMED_FLAGS if flags & bit]
    pairs.extend(named.items())
    return flags, pairs


def _option_value(kind: str, name: str, value: str | None, at: str) -> str | None:
    if kind == _FLAG:
        if value is not None:
            raise ConfigError(at, f'"{name}" takes no value')
        return None
    if not value:
        raise ConfigError(at, f'"{name}" needs a value ({name}=...)')
    digits = value
    if kind == _SIZE and value[-1] in _SIZE_SUFFIXES:
        digits = value[:-1]
    ok = bool(digits) and digits.isascii() and digits.isdigit()
    if kind == _OCTAL:
        ok = ok and len(digits) <= 5 and set(digits) <= set("01234567") and int(digits, 8) <= 0o7777
    elif kind == _UINT:
        ok = ok and int(digits) < 2**32
    elif kind == _RULESET:
        ok = ok and int(digits) <= MAX_DEVFS_RULESET
    if not ok:
        expected = {
            _SIZE: "a number of bytes, with an optional k, m, g, t, p or e suffix",
            _OCTAL: "an octal mode such as 1777",
            _UINT: "a non-negative integer",
            _RULESET: f"a devfs ruleset number, 0 to {MAX_DEVFS_RULESET}",
        }[kind]
        raise ConfigError(at, f'"{name}={value}": expected {expected}')
    return value


# -- doing ------------------------------------------------------------------------------


def apply_mounts(
    sc: MountSyscalls,
    steps: list[MountStep],
    run: Callable[[list[str]], None] | None = None,
) -> list[str]:
    """Mount ``steps`` in order; return the host paths mounted on, for :func:`unmount_all`.

    ``run`` runs devfs(8) for ``freebsd.devices`` (default: :func:`run_command`). If a
    step fails, the mounts already made are undone (last first) and
    :class:`CreateError` names ``mounts[i]``.
    """
    done: list[str] = []
    for step in steps:
        try:
            target = make_destination(step.rootfs, step.destination, is_file=step.is_file)
            sc.nmount(step.fstype, target, step.options, step.flags)
            done.append(target)
            if step.devices:
                unhide_devices(run or _default_run(), target, step.devices)
        except (OSError, CreateError) as error:
            message = f"mounts[{step.index}]: {step.fstype} on {step.destination}: {_reason(error)}"
            leftovers = unmount_all(sc, done)
            if leftovers:
                message += "; undoing the earlier mounts: " + "; ".join(leftovers)
            raise CreateError(message) from None
    return done


def unhide_devices(
    run: Callable[[list[str]], None], dev: str, devices: list[tuple[str, int | None]]
) -> None:
    """Unhide ``devices`` (paths relative to ``dev``, optional mode) in the devfs at ``dev``."""
    unhidden: set[str] = set()
    for path, mode in devices:
        parts = path.split("/")
        # A node in a hidden directory cannot be reached: unhide the directories too.
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent not in unhidden:
                run([DEVFS, "-m", dev, "rule", "apply", "path", parent, "unhide"])
                unhidden.add(parent)
        argv = [DEVFS, "-m", dev, "rule", "apply", "path", path, "unhide"]
        if mode is not None:
            argv += ["mode", f"0{mode:o}"]
        run(argv)
        unhidden.add(path)


def unmount_all(sc: MountSyscalls, targets: list[str]) -> list[str]:
    """Unmount ``targets`` last first; return what failed, having tried every one.

    A target that is no longer mounted (EINVAL: not in the mount table; ENOENT: gone)
    is not an error. One still busy (EBUSY) is unmounted with ``MNT_FORCE``: its jail
    is gone, and a mount left behind would pin the bundle. A target that no longer
    resolves to itself is left alone and reported (see the module doc).
    """
    errors: list[str] = []
    for target in reversed(targets):
        if os.path.lexists(target) and os.path.realpath(target) != target:
            errors.append(
                f"unmount {target}: it now resolves to {os.path.realpath(target)}; left mounted"
            )
            continue
        try:
            _unmount(sc, target)
        except OSError as error:
            reason = _reason(error)  # the syscalls layer may have named the path already
            errors.append(reason if target in reason else f"unmount {target}: {reason}")
    return errors


def _unmount(sc: MountSyscalls, target: str) -> None:
    try:
        sc.unmount(target, 0)
    except OSError as error:
        if error.errno in (errno.EINVAL, errno.ENOENT):
            return
        if error.errno != errno.EBUSY:
            raise
        sc.unmount(target, MNT_FORCE)


def make_destination(rootfs: str, destination: str, *, is_file: bool = False) -> str:
    """Create ``destination`` inside ``rootfs`` and return the host path it resolved to.

    Missing directories are made (0755); the last component, if missing, becomes a
    directory or, with ``is_file``, an empty file (0644). Symlinks are followed inside
    the rootfs (see the module doc). Raises OSError naming the container path.
    """
    root = os.path.realpath(rootfs)
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    names: list[str] = []
    pending = [part for part in reversed(destination.split("/")) if part]
    links = 0
    final_type_checked = False
    try:
        while pending:
            name = pending.pop()
            final_type_checked = False
            if name == ".":
                continue
            if name == "..":
                if names:  # never above the rootfs, as in a chroot
                    names.pop()
                    os.close(fds.pop())
                continue
            last = not pending
            mode = _lstat_or_create(fds[-1], name, create_file=last and is_file)
            if stat.S_ISLNK(mode):
                links += 1
                if links > MAXSYMLINKS:
                    raise OSError(errno.ELOOP, f"{destination}: too many symbolic links")
                link = os.readlink(name, dir_fd=fds[-1])
                if link.startswith("/"):
                    while names:
                        names.pop()
                        os.close(fds.pop())
                pending.extend(part for part in reversed(link.split("/")) if part)
                continue
            here = "/" + "/".join([*names, name])
            if last:
                _check_final_type(mode, here, destination, is_file=is_file)
                final_type_checked = True
                names.append(name)
            else:
                if not stat.S_ISDIR(mode):
                    raise NotADirectoryError(
                        errno.ENOTDIR, f"{here} (on the way to {destination}) is not a directory"
                    )
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                fds.append(os.open(name, flags, dir_fd=fds[-1]))
                names.append(name)
        if not final_type_checked:
            # The path ended on "." or ".." or a link to a directory above: that directory.
            _check_final_type(stat.S_IFDIR, "/" + "/".join(names), destination, is_file=is_file)
    finally:
        for fd in fds:
            os.close(fd)
    return root + "".join("/" + name for name in names)


def _lstat_or_create(dir_fd: int, name: str, *, create_file: bool) -> int:
    """The mode of ``name`` in ``dir_fd`` (not following a link), created if missing."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        pass
    try:
        if create_file:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(name, flags, 0o644, dir_fd=dir_fd))
        else:
            os.mkdir(name, 0o755, dir_fd=dir_fd)
    except FileExistsError:
        pass  # made meanwhile: look again
    return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode


def _check_final_type(mode: int, here: str, destination: str, *, is_file: bool) -> None:
    # nullfs mounts a file only on a file and a directory only on a directory
    # (mount_nullfs(8): "must be same type"); other file systems need a directory.
    if is_file and stat.S_ISDIR(mode):
        raise IsADirectoryError(
            errno.EISDIR,
            f"{destination} is a directory in the rootfs ({here}); the source is a file",
        )
    if not is_file and not stat.S_ISDIR(mode):
        raise NotADirectoryError(
            errno.ENOTDIR, f"{destination} is not a directory in the rootfs ({here})"
        )


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError):
        if error.strerror and error.errno and error.strerror != os.strerror(error.errno):
            return error.strerror  # a message of ours (or nmount's errmsg) that says more
        text = os.strerror(error.errno) if error.errno else str(error)
        return f"{error.filename}: {text}" if error.filename else text
    return str(error)


def _default_run() -> Callable[[list[str]], None]:
    from corral.freebsd.vnet import run_command

    return run_command
