"""The default devices and the ``/dev`` symlinks every container gets.

config-linux.md ("Default Devices") requires ``/dev/null``, ``zero``, ``full``,
``random``, ``urandom`` and ``tty``; programs also expect ``/dev/fd``, the three std
links and ``/dev/ptmx`` (pts(4): with a private devpts instance, ``ptmx`` must lead to
``pts/ptmx``). They are made in the container's ``/dev`` through the fd of that
directory, resolved inside the rootfs, so a ``/dev`` symlink in the image cannot
make corral write a device node on the host.

Nodes are made with mknod(2) and mode 0666 under a zero umask (two umask calls
instead of a chmod per node). Where mknod is refused with ``EPERM`` (in a user
namespace only the initial namespace's root may create device nodes) the host's
device is bind-mounted onto an empty file instead; after the first ``EPERM`` the
others go straight to the bind.

A device is skipped when the config provides it: a mount onto its path, an entry of
``linux.devices`` with that path, or a bind mount of the whole ``/dev``.

``linux.devices`` (config-linux.md, "Devices") is :func:`config_devices` (pure: each
entry checked, errors name ``linux.devices[i]``) and :func:`create_config_devices`,
run before :func:`create_devices` so a configured node takes precedence over a
default symlink. Each node is made with mknodat(2) in the fd of its parent directory,
resolved and created inside the rootfs (:mod:`corral.linux.paths`), then reopened with
``O_PATH | O_NOFOLLOW`` and checked (type and major:minor) before it is chowned and
chmodded through that fd: nothing is done through a path a symlink could redirect.
A file already at the path is accepted only if it is the requested device, and left
as it is; anything else is an error, as the spec requires. In a user namespace (or
wherever mknod gets ``EPERM``), character and block devices are the host's node at
the same path, bind-mounted onto an empty file, and their mode and owner are the
host's: a chmod through the bind would change the host's node. FIFOs need no
privilege and are always made. Nothing is created when ``/dev`` is a bind of the
host's, as with the default devices (runc skips them too).
"""

from __future__ import annotations

import errno
import os
import stat

from corral.core.fastos import fold
from corral.errors import ConfigError, CreateError
from corral.linux.paths import mkdir_all_in_root
from corral.linux.syscalls import MS_BIND
from corral.spec.reader import UINT32_MAX, Fields, describe, join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Spec

# name, major, minor (Documentation/admin-guide/devices.txt)
DEFAULT_DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
# name in /dev -> target; "ptmx" and "core" are conditional, see dev_symlinks.
STANDARD_SYMLINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)
_DEVICE_MODE = stat.S_IFCHR | 0o666


def provided_paths(spec: Spec) -> set[str] | None:
    """Container paths the config supplies itself; None when ``/dev`` is a host bind."""
    paths: set[str] = set()
    for mount in spec.mounts:
        if mount.destination == "/dev" and any(
            option in ("bind", "rbind") for option in mount.options
        ):
            return None  # runc does the same: the host's /dev already has everything
        paths.add(mount.destination)
    linux = spec.raw.get("linux")
    devices = linux.get("devices") if isinstance(linux, dict) else None
    if isinstance(devices, list):
        for device in devices:
            if isinstance(device, dict) and isinstance(device.get("path"), str):
                paths.add(os.path.normpath(device["path"]))
    return paths


def default_devices(spec: Spec) -> list[tuple[str, int, int]]:
    """The default devices still to create (pure: what setup will do)."""
    provided = provided_paths(spec)
    return [] if provided is None else _missing(provided)


def _missing(provided: set[str]) -> list[tuple[str, int, int]]:
    return [device for device in DEFAULT_DEVICES if "/dev/" + device[0] not in provided]


def dev_symlinks(dev_has_pts: bool, host_has_kcore: bool) -> list[tuple[str, str]]:
    """The ``/dev`` symlinks to create (pure)."""
    links = list(STANDARD_SYMLINKS)
    if dev_has_pts:
        links.append(("ptmx", "pts/ptmx"))
    if host_has_kcore:
        links.append(("core", "/proc/kcore"))
    return links


