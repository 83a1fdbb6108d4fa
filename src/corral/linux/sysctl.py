"""``linux.sysctl`` and ``process.oomScoreAdj``: the container's knobs in ``/proc``.

Sysctls: which keys a container may set, and writing them under ``/proc/sys``.

A key names a file under ``/proc/sys``: ``net.ipv4.ip_forward`` is
``/proc/sys/net/ipv4/ip_forward``. As with sysctl(8), ``/`` is accepted as the separator
too; a key written with slashes keeps its dots, which is how an interface name with a dot
(a VLAN such as ``eth0.100``) is spelled: ``net/ipv4/conf/eth0.100/forwarding``.

Most sysctls are global to the host; writing one from a container would change the
host. Only the namespaced ones are allowed, and only when the container has its own
namespace of that kind (the same rules as runc):

* System V IPC and POSIX message queues (``kernel.msg*``, ``kernel.sem*``,
  ``kernel.shm*``, ``fs.mqueue.*``): the ipc namespace (ipc_namespaces(7));
* ``net.*``: the network namespace (network_namespaces(7));
* ``kernel.hostname`` and ``kernel.domainname``: the uts namespace (uts_namespaces(7)).

A namespace joined by ``path`` counts as the container's own unless the path is the
namespace the runtime itself is in (the host's, as far as corral can tell).

``oomScoreAdj`` is written to ``/proc/self/oom_score_adj`` before the credentials change:
lowering it below its current value needs CAP_SYS_RESOURCE (proc(5)).
"""

from __future__ import annotations

import os

from corral.errors import ConfigError, CreateError
from corral.spec.reader import describe, join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from corral.spec.model import Spec

# Spec namespace type -> name of its file in /proc/<pid>/ns/.
_PROC_NS_NAMES = {"ipc": "ipc", "network": "net", "uts": "uts"}

_NAMESPACED = (
    "kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.* (ipc namespace), "
    "net.* (network namespace), kernel.hostname, kernel.domainname (uts namespace)"
)


def sysctl_parts(key: str) -> list[str]:
    """Split ``key`` into the path components under ``/proc/sys``; reject unsafe keys.

    ``..`` and empty components are refused: the key must name a file inside
    ``/proc/sys``, not climb out of it.
    """
    parts = key.split("/") if "/" in key else key.split(".")
    if "\0" in key or any(part in ("", ".", "..") for part in parts):
        raise ConfigError(join("linux.sysctl", key), f"{describe(key)} is not a sysctl name")
    return parts


def sysctl_namespace(parts: list[str]) -> str | None:
    """The namespace type a sysctl belongs to, or ``None`` if it is host-wide."""
    if parts[0] == "net":
        return "network"
    if parts[0] == "fs" and len(parts) > 2 and parts[1] == "mqueue":
        return "ipc"
    if parts[0] == "kernel" and len(parts) == 2:
        name = parts[1]
        if name.startswith(("msg", "shm")) or name in ("sem", "sem_next_id"):
            return "ipc"
        if name in ("hostname", "domainname"):
            return "uts"
    return None


def is_runtime_namespace(ns_type: str, path: str) -> bool:
    """Whether ``path`` is the namespace of this kind the runtime itself runs in."""
    try:
        ours = os.stat(f"/proc/self/ns/{_PROC_NS_NAMES[ns_type]}")
        theirs = os.stat(path)
    except OSError:
        return False  # a missing path is reported by whoever joins it
    return (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)


def check_sysctl(
    spec: Spec, *, runtime_namespace: Callable[[str, str], bool] = is_runtime_namespace
) -> None:
    """Reject sysctls that are not namespaced or whose namespace the container shares."""
    linux = spec.linux
    if linux is None:
        return
    for key in linux.sysctl:
        path = join("linux.sysctl", key)
        ns_type = sysctl_namespace(sysctl_parts(key))
        if ns_type is None:
            raise ConfigError(
                path,
                "not a namespaced sysctl: setting it would change the whole host "
                f"(allowed: {_NAMESPACED})",
            )
        ns = linux.namespace(ns_type)
        if ns is None or (ns.path and runtime_namespace(ns_type, ns.path)):
            raise ConfigError(
                path,
                f"needs a {ns_type} namespace of the container's own "
                f"(in the host's {ns_type} namespace it would change the host)",
            )
        if key in ("kernel.hostname", "kernel/hostname") and spec.hostname:
            _check_same(path, linux.sysctl[key], spec.hostname, "hostname")
        if key in ("kernel.domainname", "kernel/domainname") and spec.domainname:
            _check_same(path, linux.sysctl[key], spec.domainname, "domainname")


def _check_same(path: str, value: str, field_value: str, field: str) -> None:
    if value != field_value:
        raise ConfigError(path, f"{describe(value)} conflicts with {field} {describe(field_value)}")


def apply_sysctl(sysctl: dict[str, str], *, proc_sys: str = "/proc/sys") -> None:
    """Write each value to its ``/proc/sys`` file, in the order of the config.

    Runs in the init after pivot_root, so ``/proc`` is the container's, and before
    ``/proc/sys`` is made read-only.
    """
    for key, value in sysctl.items():
        target = proc_sys + "/" + "/".join(sysctl_parts(key))
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise CreateError(
                f"linux.sysctl.{key}: writing {describe(value)} to {target}: {reason}"
            ) from error


def apply_oom_score_adj(value: int | None, *, path: str = "/proc/self/oom_score_adj") -> None:
    """Write ``value`` to ``/proc/self/oom_score_adj``; ``None`` leaves it unchanged (spec)."""
    if value is None:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
    except OSError as error:
        raise CreateError(
            f"process.oomScoreAdj {value}: writing {path}: "
            f"{os.strerror(error.errno) if error.errno else error}"
        ) from error
