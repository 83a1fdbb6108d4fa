"""AppArmor and SELinux: ``process.apparmorProfile``, ``process.selinuxLabel``,
``linux.mountLabel``.

Both labels are requested for the *next* execve(2): the init writes them to its own
``/proc/thread-self/attr/...`` files just before it execs the program, so the runtime's
own Python never runs confined.

* AppArmor: ``exec <profile>`` into ``attr/apparmor/exec`` (Linux 5.8 has one directory
  per LSM), or ``attr/exec`` on older kernels: libapparmor's aa_change_onexec().
  The write must come before ``no_new_privs`` (AppArmor refuses most profile changes
  after it) and while the init is still root.
* SELinux: the context into ``attr/exec`` (libselinux's setexeccon()).
* ``mountLabel``: a ``context="<label>"`` mount option on the filesystems the runtime
  creates, such as tmpfs and devpts; as with runc, not on bind mounts, ``proc``,
  ``sysfs``, cgroup filesystems or ``mqueue`` (see :func:`label_mount_data`).

The attr files are opened inside the container's ``/proc``, so the file is checked
to be on procfs (fstatfs(2) ``PROC_SUPER_MAGIC``) before the write: an image that
puts something else at ``/proc`` would otherwise swallow it and the program would
run unconfined (CVE-2019-16884).

A host without the LSM: runc 1.1.5 (checked on this host, which has neither)
refuses ``selinuxLabel`` before creating anything ("selinux label is specified in
config, but selinux is disabled or not supported"), fails the init on
``apparmorProfile`` (the write to ``attr/exec`` gets ``EINVAL``), and passes
``mountLabel`` on as ``context=``, so the first tmpfs mount fails with ``EINVAL``.
All three are errors; corral refuses all three before it forks
(:func:`check_lsm_host`), naming the field and the missing LSM. It never ignores a
label: a container that asked to be confined must not silently run unconfined.
"""

from __future__ import annotations

import errno
import os

from corral.errors import ConfigError, CreateError
from corral.spec.reader import Fields, describe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Spec

PROC_SUPER_MAGIC = 0x9FA0
# Filesystems that get no context= option: runc's list (bind mounts are left out too).
UNLABELED_TYPES = frozenset(("proc", "sysfs", "cgroup", "cgroup2", "mqueue", "bind"))


class HostLsm:
    """Which LSMs the host has enabled."""

    __slots__ = ("apparmor", "selinux")

    def __init__(self, apparmor: bool, selinux: bool) -> None:
        self.apparmor = apparmor
        self.selinux = selinux


def probe_host_lsm(*, sys_root: str = "/sys", proc: str = "/proc") -> HostLsm:
    return HostLsm(apparmor_enabled(sys_root), selinux_enabled(sys_root, proc))


def apparmor_enabled(sys_root: str = "/sys") -> bool:
    """securityfs shows ``apparmor`` and the module says ``Y`` (runc's test)."""
    if not os.path.isdir(f"{sys_root}/kernel/security/apparmor"):
        return False
    return _read(f"{sys_root}/module/apparmor/parameters/enabled").startswith("Y")


def selinux_enabled(sys_root: str = "/sys", proc: str = "/proc") -> bool:
    """selinuxfs is mounted and this process has a context that is not ``kernel``."""
    if not os.path.exists(f"{sys_root}/fs/selinux/enforce"):
        return False
    current = _read(f"{proc}/self/attr/current").rstrip("\0\n")
    return current not in ("", "kernel")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except (OSError, ValueError):
        return ""


# -- the config ---------------------------------------------------------------------


def _labels(spec: Spec) -> tuple[str, str, str]:
    """``(apparmorProfile, selinuxLabel, mountLabel)``, "" where absent (pure)."""
    top = Fields(spec.raw, "")
    process = top.obj("process")
    linux = top.obj("linux")
    values = (
        ("process.apparmorProfile", "" if process is None else process.string("apparmorProfile")),
        ("process.selinuxLabel", "" if process is None else process.string("selinuxLabel")),
        ("linux.mountLabel", "" if linux is None else linux.string("mountLabel")),
    )
    for path, value in values:
        if any(ch in value for ch in "\0\n") or value != value.strip():
            raise ConfigError(path, f"{describe(value)} is not a valid label")
    return values[0][1], values[1][1], values[2][1]


def apparmor_profile(spec: Spec) -> str:
    return _labels(spec)[0]


def selinux_label(spec: Spec) -> str:
    return _labels(spec)[1]


def mount_label(spec: Spec) -> str:
    return _labels(spec)[2]


def check_lsm(spec: Spec) -> None:
    """The three fields are strings a kernel could take (pure)."""
    _labels(spec)


def check_lsm_host(spec: Spec, host: HostLsm | None = None) -> None:
    """Refuse a label for an LSM the host lacks (``host`` is probed when None)."""
    profile, label, mount = _labels(spec)
    if not (profile or label or mount):
        return
    host = host or probe_host_lsm()
    if profile and not host.apparmor:
        raise ConfigError("process.apparmorProfile", "AppArmor is not enabled on this host")
    for path, value in (("process.selinuxLabel", label), ("linux.mountLabel", mount)):
        if value and not host.selinux:
            raise ConfigError(path, "SELinux is disabled or not supported on this host")


def label_mount_data(label: str, fstype: str, data: str, *, bind: bool) -> str:
    """``data`` with ``context="<label>"`` added where the mount takes it (pure).

    The quotes keep the commas of an MCS range (``s0:c1,c2``) inside one option;
    SELinux's option parser honours them.
    """
    if not label or bind or fstype in UNLABELED_TYPES:
        return data
    option = f'context="{label}"'
    return f"{data},{option}" if data else option


# -- applying -----------------------------------------------------------------------


def apply_apparmor_profile(sc: Syscalls, spec: Spec, *, proc: str = "/proc") -> None:
    """Ask AppArmor to confine the next execve(2) in ``process.apparmorProfile``."""
    profile = apparmor_profile(spec)
    if not profile:
        return
    base = f"{proc}/thread-self/attr"
    path = f"{base}/apparmor/exec" if os.path.isdir(f"{base}/apparmor") else f"{base}/exec"
    _write_attr(sc, path, f"exec {profile}", "process.apparmorProfile", "AppArmor")


def apply_selinux_label(sc: Syscalls, spec: Spec, *, proc: str = "/proc") -> None:
    """Ask SELinux to run the next execve(2) in ``process.selinuxLabel``."""
    label = selinux_label(spec)
    if not label:
        return
    _write_attr(sc, f"{proc}/thread-self/attr/exec", label, "process.selinuxLabel", "SELinux")


def _write_attr(sc: Syscalls, path: str, value: str, field: str, lsm: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as error:
        hint = " (the container has no /proc mounted)" if error.errno == errno.ENOENT else ""
        raise CreateError(f"{field}: opening {path}: {error.strerror}{hint}") from error
    try:
        if sc.fstatfs_type(fd) != PROC_SUPER_MAGIC:
            raise CreateError(f"{field}: {path} is not on procfs; refusing to run unconfined")
        try:
            os.write(fd, value.encode())
        except OSError as error:
            hint = {
                errno.EINVAL: f" (is {lsm} enabled on this host, and the name valid?)",
                errno.ENOENT: " (is that profile loaded?)",
            }.get(error.errno or 0, "")
            raise CreateError(f"{field}: writing {path}: {error.strerror}{hint}") from error
    finally:
        os.close(fd)
