"""``linux.memoryPolicy``: the container's NUMA memory policy, with set_mempolicy(2).

The policy is a property of the task: fork(2) children inherit it and execve(2) keeps
it (set_mempolicy(2)), so one call in the init covers every process of the container.

:func:`memory_policy` checks what the kernel would refuse with a bare ``EINVAL``
(mm/mempolicy.c, ``sanitize_mpol_flags`` and ``mpol_new``), so the error names the
field: ``MPOL_DEFAULT`` and ``MPOL_LOCAL`` take no nodes, ``MPOL_BIND``,
``MPOL_INTERLEAVE``, ``MPOL_WEIGHTED_INTERLEAVE`` and ``MPOL_PREFERRED_MANY`` need
at least one; ``MPOL_F_STATIC_NODES`` and ``MPOL_F_RELATIVE_NODES`` exclude each
other and mean nothing without nodes; ``MPOL_F_NUMA_BALANCING`` goes with
``MPOL_BIND`` or ``MPOL_PREFERRED_MANY`` only. Node numbers stop at 1023
(``MAX_NUMNODES`` is at most 1 << 10).

What only the host can tell (is there NUMA at all, are those nodes online and
allowed by the cpuset, does this kernel know the mode) shows up when the call fails:
:func:`apply_memory_policy` turns ``ENOSYS`` (a kernel built without ``CONFIG_NUMA``)
and ``EINVAL`` into a line that says which of them it is, from
``/sys/devices/system/node/online`` and ``Mems_allowed_list`` in ``/proc/self/status``.
"""

from __future__ import annotations

import errno
import os

from corral.errors import ConfigError, CreateError
from corral.linux.scheduling import parse_id_list
from corral.spec.reader import Fields, describe, join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Spec

# <linux/mempolicy.h>
MODES = {
    "MPOL_DEFAULT": 0,
    "MPOL_PREFERRED": 1,
    "MPOL_BIND": 2,
    "MPOL_INTERLEAVE": 3,
    "MPOL_LOCAL": 4,
    "MPOL_PREFERRED_MANY": 5,
    "MPOL_WEIGHTED_INTERLEAVE": 6,
}
FLAGS = {
    "MPOL_F_NUMA_BALANCING": 1 << 13,
    "MPOL_F_RELATIVE_NODES": 1 << 14,
    "MPOL_F_STATIC_NODES": 1 << 15,
}
MAX_NODE = 1023
# The first Linux release that knows each mode or flag, for the EINVAL explanation.
_SINCE = {
    "MPOL_LOCAL": "3.8",
    "MPOL_F_NUMA_BALANCING": "5.12",
    "MPOL_PREFERRED_MANY": "5.15",
    "MPOL_WEIGHTED_INTERLEAVE": "6.9",
}
_NEED_NODES = ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED_MANY")
_NO_NODES = ("MPOL_DEFAULT", "MPOL_LOCAL")
_NODE_FLAGS = ("MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES")


class MemoryPolicy:
    """A checked ``linux.memoryPolicy``: names as given, and the numbers to pass."""

    __slots__ = ("flag_names", "mode_name", "nodes", "nodes_text")

    def __init__(self, mode_name: str, flag_names: list[str], nodes: set[int], nodes_text: str):
        self.mode_name = mode_name
        self.flag_names = flag_names
        self.nodes = nodes
        self.nodes_text = nodes_text

    @property
    def mode(self) -> int:
        """The first argument of set_mempolicy(2): the mode ORed with its flags."""
        value = MODES[self.mode_name]
        for name in self.flag_names:
            value |= FLAGS[name]
        return value


