"""``linux.resources`` → the file writes of cgroup v1 (a pure plan, no file access).

:func:`plan_v1` returns ``(controller, file, value, JSON path)`` tuples in the order
they must be written; :class:`corral.linux.cgroups.fs.FsManager` writes each value
with one ``write(2)`` into ``<v1_paths[controller]>/<file>``. Devices are not here
(:mod:`.devices`). Files and formats: Documentation/admin-guide/cgroup-v1/
(memory.rst, cpusets.rst, blkio-controller.rst, hugetlb.rst, net_cls.rst,
net_prio.rst, pids.rst, rdma.rst) and Documentation/scheduler/sched-bwc.rst,
sched-rt-group.rst for the cpu controller.

Ordering contract for the writer (what makes raising *and* lowering work;
:func:`corral.linux.cgroups.convert.write_plan` implements it):

- Writes go in plan order. When a write fails with ``EINVAL`` and a later tuple of
  the same controller follows, the writer sets the failed one aside and retries it
  once after that controller's other writes; any other error, or a second failure,
  is reported with the tuple's JSON path.
- The plan puts ``memory.memsw.limit_in_bytes`` before ``memory.limit_in_bytes``: the
  kernel keeps limit <= memsw at every step (EINVAL otherwise), so raising needs
  memsw first and lowering needs limit first. memsw first succeeds whenever the new
  swap is not below the current limit; when it is, the retry after the limit does
  (new limit <= new swap < current limit <= current memsw). This is runc's
  "compare with the current limit" rule without reading the current limit.
- Likewise ``cpu.cfs_burst_us`` (must stay <= quota) comes before the period and
  quota, ``cpu.rt_period_us`` before ``cpu.rt_runtime_us`` (runtime <= period), and
  ``cpu.shares`` before ``cpu.idle`` (shares cannot change while idle is 1).

``files``, when the caller passes it, is the set of file names in the container's
v1 controller directories (after they are created). It picks between variants
(CFQ's ``blkio.weight`` or BFQ's ``blkio.bfq.weight``, hugetlb ``.rsvd`` reservation
files, swap accounting) and turns a missing file into a ConfigError naming the
field. Without it the plan is for the common case (CFQ names, swap accounting on,
no reservation files) and a missing file is the writer's ENOENT.
"""

from __future__ import annotations

from corral.errors import ConfigError
from corral.linux.cgroups import convert
from corral.linux.cgroups.convert import join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection
    from typing import Any

Write = tuple[str, str, str, str]  # (controller, file, value, JSON path)

# The v1 controllers plan_v1 can write to, in its order (runc's, with cpuset first so
# that cpus/mems are there before any task joins).
CONTROLLERS = ("cpuset", "memory", "cpu", "pids", "blkio", "hugetlb", "net_cls", "net_prio", "rdma")

_THROTTLE_FILES = {
    "throttleReadBpsDevice": "blkio.throttle.read_bps_device",
    "throttleWriteBpsDevice": "blkio.throttle.write_bps_device",
    "throttleReadIOPSDevice": "blkio.throttle.read_iops_device",
    "throttleWriteIOPSDevice": "blkio.throttle.write_iops_device",
}

_MEMSW = "memory.memsw.limit_in_bytes"


def plan_v1(
    resources: dict[str, Any],
    *,
    where: str = "linux.resources",
    files: Collection[str] | None = None,
    source: str = "config.json",
) -> list[Write]:
    """The ordered writes for ``resources`` on cgroup v1; ConfigError names a bad field."""
    if not isinstance(resources, dict):
        raise ConfigError(where, "must be an object", source=source)
    unified = convert.read_unified(resources, where, source)
    if unified:
        raise ConfigError(
            join(where, "unified"),
            "needs cgroup v2, and this host's controllers are on cgroup v1",
            source=source,
        )
    plan: list[Write] = []
    cpu = convert.read_cpu(resources, where, source)
    for key in ("cpus", "mems"):
        if key in cpu:
            plan.append(("cpuset", f"cpuset.{key}", cpu[key], join(where, f"cpu.{key}")))
    plan += _memory(resources, where, files, source)
    plan += _cpu(cpu, where)
    limit = convert.read_pids(resources, where, source)
    if limit is not None:
        value = "max" if limit == -1 else str(limit)
        plan.append(("pids", "pids.max", value, join(where, "pids.limit")))
    plan += _block_io(resources, where, files, source)
    for size, limit, path in convert.read_hugepages(resources, where, source):
        plan.append(("hugetlb", f"hugetlb.{size}.limit_in_bytes", str(limit), path))
        # Reservation accounting (Linux 5.7), when the kernel has it: config-linux.md
        # prefers it; runc writes both.
        rsvd = f"hugetlb.{size}.rsvd.limit_in_bytes"
        if files is not None and rsvd in files:
            plan.append(("hugetlb", rsvd, str(limit), path))
    network = convert.read_network(resources, where, source)
    if "classID" in network:
        plan.append(
            ("net_cls", "net_cls.classid", str(network["classID"]), join(where, "network.classID"))
        )
    for name, priority, path in network.get("priorities", []):
        plan.append(("net_prio", "net_prio.ifpriomap", f"{name} {priority}", path))
    for _device, line, path in convert.read_rdma(resources, where, source):
        plan.append(("rdma", "rdma.max", line, path))
    if files is not None:
        _check_files(plan, files, source)
    return plan