def create_devices(sc: Syscalls, root_fd: int, spec: Spec) -> None:
    """Create the missing default devices and the ``/dev`` symlinks inside the root."""
    provided = provided_paths(spec)
    if provided is None:
        return
    devices = _missing(provided)
    dev_fd = mkdir_all_in_root(sc, root_fd, "/dev")
    try:
        old_umask = os.umask(0)
        try:
            use_bind = False
            for name, major, minor in devices:
                use_bind = _make_device(sc, dev_fd, name, os.makedev(major, minor), use_bind)
        finally:
            os.umask(old_umask)
        try:
            has_pts = stat.S_ISDIR(os.stat("pts", dir_fd=dev_fd, follow_symlinks=False).st_mode)
        except OSError:
            has_pts = False
        for name, target in dev_symlinks(has_pts, os.path.exists("/proc/kcore")):
            try:
                os.symlink(target, name, dir_fd=dev_fd)
            except FileExistsError:
                pass  # the image or a mount already has one: theirs wins, as with runc
    finally:
        os.close(dev_fd)


def _make_device(sc: Syscalls, dev_fd: int, name: str, device: int, use_bind: bool) -> bool:
    """Create ``/dev/<name>``; return whether binds must be used from now on."""
    # mknod through the fd's magic link: the kernel creates `name` in the directory
    # the fd refers to, whatever symlinks the image has on the way to /dev.
    target = f"/proc/self/fd/{dev_fd}/{name}"
    if not use_bind:
        try:
            sc.mknod(target, _DEVICE_MODE, device)
            return False
        except FileExistsError:
            if _is_device(dev_fd, name, device):
                return False
            _remove_existing(dev_fd, name)
            sc.mknod(target, _DEVICE_MODE, device)
            return False
        except PermissionError:
            use_bind = True
    # An empty file to bind the host's node onto.
    flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o666, dir_fd=dev_fd)
    except OSError as error:
        raise OSError(error.errno, f"create /dev/{name}: {error.strerror}") from None
    try:
        sc.mount(f"/dev/{name}", f"/proc/self/fd/{fd}", None, MS_BIND, None)
    finally:
        os.close(fd)
    return use_bind


def _is_device(dev_fd: int, name: str, device: int) -> bool:
    st = os.stat(name, dir_fd=dev_fd, follow_symlinks=False)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == device


def _remove_existing(dev_fd: int, name: str) -> None:
    """An image's own ``/dev/<name>`` (a file, a wrong node) gives way to the real one."""
    try:
        os.unlink(name, dir_fd=dev_fd)
    except IsADirectoryError:
        raise OSError(errno.EISDIR, f"/dev/{name}: is a directory, not a device") from None


# -- linux.devices -------------------------------------------------------------------

DEVICE_FILE_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
# The kernel's dev_t: 12 bits of major, 20 of minor (include/linux/kdev_t.h); mknod(2)
# would silently truncate anything larger into another device.
MAX_MAJOR = (1 << 12) - 1
MAX_MINOR = (1 << 20) - 1
DEFAULT_FILE_MODE = 0o666  # runc's, when fileMode is absent
_TYPE_NAMES = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFREG: "a regular file",
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFSOCK: "a socket",
}


class ConfigDevice:
    """One checked entry of ``linux.devices``; ``path`` is absolute and folded."""

    __slots__ = ("file_type", "gid", "index", "major", "minor", "mode", "path", "uid")

    def __init__(
        self,
        *,
        index: int,
        path: str,
        file_type: int,
        major: int,
        minor: int,
        mode: int,
        uid: int,
        gid: int,
    ) -> None:
        self.index = index
        self.path = path
        self.file_type = file_type
        self.major = major
        self.minor = minor
        self.mode = mode
        self.uid = uid
        self.gid = gid

    @property
    def where(self) -> str:
        return f"linux.devices[{self.index}]"

    @property
    def rdev(self) -> int:
        return 0 if self.file_type == stat.S_IFIFO else os.makedev(self.major, self.minor)

    def describe(self) -> str:
        if self.file_type == stat.S_IFIFO:
            return "FIFO"
        kind = "character" if self.file_type == stat.S_IFCHR else "block"
        return f"{kind} device {self.major}:{self.minor}"

    def matches(self, st: os.stat_result) -> bool:
        if stat.S_IFMT(st.st_mode) != self.file_type:
            return False
        return self.file_type == stat.S_IFIFO or st.st_rdev == self.rdev