def memory_policy(spec: Spec) -> MemoryPolicy | None:
    """The policy ``linux.memoryPolicy`` asks for (pure), None when it is absent."""
    linux = Fields(spec.raw, "").obj("linux")
    fields = None if linux is None else linux.obj("memoryPolicy")
    if fields is None:
        return None
    mode = fields.string("mode", required=True)
    if mode not in MODES:
        raise ConfigError(fields.at("mode"), f"unknown mode {describe(mode)}")
    text = fields.string("nodes")
    nodes = (
        parse_id_list(text, fields.at("nodes"), limit=MAX_NODE, what="node")
        if text.strip()
        else set()
    )
    if mode in _NO_NODES and nodes:
        raise ConfigError(fields.at("nodes"), f"{mode} takes no nodes")
    if mode in _NEED_NODES and not nodes:
        raise ConfigError(fields.at("nodes"), f"{mode} needs at least one node")
    flags = fields.strings("flags")
    for index, flag in enumerate(flags):
        where = join(fields.at("flags"), index)
        if flag not in FLAGS:
            raise ConfigError(where, f"unknown flag {describe(flag)}")
        if mode == "MPOL_DEFAULT":
            raise ConfigError(where, "MPOL_DEFAULT takes no flags")
        if flag in _NODE_FLAGS and not nodes:
            raise ConfigError(where, f"{flag} needs nodes to apply to")
        if flag == "MPOL_F_NUMA_BALANCING" and mode not in ("MPOL_BIND", "MPOL_PREFERRED_MANY"):
            raise ConfigError(where, f"{flag} goes with MPOL_BIND or MPOL_PREFERRED_MANY only")
    if all(flag in flags for flag in _NODE_FLAGS):
        raise ConfigError(
            fields.at("flags"), "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other"
        )
    return MemoryPolicy(mode, list(dict.fromkeys(flags)), nodes, text)


def check_memory_policy(spec: Spec) -> None:
    memory_policy(spec)


def apply_memory_policy(sc: Syscalls, spec: Spec) -> None:
    """set_mempolicy(2) for the init, inherited by everything it starts."""
    policy = memory_policy(spec)
    if policy is None:
        return
    try:
        sc.set_mempolicy(policy.mode, policy.nodes)
    except OSError as error:
        raise CreateError(f"linux.memoryPolicy: {explain_failure(policy, error)}") from error


def explain_failure(
    policy: MemoryPolicy,
    error: OSError,
    *,
    node_online: str = "/sys/devices/system/node/online",
    status: str = "/proc/self/status",
) -> str:
    """Why set_mempolicy(2) refused, in one line (reads the host's facts if it can)."""
    if error.errno == errno.ENOSYS:
        return "this kernel has no NUMA support (built without CONFIG_NUMA)"
    reason = os.strerror(error.errno) if error.errno else str(error)
    if error.errno != errno.EINVAL:
        return reason
    online = _read_list(node_online)
    allowed = _status_list(status, "Mems_allowed_list")
    if online is not None and policy.nodes - online:
        missing = ",".join(str(node) for node in sorted(policy.nodes - online))
        return (
            f"node {missing} of {describe(policy.nodes_text)} is not online on this host "
            f"(online: {_show(online)})"
        )
    if allowed is not None and policy.nodes and not policy.nodes & allowed:
        return (
            f"none of the nodes {describe(policy.nodes_text)} is allowed by this process's "
            f"cpuset (Mems_allowed_list: {_show(allowed)})"
        )
    newer = [name for name in (policy.mode_name, *policy.flag_names) if name in _SINCE]
    if newer:
        needs = ", ".join(f"{name} needs Linux {_SINCE[name]}" for name in newer)
        release = os.uname().release
        return f"{reason}: the kernel refused {policy.mode_name} ({needs}; this is {release})"
    return (
        f"{reason}: the kernel refused {policy.mode_name} with nodes {describe(policy.nodes_text)}"
    )


def _read_list(path: str) -> set[int] | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return _parse_or_none(text)


def _status_list(path: str, key: str) -> set[int] | None:
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(":")
                if name == key:
                    return _parse_or_none(value.strip())
    except OSError:
        pass
    return None


def _parse_or_none(text: str) -> set[int] | None:
    try:
        return parse_id_list(text, "", limit=1 << 20, what="node")
    except ConfigError:
        return None


def _show(nodes: set[int]) -> str:
    return ",".join(str(node) for node in sorted(nodes))
