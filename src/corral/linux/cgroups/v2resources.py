"""``linux.resources`` → the file writes of cgroup v2 (a pure plan, no file access).

:func:`plan_v2` returns ``(file, value, JSON path)`` tuples in the order they must
be written, each one ``write(2)`` into the container's cgroup directory; devices are
not here (:mod:`.devices`, an eBPF program). File names and formats are those of
Documentation/admin-guide/cgroup-v2.rst. The v1-style fields are converted as
config-linux.md allows ("the runtime MAY attempt a conversion ... if the conversion
is not possible the runtime MUST generate an error"):

=========================  ==================================================
memory.limit               memory.max ("max" for -1)
memory.reservation         memory.low
memory.swap                memory.swap.max = swap - limit ("max" for -1)
memory.kernelTCP           refused unless -1 (v2 counts socket memory in memory.max)
memory.swappiness          refused (v2 has no per-cgroup swappiness)
memory.disableOOMKiller    refused if true (v2 cannot turn the OOM killer off)
memory.useHierarchy        refused if false (v2 is always hierarchical)
cpu.shares                 cpu.weight (:func:`convert.shares_to_weight`)
cpu.quota, cpu.period      cpu.max "$QUOTA $PERIOD" ("max", default period 100000)
cpu.burst, cpu.idle        cpu.max.burst, cpu.idle
cpu.realtime*              refused (v2 has no realtime group scheduling)
cpu.cpus, cpu.mems         cpuset.cpus, cpuset.mems
pids.limit                 pids.max
blockIO.weight             io.bfq.weight as is, or io.weight "default W'" converted
blockIO.weightDevice       the same file, "MAJ:MIN W"; leafWeight refused
blockIO.throttle*          io.max "MAJ:MIN rbps=N" (wbps, riops, wiops; 0 is "max")
hugepageLimits             hugetlb.<size>.max (and .rsvd.max when present)
network                    refused (no net_cls/net_prio on v2)
rdma                       rdma.max "DEVICE hca_handle=N hca_object=M"
unified                    written as given, last, one write per line
=========================  ==================================================

Ordering contract for the writer (:func:`corral.linux.cgroups.convert.write_plan`
implements it): writes go in plan order; when one fails with
``EINVAL`` and a later tuple of the same controller (the file's prefix) follows, it
is retried once after them. That covers ``cpu.max.burst`` (must stay <= the quota,
so it is planned before ``cpu.max``: fine when lowering, retried when raising) and
``cpu.weight`` before ``cpu.idle`` (the weight cannot change while idle is 1).

A ``unified`` key that is also written by a structured field is written after it,
so it wins, as with runc. ``files`` (the names in the container's cgroup directory,
when the caller has them) picks ``io.bfq.weight`` over ``io.weight`` as runc does,
adds the hugetlb reservation files, and turns a missing file into a ConfigError:
config-linux.md requires an error when ``unified`` names a controller that is not
there.
"""

from __future__ import annotations

from corral.errors import ConfigError
from corral.linux.cgroups import convert
from corral.linux.cgroups.convert import join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection
    from typing import Any

Write = tuple[str, str, str]  # (file, value, JSON path)

_IO_MAX_KEYS = {
    "throttleReadBpsDevice": "rbps",
    "throttleWriteBpsDevice": "wbps",
    "throttleReadIOPSDevice": "riops",
    "throttleWriteIOPSDevice": "wiops",
}

DEFAULT_PERIOD = 100000  # cgroup-v2.rst, cpu.max: 'The default is "max 100000"'


def plan_v2(
    resources: dict[str, Any],
    *,
    where: str = "linux.resources",
    files: Collection[str] | None = None,
    source: str = "config.json",
) -> list[Write]:
    """The ordered writes for ``resources`` on cgroup v2; ConfigError names a bad field."""
    if not isinstance(resources, dict):
        raise ConfigError(where, "must be an object", source=source)
    plan: list[Write] = []
    limit = convert.read_pids(resources, where, source)
    if limit is not None:
        plan.append(("pids.max", _number(limit), join(where, "pids.limit")))
    plan += _memory(resources, where, files, source)
    plan += _io(resources, where, files, source)
    cpu = convert.read_cpu(resources, where, source)
    plan += _cpu(cpu, where, source)
    for key in ("cpus", "mems"):
        if key in cpu:
            plan.append((f"cpuset.{key}", cpu[key], join(where, f"cpu.{key}")))
    for size, limit, path in convert.read_hugepages(resources, where, source):
        plan.append((f"hugetlb.{size}.max", str(limit), path))
        rsvd = f"hugetlb.{size}.rsvd.max"
        if files is not None and rsvd in files:
            plan.append((rsvd, str(limit), path))
    network = convert.read_network(resources, where, source)
    if network:
        key = "classID" if "classID" in network else "priorities"
        raise ConfigError(
            join(where, f"network.{key}"),
            "cgroup v2 has no net_cls/net_prio controller "
            "(match the cgroup in nftables or an eBPF program instead)",
            source=source,
        )
    for _device, line, path in convert.read_rdma(resources, where, source):
        plan.append(("rdma.max", line, path))
    for key, value, path in convert.read_unified(resources, where, source):
        # Files such as io.max take one line per write(2) (runc's WriteFileByLine).
        lines = [line for line in value.split("\n") if line] or [value]
        plan += [(key, line, path) for line in lines]
    if files is not None:
        _check_files(plan, files, source)
    return plan


