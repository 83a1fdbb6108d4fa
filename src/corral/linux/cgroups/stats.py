"""A container's resource usage, read from its cgroup, in the layout of runc's ``events``.

``read_stats(manager)`` returns the ``data`` of the ``{"type": "stats", ...}`` event that
``corral events`` prints: the field names, nesting and units of runc's ``types/events.go``
(``cpu``, ``cpuset``, ``memory``, ``pids``, ``blkio``, ``hugetlb``, ``intel_rdt``,
``network_interfaces``), so that containerd's go-runc decodes it unchanged.

Each controller has a small reader taking the cgroup directory and returning its part
of the layout, so each is tested against a fake tree. On a v1 or hybrid host the v1
controllers are read (hybrid is v1 for resource control: runc does the same); a
controller that v1 lacks and the cgroup2 tree offers (``hugetlb`` on this kind of
hybrid host) is read from the unified directory. On a v2 host everything comes from
the one unified directory.

Go's ``encoding/json`` drops a field tagged ``omitempty`` when it is 0, "" or an empty
list/map, but never a nested struct; the builders below add each optional key only
when it has a value, and always add the others, in the order Go encodes the struct.
Values are unsigned 64-bit as in Go: a negative kernel value becomes 0 and "max"
becomes 2**64-1 (what runc reports for an unlimited v2 limit).

Units (kernel Documentation/admin-guide/cgroup-v1/*.rst and cgroup-v2.rst): CPU times
are nanoseconds (v2's ``*_usec`` are multiplied by 1000; v1's ``cpuacct.stat`` is in
USER_HZ ticks), memory in bytes.
"""

from __future__ import annotations

import os

from corral.errors import CorralError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.linux.cgroups.manager import CgroupManager

MAX_UINT64 = 2**64 - 1
HUGEPAGES_DIR = "/sys/kernel/mm/hugepages"

# The eight blkio lists of types/events.go, in the order Go encodes them.
BLKIO_KEYS = (
    "ioServiceBytesRecursive",
    "ioServicedRecursive",
    "ioQueueRecursive",
    "ioServiceTimeRecursive",
    "ioWaitTimeRecursive",
    "ioMergedRecursive",
    "ioTimeRecursive",
    "sectorsRecursive",
)


def read_stats(manager: CgroupManager) -> dict[str, Any]:
    """The stats of the container whose cgroup ``manager`` describes (runc's layout)."""
    v1 = manager.v1_paths
    unified = manager.unified_path
    if not v1 and unified:
        return read_v2_stats(unified)
    return read_v1_stats(v1, unified)


def read_v1_stats(paths: dict[str, str], unified: str | None = None) -> dict[str, Any]:
    """Stats from v1 controller directories (``controller -> dir``); on a hybrid host,
    what v1 lacks comes from ``unified`` when that cgroup2 directory has it."""
    usage = cpuacct_usage(paths["cpuacct"]) if "cpuacct" in paths else _cpu_usage()
    throttling = v1_cpu_throttling(paths["cpu"]) if "cpu" in paths else {}
    if "cpuacct" not in paths and unified:
        usage, v2_throttling = v2_cpu(unified)
        throttling = throttling or v2_throttling
    if "memory" in paths:
        memory = v1_memory(paths["memory"])
    elif unified and _exists(unified, "memory.stat"):
        memory = v2_memory(unified)
    else:
        memory = _memory()
    if "pids" in paths:
        pids = read_pids(paths["pids"])
    elif unified:
        pids = read_pids(unified)
    else:
        pids = {}
    if "blkio" in paths:
        blkio = v1_blkio(paths["blkio"])
    elif unified:
        blkio = v2_io(unified)
    else:
        blkio = {}
    sizes = hugepage_sizes()
    if "hugetlb" in paths:
        hugetlb = v1_hugetlb(paths["hugetlb"], sizes)
    elif unified:
        hugetlb = v2_hugetlb(unified, sizes)
    else:
        hugetlb = {}
    cpuset = v1_cpuset(paths["cpuset"]) if "cpuset" in paths else _cpuset()
    return _layout(usage, throttling, cpuset, memory, pids, blkio, hugetlb)