def _memory(
    resources: dict[str, Any], where: str, files: Collection[str] | None, source: str
) -> list[Write]:
    memory = convert.read_memory(resources, where, source)
    path = join(where, "memory")
    plan: list[Write] = []
    limit, swap = memory.get("limit"), memory.get("swap")
    swap_path = join(path, "swap")
    if swap is None and limit == -1:
        # Unlimited memory with no word on swap: memsw unlimited too, or a memsw
        # limit left from before would keep the memory limit (runc does the same).
        swap, swap_path = -1, join(path, "limit")
    if swap is not None and files is not None and _MEMSW not in files:
        if swap != -1:
            raise ConfigError(
                swap_path,
                "swap accounting is off in this kernel (no memory.memsw.limit_in_bytes; "
                "boot with swapaccount=1)",
                source=source,
            )
        swap = None  # nothing limits swap without accounting: -1 holds already
    if swap is not None:
        plan.append(("memory", _MEMSW, str(swap), swap_path))
    if limit is not None:
        plan.append(("memory", "memory.limit_in_bytes", str(limit), join(path, "limit")))
    for key, name in (
        ("reservation", "memory.soft_limit_in_bytes"),
        ("kernelTCP", "memory.kmem.tcp.limit_in_bytes"),
        ("swappiness", "memory.swappiness"),
    ):
        if key in memory:
            plan.append(("memory", name, str(memory[key]), join(path, key)))
    for key, name in (
        ("disableOOMKiller", "memory.oom_control"),
        ("useHierarchy", "memory.use_hierarchy"),
    ):
        if key in memory:
            plan.append(("memory", name, "1" if memory[key] else "0", join(path, key)))
    return plan


def _cpu(cpu: dict[str, Any], where: str) -> list[Write]:
    path = join(where, "cpu")
    plan: list[Write] = []
    for key, name in (
        ("shares", "cpu.shares"),
        ("burst", "cpu.cfs_burst_us"),
        ("period", "cpu.cfs_period_us"),
        ("quota", "cpu.cfs_quota_us"),
        ("realtimePeriod", "cpu.rt_period_us"),
        ("realtimeRuntime", "cpu.rt_runtime_us"),
        ("idle", "cpu.idle"),
    ):
        if key in cpu:
            plan.append(("cpu", name, str(cpu[key]), join(path, key)))
    return plan


def _block_io(
    resources: dict[str, Any], where: str, files: Collection[str] | None, source: str
) -> list[Write]:
    block = convert.read_block_io(resources, where, source)
    # CFQ (gone since Linux 5.0) had blkio.weight and leaf weights; BFQ has
    # blkio.bfq.weight and no leaf weight (Documentation/block/bfq-iosched.rst).
    bfq = files is not None and "blkio.weight" not in files and "blkio.bfq.weight" in files
    weight_file = "blkio.bfq.weight" if bfq else "blkio.weight"
    plan: list[Write] = []
    if "weight" in block:
        plan.append(("blkio", weight_file, str(block["weight"]), join(where, "blockIO.weight")))
    if "leafWeight" in block:
        path = join(where, "blockIO.leafWeight")
        if bfq:
            raise ConfigError(path, "the BFQ I/O scheduler has no leaf weight", source=source)
        plan.append(("blkio", "blkio.leaf_weight", str(block["leafWeight"]), path))
    for device in block.get("weightDevice", []):
        for key, name in (
            ("weight", f"{weight_file}_device"),
            ("leafWeight", "blkio.leaf_weight_device"),
        ):
            if key not in device.values:
                continue
            if bfq and key == "leafWeight":
                raise ConfigError(
                    join(device.path, key),
                    "the BFQ I/O scheduler has no leaf weight",
                    source=source,
                )
            line = f"{device.number} {device.values[key]}"
            plan.append(("blkio", name, line, join(device.path, key)))
    for key, name in _THROTTLE_FILES.items():
        for device in block.get(key, []):
            # A rate of 0 removes the device's rule (blkio-controller.rst).
            line = f"{device.number} {device.values['rate']}"
            plan.append(("blkio", name, line, join(device.path, "rate")))
    return plan


def _check_files(plan: list[Write], files: Collection[str], source: str) -> None:
    for controller, name, _value, path in plan:
        if name in files:
            continue
        if name.startswith("blkio.") and "weight" in name:
            reason = "the block devices' I/O scheduler offers no weights (neither CFQ nor BFQ)"
        elif name.startswith("hugetlb."):
            reason = "this host has no huge pages of that size, or no hugetlb controller"
        else:
            reason = f"the {controller} controller is not mounted, or the kernel lacks the file"
        raise ConfigError(path, f"no {name} in the container's cgroup: {reason}", source=source)