def config_devices(spec: Spec) -> list[ConfigDevice]:
    """The entries of ``linux.devices``, checked (pure)."""
    linux = Fields(spec.raw, "").obj("linux")
    if linux is None:
        return []
    result: list[ConfigDevice] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(linux.array("devices")):
        entry = Fields(item, join(linux.at("devices"), index))
        kind = entry.string("type", required=True)
        if kind not in DEVICE_FILE_TYPES:
            raise ConfigError(
                entry.at("type"), f"unknown device type {describe(kind)} (c, b, u or p)"
            )
        file_type = DEVICE_FILE_TYPES[kind]
        path = _device_path(entry)
        if path in seen:
            raise ConfigError(entry.at("path"), f"{path} is also linux.devices[{seen[path]}]")
        seen[path] = index
        fifo = kind == "p"
        major = entry.integer("major", required=not fifo, minimum=0, maximum=MAX_MAJOR) or 0
        minor = entry.integer("minor", required=not fifo, minimum=0, maximum=MAX_MINOR) or 0
        result.append(
            ConfigDevice(
                index=index,
                path=path,
                file_type=file_type,
                major=0 if fifo else major,
                minor=0 if fifo else minor,
                mode=_file_mode(entry, file_type),
                uid=entry.integer("uid", minimum=0, maximum=UINT32_MAX - 1) or 0,
                gid=entry.integer("gid", minimum=0, maximum=UINT32_MAX - 1) or 0,
            )
        )
    return result


def _device_path(entry: Fields) -> str:
    text = entry.string("path", required=True)
    where = entry.at("path")
    if "\0" in text:
        raise ConfigError(where, "must not contain a NUL byte")
    if not text.startswith("/"):
        raise ConfigError(where, f"{describe(text)} is not an absolute path")
    path = fold(text)
    if path == "/":
        raise ConfigError(where, f"{describe(text)} names the root, not a device file")
    return path


def _file_mode(entry: Fields, file_type: int) -> int:
    """``fileMode``'s permission bits; file-type bits are allowed if they agree (pure)."""
    mode = entry.integer("fileMode", minimum=0, maximum=UINT32_MAX)
    if mode is None:
        return DEFAULT_FILE_MODE
    type_bits = stat.S_IFMT(mode)
    if type_bits and type_bits != file_type:
        raise ConfigError(
            entry.at("fileMode"),
            f"{mode} ({mode:#o}) says {_TYPE_NAMES.get(type_bits, 'another file type')}, "
            f"not {_TYPE_NAMES[file_type]} (it is decimal, not octal)",
        )
    if mode & ~(stat.S_IFMT(mode) | 0o7777):
        raise ConfigError(
            entry.at("fileMode"), f"{mode} ({mode:#o}) has bits beyond the permissions (0o7777)"
        )
    return stat.S_IMODE(mode)


def check_devices(spec: Spec) -> None:
    """Every entry of ``linux.devices`` is one corral can create (pure)."""
    config_devices(spec)


def in_user_namespace(spec: Spec, *, uid_map: str = "/proc/self/uid_map") -> bool:
    """Whether mknod of a device will be refused: a new user namespace in the config,
    or corral itself running in one (its uid map is not the identity of all ids)."""
    if spec.linux is not None and spec.linux.namespace("user") is not None:
        return True
    try:
        with open(uid_map) as f:
            lines = f.read().split()
    except OSError:
        return False
    return lines != ["0", "0", "4294967295"]