def read_v2_stats(directory: str) -> dict[str, Any]:
    """Stats from one cgroup2 directory."""
    usage, throttling = v2_cpu(directory)
    memory = v2_memory(directory) if _exists(directory, "memory.stat") else _memory()
    return _layout(
        usage,
        throttling,
        _cpuset(),  # runc reads no cpuset stats on v2; the struct is still encoded
        memory,
        read_pids(directory),
        v2_io(directory),
        v2_hugetlb(directory, hugepage_sizes()),
    )


def _layout(
    usage: dict[str, Any],
    throttling: dict[str, int],
    cpuset: dict[str, Any],
    memory: dict[str, Any],
    pids: dict[str, int],
    blkio: dict[str, Any],
    hugetlb: dict[str, Any],
) -> dict[str, Any]:
    return {
        "cpu": {"usage": usage, "throttling": throttling},
        "cpuset": cpuset,
        "memory": memory,
        "pids": pids,
        "blkio": blkio,
        "hugetlb": hugetlb,
        # Intel RDT monitoring is not read (runc fills it only with resctrl monitoring);
        # the struct is still encoded, as an empty object.
        "intel_rdt": {},
        "network_interfaces": None,
    }


# -- parsing helpers ----------------------------------------------------------------------


def _read(directory: str, name: str) -> str | None:
    """The file's text, or None when the kernel does not offer it."""
    try:
        with open(f"{directory}/{name}") as file:
            return file.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _exists(directory: str, name: str) -> bool:
    return os.path.exists(f"{directory}/{name}")


def _uint(text: str, where: str) -> int:
    """A Go uint64 the way runc parses cgroup values: "max" is 2**64-1, negative is 0."""
    text = text.strip()
    if text == "max":
        return MAX_UINT64
    try:
        value = int(text)
    except ValueError:
        raise CorralError(f"unable to parse {where}: {text!r} is not a number") from None
    return min(max(value, 0), MAX_UINT64)


def _read_uint(directory: str, name: str) -> int | None:
    text = _read(directory, name)
    return None if text is None else _uint(text, f"{directory}/{name}")


def _key_values(directory: str, name: str) -> dict[str, int]:
    """A flat-keyed file ("key value" per line: cpu.stat, memory.stat, memory.events)."""
    text = _read(directory, name)
    result: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if key:
            result[key] = _uint(value, f"{directory}/{name}")
    return result