def controllers_needed(
    resources: dict[str, Any], *, where: str = "linux.resources", source: str = "config.json"
) -> set[str]:
    """The v2 controllers to enable in the ancestors' ``cgroup.subtree_control``.

    Exactly those whose files :func:`plan_v2` writes (a file's controller is its name
    up to the first dot); ``cgroup.*`` files belong to the core, not a controller.
    """
    names = {
        name.partition(".")[0]
        for name, _value, _path in plan_v2(resources, where=where, source=source)
    }
    names.discard("cgroup")
    return names


def _number(value: int) -> str:
    return "max" if value == -1 else str(value)


def _memory(
    resources: dict[str, Any], where: str, files: Collection[str] | None, source: str
) -> list[Write]:
    memory = convert.read_memory(resources, where, source)
    path = join(where, "memory")
    if memory.get("kernelTCP", -1) != -1:
        raise ConfigError(
            join(path, "kernelTCP"),
            "cgroup v2 has no TCP buffer limit (socket memory counts in memory.max)",
            source=source,
        )
    if "swappiness" in memory:
        raise ConfigError(
            join(path, "swappiness"), "cgroup v2 has no per-cgroup swappiness", source=source
        )
    if memory.get("disableOOMKiller"):
        raise ConfigError(
            join(path, "disableOOMKiller"),
            "cgroup v2 cannot turn the OOM killer off",
            source=source,
        )
    if memory.get("useHierarchy") is False:
        raise ConfigError(
            join(path, "useHierarchy"), "cgroup v2 is always hierarchical", source=source
        )
    plan: list[Write] = []
    limit = memory.get("limit")
    swap_path = join(path, "swap" if "swap" in memory else "limit")
    swap = convert.swap_to_v2(memory.get("swap"), limit, join(path, "swap"), source=source)
    if swap is not None and files is not None and "memory.swap.max" not in files:
        if swap != -1:
            raise ConfigError(
                swap_path,
                "swap accounting is off in this kernel (no memory.swap.max)",
                source=source,
            )
        swap = None  # unlimited swap is what a kernel without accounting does
    if swap is not None:
        plan.append(("memory.swap.max", _number(swap), swap_path))
    if limit is not None:
        plan.append(("memory.max", _number(limit), join(path, "limit")))
    if "reservation" in memory:
        plan.append(("memory.low", _number(memory["reservation"]), join(path, "reservation")))
    return plan


def _cpu(cpu: dict[str, Any], where: str, source: str) -> list[Write]:
    path = join(where, "cpu")
    for key in ("realtimePeriod", "realtimeRuntime"):
        if key in cpu:
            raise ConfigError(
                join(path, key),
                "cgroup v2 has no realtime group scheduling (cpu.rt_* are v1 only)",
                source=source,
            )
    plan: list[Write] = []
    if "shares" in cpu:
        weight = convert.shares_to_weight(cpu["shares"])
        plan.append(("cpu.weight", str(weight), join(path, "shares")))
    if "burst" in cpu:
        plan.append(("cpu.max.burst", str(cpu["burst"]), join(path, "burst")))
    if "quota" in cpu or "period" in cpu:
        quota = cpu.get("quota", -1)
        value = f"{_number(quota)} {cpu.get('period', DEFAULT_PERIOD)}"
        plan.append(("cpu.max", value, join(path, "quota" if "quota" in cpu else "period")))
    if "idle" in cpu:
        plan.append(("cpu.idle", str(cpu["idle"]), join(path, "idle")))
    return plan


def _io(
    resources: dict[str, Any], where: str, files: Collection[str] | None, source: str
) -> list[Write]:
    block = convert.read_block_io(resources, where, source)
    path = join(where, "blockIO")
    if "leafWeight" in block:
        raise ConfigError(join(path, "leafWeight"), "cgroup v2 has no leaf weight", source=source)
    # runc's choice: BFQ's own weight file when the kernel has it (same 1..1000 scale
    # as v1), else io.weight (io.cost, 1..10000) with the weight converted.
    bfq = files is not None and "io.bfq.weight" in files
    plan: list[Write] = []
    if "weight" in block:
        weight = block["weight"]
        if bfq:
            plan.append(("io.bfq.weight", str(weight), join(path, "weight")))
        else:
            value = f"default {convert.blkio_weight_to_io_weight(weight)}"
            plan.append(("io.weight", value, join(path, "weight")))
    for device in block.get("weightDevice", []):
        if "leafWeight" in device.values:
            raise ConfigError(
                join(device.path, "leafWeight"), "cgroup v2 has no leaf weight", source=source
            )
        if "weight" not in device.values:
            continue
        weight = device.values["weight"]
        if bfq:
            plan.append(("io.bfq.weight", f"{device.number} {weight}", join(device.path, "weight")))
        else:
            value = f"{device.number} {convert.blkio_weight_to_io_weight(weight)}"
            plan.append(("io.weight", value, join(device.path, "weight")))
    for key, name in _IO_MAX_KEYS.items():
        for device in block.get(key, []):
            # v1 takes 0 as "remove the rule"; io.max refuses 0 (ERANGE) and says
            # "max" for no limit.
            rate = device.values["rate"] or "max"
            plan.append(("io.max", f"{device.number} {name}={rate}", join(device.path, "rate")))
    return plan


def _check_files(plan: list[Write], files: Collection[str], source: str) -> None:
    for name, _value, path in plan:
        if name in files:
            continue
        controller = name.partition(".")[0]
        if name.startswith("hugetlb."):
            reason = "this host has no huge pages of that size, or no hugetlb controller"
        elif name in ("io.weight", "io.bfq.weight"):
            reason = "no I/O weight on this kernel (neither io.cost nor BFQ)"
        else:
            reason = f"the {controller} controller is not enabled, or the kernel lacks the file"
        raise ConfigError(path, f"no {name} in the container's cgroup: {reason}", source=source)