def create_config_devices(sc: Syscalls, root_fd: int, spec: Spec, *, in_userns: bool) -> None:
    """Create ``linux.devices`` inside the rootfs; before pivot_root, after the mounts.

    ``in_userns``: bind the host's nodes instead of mknod (:func:`in_user_namespace`).
    """
    if provided_paths(spec) is None:
        return  # /dev is the host's, bound in: its nodes are already there
    use_bind = in_userns
    for device in config_devices(spec):
        parent, _, name = device.path.rpartition("/")
        try:
            parent_fd = mkdir_all_in_root(sc, root_fd, parent or "/")
            try:
                use_bind = _create_config_device(sc, parent_fd, name, device, use_bind)
            finally:
                os.close(parent_fd)
        except OSError as error:
            reason = error.strerror or str(error)
            raise CreateError(f"{device.where}: {device.path}: {reason}") from error


def _create_config_device(
    sc: Syscalls, parent_fd: int, name: str, device: ConfigDevice, use_bind: bool
) -> bool:
    """Make one node in ``parent_fd``; return whether binds must be used from now on."""
    if use_bind and device.file_type != stat.S_IFIFO:
        if not _accept_existing(parent_fd, name, device):
            _bind_host_device(sc, parent_fd, name, device)
        return True
    try:
        sc.mknodat(parent_fd, name, device.file_type | device.mode, device.rdev)
    except FileExistsError:
        if not _accept_existing(parent_fd, name, device):
            raise CreateError(
                f"{device.where}: {device.path} vanished while being created"
            ) from None
        return use_bind
    except PermissionError:
        # No CAP_MKNOD here (a user namespace, a restricted host): bind the host's node.
        if not _accept_existing(parent_fd, name, device):
            _bind_host_device(sc, parent_fd, name, device)
        return True
    _set_owner_and_mode(parent_fd, name, device)
    return use_bind


def _accept_existing(parent_fd: int, name: str, device: ConfigDevice) -> bool:
    """True if the requested device is already there; an error if something else is."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not device.matches(st):
        raise CreateError(
            f"{device.where}: {device.path} exists and is not the requested "
            f"{device.describe()} (it is {_describe_file(st)})"
        )
    return True


def _describe_file(st: os.stat_result) -> str:
    file_type = stat.S_IFMT(st.st_mode)
    what = _TYPE_NAMES.get(file_type, "another kind of file")
    if file_type in (stat.S_IFCHR, stat.S_IFBLK):
        what += f" {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return what


def _set_owner_and_mode(parent_fd: int, name: str, device: ConfigDevice) -> None:
    """Check the new node, then chown and chmod it through an ``O_PATH`` fd of it."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        st = os.fstat(fd)
        if not device.matches(st):
            raise CreateError(
                f"{device.where}: {device.path} was replaced while being created "
                f"(now {_describe_file(st)})"
            )
        # The magic link of an O_PATH fd reaches the inode itself; chown first, since
        # it clears set-user-ID and set-group-ID bits that the chmod then restores.
        node = f"/proc/self/fd/{fd}"
        if (st.st_uid, st.st_gid) != (device.uid, device.gid):
            os.chown(node, device.uid, device.gid)
            st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) != device.mode:
            os.chmod(node, device.mode)
    finally:
        os.close(fd)


def _bind_host_device(sc: Syscalls, parent_fd: int, name: str, device: ConfigDevice) -> None:
    """Bind the host's node at the same path onto a new empty file (runc's way)."""
    try:
        host_fd = os.open(device.path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CreateError(
            f"{device.where}: {device.path} cannot be made here (mknod is not permitted) "
            f"and the host has no {device.path} to bind"
        ) from None
    try:
        host = os.fstat(host_fd)
        if not device.matches(host):
            raise CreateError(
                f"{device.where}: mknod is not permitted, and the host's {device.path} to "
                f"bind is {_describe_file(host)}, not the requested {device.describe()}"
            )
        flags = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        target_fd = os.open(name, flags, 0o000, dir_fd=parent_fd)
        try:
            sc.mount(f"/proc/self/fd/{host_fd}", f"/proc/self/fd/{target_fd}", None, MS_BIND, None)
        finally:
            os.close(target_fd)
    finally:
        os.close(host_fd)