def _nonzero(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Go's ``omitempty``: keep only the pairs whose value is not 0 or empty."""
    return {key: value for key, value in pairs if value}


# -- cpu ----------------------------------------------------------------------------------


def _cpu_usage(
    total: int = 0,
    percpu: list[int] | None = None,
    percpu_kernel: list[int] | None = None,
    percpu_user: list[int] | None = None,
    kernel: int = 0,
    user: int = 0,
) -> dict[str, Any]:
    usage = _nonzero(
        [
            ("total", total),
            ("percpu", percpu),
            ("percpu_kernel", percpu_kernel),
            ("percpu_user", percpu_user),
        ]
    )
    usage["kernel"] = kernel
    usage["user"] = user
    return usage


def _throttling(periods: int, throttled_periods: int, throttled_ns: int) -> dict[str, int]:
    return _nonzero(
        [
            ("periods", periods),
            ("throttledPeriods", throttled_periods),
            ("throttledTime", throttled_ns),
        ]
    )


def v1_cpu_throttling(directory: str) -> dict[str, int]:
    """CFS throttling from v1 ``cpu.stat`` (``throttled_time`` is already nanoseconds)."""
    stat = _key_values(directory, "cpu.stat")
    return _throttling(
        stat.get("nr_periods", 0), stat.get("nr_throttled", 0), stat.get("throttled_time", 0)
    )


def cpuacct_usage(directory: str) -> dict[str, Any]:
    """v1 ``cpuacct``: total and per-CPU nanoseconds, user/system split."""
    where = f"{directory}/cpuacct.stat"
    user = system = 0
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for line in (_read(directory, "cpuacct.stat") or "").splitlines():
        key, _, value = line.partition(" ")
        # cpuacct.stat counts USER_HZ ticks (cgroup-v1/cpuacct.rst).
        if key == "user":
            user = _uint(value, where) * 1_000_000_000 // ticks
        elif key == "system":
            system = _uint(value, where) * 1_000_000_000 // ticks
    percpu_text = _read(directory, "cpuacct.usage_percpu") or ""
    percpu = [_uint(item, f"{directory}/cpuacct.usage_percpu") for item in percpu_text.split()]
    kernel_list: list[int] = []
    user_list: list[int] = []
    # cpuacct.usage_all: a "cpu user system" header, then one line per CPU.
    for line in (_read(directory, "cpuacct.usage_all") or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) == 3:
            user_list.append(_uint(fields[1], f"{directory}/cpuacct.usage_all"))
            kernel_list.append(_uint(fields[2], f"{directory}/cpuacct.usage_all"))
    return _cpu_usage(
        _read_uint(directory, "cpuacct.usage") or 0,
        percpu,
        kernel_list,
        user_list,
        kernel=system,
        user=user,
    )


def v2_cpu(directory: str) -> tuple[dict[str, Any], dict[str, int]]:
    """v2 ``cpu.stat``: usage (microseconds there) and, with the cpu controller, throttling."""
    stat = _key_values(directory, "cpu.stat")
    usage = _cpu_usage(
        stat.get("usage_usec", 0) * 1000,
        kernel=stat.get("system_usec", 0) * 1000,
        user=stat.get("user_usec", 0) * 1000,
    )
    throttling = _throttling(
        stat.get("nr_periods", 0),
        stat.get("nr_throttled", 0),
        stat.get("throttled_usec", 0) * 1000,
    )
    return usage, throttling


# -- cpuset -------------------------------------------------------------------------------

_CPUSET_FLAGS = (
    ("cpu_exclusive", "cpuset.cpu_exclusive"),
    ("mem_hardwall", "cpuset.mem_hardwall"),
    ("mem_exclusive", "cpuset.mem_exclusive"),
    ("memory_migrate", "cpuset.memory_migrate"),
    ("memory_spread_page", "cpuset.memory_spread_page"),
    ("memory_spread_slab", "cpuset.memory_spread_slab"),
    ("memory_pressure", "cpuset.memory_pressure"),
    ("sched_load_balance", "cpuset.sched_load_balance"),
)


def _cpuset(
    cpus: list[int] | None = None,
    mems: list[int] | None = None,
    flags: dict[str, int] | None = None,
    relax_domain_level: int = 0,
) -> dict[str, Any]:
    flags = flags or {}
    result: dict[str, Any] = {}
    if cpus:
        result["cpus"] = cpus
    result["cpu_exclusive"] = flags.get("cpu_exclusive", 0)
    if mems:
        result["mems"] = mems
    for key, _ in _CPUSET_FLAGS[1:]:
        result[key] = flags.get(key, 0)
    result["sched_relax_domain_level"] = relax_domain_level
    return result


def parse_cpu_list(text: str, where: str = "cpu list") -> list[int]:
    """A kernel list format ("0-3,8,10-11") as the numbers it names."""
    numbers: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            raise CorralError(f"unable to parse {where}: {part!r}") from None
        if first > last:
            raise CorralError(f"unable to parse {where}: {part!r} (start above end)")
        numbers.extend(range(first, last + 1))
    return numbers


def v1_cpuset(directory: str) -> dict[str, Any]:
    """v1 ``cpuset``: the CPUs and memory nodes, and the flags."""
    cpus = parse_cpu_list(_read(directory, "cpuset.cpus") or "", f"{directory}/cpuset.cpus")
    mems = parse_cpu_list(_read(directory, "cpuset.mems") or "", f"{directory}/cpuset.mems")
    flags = {key: _read_uint(directory, name) or 0 for key, name in _CPUSET_FLAGS}
    level_text = (_read(directory, "cpuset.sched_relax_domain_level") or "0").strip()
    try:
        level = int(level_text)  # signed: -1 is "the system default"
    except ValueError:
        raise CorralError(
            f"unable to parse {directory}/cpuset.sched_relax_domain_level: {level_text!r}"
        ) from None
    return _cpuset(cpus, mems, flags, level)


# -- memory -------------------------------------------------------------------------------


def _memory_entry(
    limit: int = 0, usage: int = 0, max_usage: int = 0, failcnt: int = 0
) -> dict[str, int]:
    entry = {"limit": limit}
    entry.update(_nonzero([("usage", usage), ("max", max_usage)]))
    entry["failcnt"] = failcnt
    return entry


def _memory(
    cache: int = 0,
    usage: dict[str, int] | None = None,
    swap: dict[str, int] | None = None,
    kernel: dict[str, int] | None = None,
    kernel_tcp: dict[str, int] | None = None,
    raw: dict[str, int] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = _nonzero([("cache", cache)])
    result["usage"] = usage or _memory_entry()
    result["swap"] = swap or _memory_entry()
    result["kernel"] = kernel or _memory_entry()
    result["kernelTCP"] = kernel_tcp or _memory_entry()
    if raw:
        result["raw"] = dict(sorted(raw.items()))  # Go encodes a map's keys sorted
    return result


def _v1_memory_entry(directory: str, prefix: str) -> dict[str, int]:
    """``<prefix>.usage_in_bytes`` and friends; zeros when the kernel lacks the counter
    (``memsw`` needs swap accounting, ``kmem`` is gone from recent kernels)."""
    usage = _read_uint(directory, f"{prefix}.usage_in_bytes")
    if usage is None:
        return _memory_entry()
    return _memory_entry(
        limit=_read_uint(directory, f"{prefix}.limit_in_bytes") or 0,
        usage=usage,
        max_usage=_read_uint(directory, f"{prefix}.max_usage_in_bytes") or 0,
        failcnt=_read_uint(directory, f"{prefix}.failcnt") or 0,
    )


def v1_memory(directory: str) -> dict[str, Any]:
    """v1 ``memory``: usage, memory+swap, kernel and kernel TCP counters, ``memory.stat``."""
    raw = _key_values(directory, "memory.stat")
    return _memory(
        cache=raw.get("cache", 0),
        usage=_v1_memory_entry(directory, "memory"),
        swap=_v1_memory_entry(directory, "memory.memsw"),
        kernel=_v1_memory_entry(directory, "memory.kmem"),
        kernel_tcp=_v1_memory_entry(directory, "memory.kmem.tcp"),
        raw=raw,
    )


def v2_memory(directory: str) -> dict[str, Any]:
    """v2 ``memory``: ``memory.current/max/peak``; ``swap`` is memory + swap, as in v1
    (runc reports it that way so one client reads both)."""
    raw = _key_values(directory, "memory.stat")
    events = _key_values(directory, "memory.events")
    usage = _read_uint(directory, "memory.current") or 0
    limit = _read_uint(directory, "memory.max")
    limit = MAX_UINT64 if limit is None else limit
    swap_usage = _read_uint(directory, "memory.swap.current")
    swap: dict[str, int] = _memory_entry()
    if swap_usage is not None:
        swap_limit = _read_uint(directory, "memory.swap.max")
        swap_limit = MAX_UINT64 if swap_limit is None else swap_limit
        # Saturate instead of wrapping around as Go's uint64 addition would.
        both = min(swap_limit + limit, MAX_UINT64)
        swap = _memory_entry(limit=both, usage=swap_usage + usage)
    return _memory(
        cache=raw.get("file", 0),
        usage=_memory_entry(
            limit=limit,
            usage=usage,
            max_usage=_read_uint(directory, "memory.peak") or 0,
            # v2 has no failcnt file; memory.events "max" counts the times usage hit
            # memory.max, which is what v1's failcnt counts.
            failcnt=events.get("max", 0),
        ),
        swap=swap,
        raw=raw,
    )


# -- pids ---------------------------------------------------------------------------------


def read_pids(directory: str) -> dict[str, int]:
    """``pids.current`` and ``pids.max`` (no limit is reported as no key, like runc); on
    v2 without the pids controller, the number of processes in ``cgroup.procs``."""
    current = _read_uint(directory, "pids.current")
    if current is None:
        procs = _read(directory, "cgroup.procs")
        return _nonzero([("current", len((procs or "").split()))])
    limit = _read_uint(directory, "pids.max") or 0
    return _nonzero([("current", current), ("limit", 0 if limit == MAX_UINT64 else limit)])


# -- block IO -----------------------------------------------------------------------------


def _blkio_entry(major: int, minor: int, op: str, value: int) -> dict[str, Any]:
    return _nonzero([("major", major), ("minor", minor), ("op", op), ("value", value)])


def parse_blkio_file(directory: str, name: str) -> list[dict[str, Any]] | None:
    """One v1 blkio file ("MAJ:MIN [Op] value" lines, a "Total" line); None when the
    file is missing or has no device line."""
    text = _read(directory, name)
    if text is None:
        return None
    where = f"{directory}/{name}"
    entries = []
    for line in text.splitlines():
        fields = line.replace(":", " ").split()
        if not fields or fields[0] == "Total":
            continue
        if len(fields) not in (3, 4):
            raise CorralError(f"unable to parse {where}: malformed line {line!r}")
        op = fields[2] if len(fields) == 4 else ""
        entries.append(
            _blkio_entry(
                _uint(fields[0], where), _uint(fields[1], where), op, _uint(fields[-1], where)
            )
        )
    return entries or None


# Where each list comes from, best source first (cgroup-v1/blkio-controller.rst): the
# BFQ scheduler's files (the debug set when CONFIG_BFQ_CGROUP_DEBUG), CFQ's (gone since
# Linux 5.0), then the throttling layer's, which every kernel has.
_BLKIO_SOURCES: tuple[tuple[tuple[str, str], ...], ...] = (
    (
        ("sectorsRecursive", "blkio.bfq.sectors_recursive"),
        ("ioServiceTimeRecursive", "blkio.bfq.io_service_time_recursive"),
        ("ioWaitTimeRecursive", "blkio.bfq.io_wait_time_recursive"),
        ("ioMergedRecursive", "blkio.bfq.io_merged_recursive"),
        ("ioQueueRecursive", "blkio.bfq.io_queued_recursive"),
        ("ioTimeRecursive", "blkio.bfq.time_recursive"),
        ("ioServicedRecursive", "blkio.bfq.io_serviced_recursive"),
        ("ioServiceBytesRecursive", "blkio.bfq.io_service_bytes_recursive"),
    ),
    (
        ("ioServicedRecursive", "blkio.bfq.io_serviced_recursive"),
        ("ioServiceBytesRecursive", "blkio.bfq.io_service_bytes_recursive"),
    ),
    (
        ("sectorsRecursive", "blkio.sectors_recursive"),
        ("ioServiceTimeRecursive", "blkio.io_service_time_recursive"),
        ("ioWaitTimeRecursive", "blkio.io_wait_time_recursive"),
        ("ioMergedRecursive", "blkio.io_merged_recursive"),
        ("ioQueueRecursive", "blkio.io_queued_recursive"),
        ("ioTimeRecursive", "blkio.time_recursive"),
        ("ioServicedRecursive", "blkio.io_serviced_recursive"),
        ("ioServiceBytesRecursive", "blkio.io_service_bytes_recursive"),
    ),
    (
        ("ioServicedRecursive", "blkio.throttle.io_serviced_recursive"),
        ("ioServiceBytesRecursive", "blkio.throttle.io_service_bytes_recursive"),
    ),
    (
        ("ioServicedRecursive", "blkio.throttle.io_serviced"),
        ("ioServiceBytesRecursive", "blkio.throttle.io_service_bytes"),
    ),
)


def v1_blkio(directory: str) -> dict[str, Any]:
    """v1 ``blkio``: the first source set whose first file has device lines."""
    found: dict[str, list[dict[str, Any]]] = {}
    for source in _BLKIO_SOURCES:
        first_key, first_name = source[0]
        entries = parse_blkio_file(directory, first_name)
        if entries is None:
            continue  # this scheduler is not in use: try the next source
        found[first_key] = entries
        for key, name in source[1:]:
            entries = parse_blkio_file(directory, name)
            if entries is None:
                break
            found[key] = entries
        break
    return {key: found[key] for key in BLKIO_KEYS if key in found}


_IO_STAT_FIELDS = {
    "rbytes": ("ioServiceBytesRecursive", "Read"),
    "wbytes": ("ioServiceBytesRecursive", "Write"),
    "rios": ("ioServicedRecursive", "Read"),
    "wios": ("ioServicedRecursive", "Write"),
}


def v2_io(directory: str) -> dict[str, Any]:
    """v2 ``io.stat`` ("MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..")
    mapped onto v1's byte and operation counts, as runc does (discards have no v1 name)."""
    where = f"{directory}/io.stat"
    found: dict[str, list[dict[str, Any]]] = {}
    for line in (_read(directory, "io.stat") or "").splitlines():
        device, *items = line.split()
        major, colon, minor = device.partition(":")
        if not colon or not items:
            continue
        for item in items:
            name, equals, value = item.partition("=")
            target = _IO_STAT_FIELDS.get(name)
            if target is None or not equals:
                continue
            key, op = target
            found.setdefault(key, []).append(
                _blkio_entry(_uint(major, where), _uint(minor, where), op, _uint(value, where))
            )
    return {key: found[key] for key in BLKIO_KEYS if key in found}


# -- hugetlb ------------------------------------------------------------------------------


def hugepage_sizes(directory: str | None = None) -> list[str]:
    """The hugetlb controller's size names ("2MB", "1GB") for the host's page sizes,
    from ``/sys/kernel/mm/hugepages/hugepages-<N>kB`` (mm/hugetlb_cgroup.c names them)."""
    try:
        names = os.listdir(directory or HUGEPAGES_DIR)
    except OSError:
        return []
    sizes = []
    for name in sorted(names):
        if not (name.startswith("hugepages-") and name.endswith("kB")):
            continue
        try:
            kilobytes = int(name[len("hugepages-") : -2])
        except ValueError:
            continue
        if kilobytes >= 1 << 20:
            sizes.append(f"{kilobytes >> 20}GB")
        elif kilobytes >= 1 << 10:
            sizes.append(f"{kilobytes >> 10}MB")
        else:
            sizes.append(f"{kilobytes}KB")
    return sizes


def _hugetlb_entry(usage: int, max_usage: int, failcnt: int) -> dict[str, int]:
    entry = _nonzero([("usage", usage), ("max", max_usage)])
    entry["failcnt"] = failcnt
    return entry


def v1_hugetlb(directory: str, sizes: list[str]) -> dict[str, Any]:
    """v1 ``hugetlb.<size>.usage_in_bytes``, ``max_usage_in_bytes``, ``failcnt``."""
    result = {}
    for size in sizes:
        usage = _read_uint(directory, f"hugetlb.{size}.usage_in_bytes")
        if usage is None:
            continue
        result[size] = _hugetlb_entry(
            usage,
            _read_uint(directory, f"hugetlb.{size}.max_usage_in_bytes") or 0,
            _read_uint(directory, f"hugetlb.{size}.failcnt") or 0,
        )
    return dict(sorted(result.items()))


def v2_hugetlb(directory: str, sizes: list[str]) -> dict[str, Any]:
    """v2 ``hugetlb.<size>.current`` and the ``max`` count of ``hugetlb.<size>.events``
    (allocations refused by the limit: v1's failcnt)."""
    result = {}
    for size in sizes:
        usage = _read_uint(directory, f"hugetlb.{size}.current")
        if usage is None:
            continue
        events = _key_values(directory, f"hugetlb.{size}.events")
        result[size] = _hugetlb_entry(usage, 0, events.get("max", 0))
    return dict(sorted(result.items()))


# -- network ------------------------------------------------------------------------------


def read_network_interfaces(pid: int, proc: str = "/proc") -> list[dict[str, Any]] | None:
    """The interfaces of ``pid``'s network namespace but ``lo``, from ``net/dev``
    (proc(5)), in runc's NetworkInterface layout; None when there are none (runc's
    ``null``) or the namespace is the caller's (then the counters are not the
    container's own)."""
    try:
        if os.stat(f"{proc}/{pid}/ns/net").st_ino == os.stat(f"{proc}/self/ns/net").st_ino:
            return None
        with open(f"{proc}/{pid}/net/dev") as file:
            text = file.read()
    except OSError:
        return None
    return parse_net_dev(text)


def parse_net_dev(text: str) -> list[dict[str, Any]] | None:
    """``/proc/<pid>/net/dev``: two header lines, then "name: 8 receive and 8 transmit
    counters"; bytes, packets, errs and drop of each direction are the ones runc has."""
    interfaces = []
    for line in text.splitlines()[2:]:
        name, colon, rest = line.partition(":")
        name = name.strip()
        fields = rest.split()
        if not colon or name == "lo" or len(fields) < 12:
            continue
        numbers = [_uint(field, "net/dev") for field in fields]
        interfaces.append(
            {
                "Name": name,
                "RxBytes": numbers[0],
                "RxPackets": numbers[1],
                "RxErrors": numbers[2],
                "RxDropped": numbers[3],
                "TxBytes": numbers[8],
                "TxPackets": numbers[9],
                "TxErrors": numbers[10],
                "TxDropped": numbers[11],
            }
        )
    return interfaces or None
