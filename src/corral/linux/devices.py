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
"""

from __future__ import annotations

import errno
import os
import stat

from corral.linux.paths import mkdir_all_in_root
from corral.linux.syscalls import MS_BIND

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
