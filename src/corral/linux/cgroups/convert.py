"""``linux.resources`` read and checked once, and the v1 → v2 value conversions.

The planners (:mod:`.v1resources`, :mod:`.v2resources`) never look at the raw JSON
themselves: each ``read_*`` function here returns one section as checked Python
values, or raises :class:`ConfigError` naming the JSON path of the bad field. Both
planners thus refuse the same configs with the same messages, and ``corral update``
can check a ``--resources`` document before touching the container
(:func:`check_resources`).

What "unset" means, field by field (config-linux.md, "Control groups"):

- A missing field or ``null`` is unset: its cgroup file is not written.
- ``0`` is also unset where runc's Go structs (non-pointer fields) make it so and the
  kernel has no use for it: memory ``limit``/``reservation``/``swap``/``kernel``/
  ``kernelTCP``, cpu ``shares``/``quota``/``period``/``realtimeRuntime``/
  ``realtimePeriod``, blockIO ``weight``/``leafWeight``, network ``classID``; ``""``
  for ``cpus``/``mems``. Tools that fill every field with 0 (old Docker, podman) then
  work as they do with runc.
- ``0`` is a value for ``pids.limit`` (config-linux.md: "0 is a valid limit value ...
  and SHOULD be treated as such"), ``cpu.burst``, ``cpu.idle``, ``swappiness``,
  throttle rates and hugepage limits.
- ``-1`` means "no limit" where the spec says so (memory values, ``quota``,
  ``realtimeRuntime``, ``pids.limit``).

The conversions follow the kernel's ranges: cgroup v1 ``cpu.shares`` is 2..262144
(kernel/sched/core.c clamps it), v2 ``cpu.weight`` is 1..10000 with 100 the default
(Documentation/admin-guide/cgroup-v2.rst, "Weights"); v1 ``blkio.weight`` is 10..1000
(CFQ; BFQ takes 1..1000) and v2 ``io.weight`` 1..10000.
"""

from __future__ import annotations

import math

from corral.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TypeVar

    T = TypeVar("T", bound=tuple[str, ...])

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
UINT32_MAX = (1 << 32) - 1
UINT16_MAX = (1 << 16) - 1

SHARES_MIN = 2
SHARES_MAX = 262144  # 1 << 18: kernel/sched/core.c MAX_SHARES


def shares_to_weight(shares: int) -> int:
    """v1 ``cpu.shares`` → v2 ``cpu.weight``.

    The curve current runc and crun use: a quadratic in log2(shares) through the three
    points (2 → 1), (1024 → 100), (262144 → 10000), so the v1 default stays the v2
    default. (runc 1.1's straight line sent 1024 to 39, which ranked every container
    with default shares below the host's services.)
    """
    if shares <= SHARES_MIN:
        return 1
    if shares >= SHARES_MAX:
        return 10000
    log = math.log2(shares)
    exponent = (log * log + 125 * log) / 612.0 - 7.0 / 34.0
    return math.ceil(math.pow(10, exponent))


def blkio_weight_to_io_weight(weight: int) -> int:
    """v1 ``blkio.weight`` (10..1000) → v2 ``io.weight`` (1..10000), linearly (runc's map)."""
    weight = min(max(weight, 10), 1000)
    return 1 + (weight - 10) * 9999 // 990


def swap_to_v2(swap: int | None, limit: int | None, path: str, *, source: str) -> int | None:
    """``memory.swap`` (memory + swap, v1's meaning) → v2 ``memory.swap.max`` (swap alone).

    Returns bytes, -1 for "max", or None for "do not write". A ``limit`` of -1 with no
    ``swap`` means both unlimited, as on v1. A swap limit needs a positive memory limit
    to subtract, and may not be below it (v1's memsw would refuse it too).
    """
    if swap is None:
        return -1 if limit == -1 else None
    if swap == -1:
        return -1
    if limit is None or limit == -1:
        raise ConfigError(
            path,
            f"{swap} limits memory+swap, which needs a memory limit "
            "(cgroup v2 limits swap alone: memory.swap.max = swap - limit)",
            source=source,
        )
    if swap < limit:
        raise ConfigError(
            path,
            f"{swap} is below the memory limit {limit} (swap counts memory+swap)",
            source=source,
        )
    return swap - limit


def parse_page_size(text: str) -> int:
    """``"2MB"`` → 2097152 (config-linux.md: ``<size><unit-prefix>B``, base 1024); 0 if bad."""
    if len(text) < 2 or not text.endswith("B"):
        return 0
    number, unit = text[:-1], ""
    if number and number[-1] in "KMGTP":
        number, unit = number[:-1], number[-1]
    if not number.isdigit() or not number.isascii() or number.startswith("0"):
        return 0
    return int(number) << (10 * (" KMGTP".index(unit) if unit else 0))


# --- reading the JSON ------------------------------------------------------------


def join(where: str, key: str) -> str:
    """The JSON path of ``key`` under ``where`` (``where`` may be empty)."""
    return f"{where}.{key}" if where else key


def section(resources: dict[str, Any], key: str, where: str, source: str) -> dict[str, Any]:
    """``resources[key]`` as an object; ``{}`` when absent or null."""
    value = resources.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(join(where, key), "must be an object", source=source)
    return value


def array(resources: dict[str, Any], key: str, where: str, source: str) -> list[Any]:
    value = resources.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(join(where, key), "must be an array", source=source)
    return value


def integer(
    obj: dict[str, Any], key: str, path: str, low: int, high: int, *, source: str
) -> int | None:
    """``obj[key]`` as an int in [low, high]; None when absent or null."""
    value = obj.get(key)
    if value is None:
        return None
    # bool is an int in Python; JSON true is not a number.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be an integer, not {_show(value)}", source=source)
    if value < low or value > high:
        raise ConfigError(path, _range_text(value, low, high), source=source)
    return value


def boolean(obj: dict[str, Any], key: str, path: str, *, source: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, not {_show(value)}", source=source)
    return value


def text(obj: dict[str, Any], key: str, path: str, *, source: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(path, f"must be a string, not {_show(value)}", source=source)
    if "\n" in value or "\0" in value:
        raise ConfigError(path, "must be one line", source=source)
    return value


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "an array"
    return str(value)


def _range_text(value: int, low: int, high: int) -> str:
    if high >= INT64_MAX:
        return f"must be {low} or more, not {value}"
    return f"must be {low} to {high}, not {value}"


def _limit(obj: dict[str, Any], key: str, where: str, source: str) -> int | None:
    """A byte count or count where -1 is "unlimited" and 0 is unset (runc's rule)."""
    path = join(where, key)
    value = integer(obj, key, path, INT64_MIN, INT64_MAX, source=source)
    if value is None or value == 0:
        return None
    if value < -1:
        raise ConfigError(path, f"must be -1 (unlimited) or positive, not {value}", source=source)
    return value


# --- one reader per section ------------------------------------------------------
# Each returns {spec key: checked value}, without the unset fields.


def read_memory(resources: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    memory = section(resources, "memory", where, source)
    where = join(where, "memory")
    out: dict[str, Any] = {}
    for key in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
        value = _limit(memory, key, where, source)
        if value is not None:
            out[key] = value
    swappiness = integer(memory, "swappiness", join(where, "swappiness"), 0, 100, source=source)
    if swappiness is not None:
        out["swappiness"] = swappiness
    for key in ("disableOOMKiller", "useHierarchy", "checkBeforeUpdate"):
        flag = boolean(memory, key, join(where, key), source=source)
        if flag is not None:
            out[key] = flag
    if "kernel" in out and out["kernel"] != -1:
        # Linux ignores kmem.limit_in_bytes since 6.x (the write succeeds, the limit
        # stays "max": measured on 6.18) and cgroup v2 never had one: refuse rather than
        # pretend. -1 (unlimited) is what every kernel does anyway.
        raise ConfigError(
            join(where, "kernel"),
            "kernel memory limits are not enforced by current Linux "
            "(memory.kmem.limit_in_bytes is ignored; cgroup v2 has none): use -1 or remove it",
            source=source,
        )
    out.pop("kernel", None)
    limit, swap = out.get("limit"), out.get("swap")
    if limit is not None and swap is not None and swap != -1 and limit != -1 and swap < limit:
        raise ConfigError(
            join(where, "swap"),
            f"{swap} is below the memory limit {limit} (swap counts memory+swap)",
            source=source,
        )
    return out


def read_cpu(resources: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    cpu = section(resources, "cpu", where, source)
    where = join(where, "cpu")
    out: dict[str, Any] = {}
    shares = integer(cpu, "shares", join(where, "shares"), 0, UINT64_MAX, source=source)
    if shares:
        if not SHARES_MIN <= shares <= SHARES_MAX:
            raise ConfigError(
                join(where, "shares"),
                _range_text(shares, SHARES_MIN, SHARES_MAX) + " (the kernel's range)",
                source=source,
            )
        out["shares"] = shares
    quota = _limit(cpu, "quota", where, source)
    if quota is not None:
        out["quota"] = quota
    for key in ("period", "realtimePeriod"):
        value = integer(cpu, key, join(where, key), 0, UINT64_MAX, source=source)
        if value:
            out[key] = value
    runtime = _limit(cpu, "realtimeRuntime", where, source)
    if runtime is not None:
        out["realtimeRuntime"] = runtime
    burst = integer(cpu, "burst", join(where, "burst"), 0, UINT64_MAX, source=source)
    if burst is not None:
        if quota is not None and quota > 0 and burst > quota:
            raise ConfigError(
                join(where, "burst"), f"{burst} is above the quota {quota}", source=source
            )
        out["burst"] = burst
    idle = integer(cpu, "idle", join(where, "idle"), 0, 1, source=source)
    if idle is not None:
        out["idle"] = idle
    for key in ("cpus", "mems"):
        listed = text(cpu, key, join(where, key), source=source)
        if listed:
            if not _is_cpu_list(listed):
                raise ConfigError(
                    join(where, key), f'"{listed}" is not a list like "0-3,7"', source=source
                )
            out[key] = listed
    return out


def _is_cpu_list(value: str) -> bool:
    """``0-3,7``: comma-separated numbers and ranges (cpuset(7), "List format")."""
    for item in value.split(","):
        low, dash, high = item.strip().partition("-")
        if not (low.isdigit() and low.isascii()):
            return False
        if dash and not (high.isdigit() and high.isascii() and int(high) >= int(low)):
            return False
    return True


def read_pids(resources: dict[str, Any], where: str, source: str) -> int | None:
    """``pids.limit``: -1 (max) or a count, 0 included; None when unset."""
    pids = section(resources, "pids", where, source)
    path = join(join(where, "pids"), "limit")
    limit = integer(pids, "limit", path, INT64_MIN, INT64_MAX, source=source)
    if limit is not None and limit < -1:
        raise ConfigError(path, f"must be -1 (unlimited) or 0 or more, not {limit}", source=source)
    return limit


class Device:
    """One per-device blockIO entry: ``major:minor`` and its values, with its JSON path."""

    __slots__ = ("major", "minor", "path", "values")

    def __init__(self, major: int, minor: int, values: dict[str, int], path: str) -> None:
        self.major = major
        self.minor = minor
        self.values = values  # "weight", "leafWeight" or "rate"
        self.path = path

    @property
    def number(self) -> str:
        return f"{self.major}:{self.minor}"


THROTTLES = (
    "throttleReadBpsDevice",
    "throttleWriteBpsDevice",
    "throttleReadIOPSDevice",
    "throttleWriteIOPSDevice",
)


def read_block_io(resources: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    """``weight``/``leafWeight`` (ints), ``weightDevice`` and each throttle list ([Device])."""
    block = section(resources, "blockIO", where, source)
    where = join(where, "blockIO")
    out: dict[str, Any] = {}
    for key in ("weight", "leafWeight"):
        value = integer(block, key, join(where, key), 0, UINT16_MAX, source=source)
        if value:
            out[key] = _weight(value, join(where, key), source)
    devices = []
    for index, entry in enumerate(array(block, "weightDevice", where, source)):
        path = f"{join(where, 'weightDevice')}[{index}]"
        major, minor = _device_number(entry, path, source)
        values = {}
        for key in ("weight", "leafWeight"):
            value = integer(entry, key, join(path, key), 0, UINT16_MAX, source=source)
            if value:
                values[key] = _weight(value, join(path, key), source)
        if not values and entry.get("weight") is None and entry.get("leafWeight") is None:
            raise ConfigError(path, "needs weight or leafWeight", source=source)
        devices.append(Device(major, minor, values, path))
    if devices:
        out["weightDevice"] = devices
    for key in THROTTLES:
        throttles = []
        for index, entry in enumerate(array(block, key, where, source)):
            path = f"{join(where, key)}[{index}]"
            major, minor = _device_number(entry, path, source)
            rate = integer(entry, "rate", join(path, "rate"), 0, UINT64_MAX, source=source)
            if rate is None:
                raise ConfigError(join(path, "rate"), "is required", source=source)
            throttles.append(Device(major, minor, {"rate": rate}, path))
        if throttles:
            out[key] = throttles
    return out


def _weight(value: int, path: str, source: str) -> int:
    # The kernel's range (CFQ 10..1000, BFQ 1..1000): checked here so the error names
    # the field instead of an EINVAL from the write.
    if not 1 <= value <= 1000:
        raise ConfigError(path, _range_text(value, 1, 1000), source=source)
    return value


def _device_number(entry: object, path: str, source: str) -> tuple[int, int]:
    if not isinstance(entry, dict):
        raise ConfigError(path, "must be an object", source=source)
    numbers = []
    for key in ("major", "minor"):
        value = integer(entry, key, join(path, key), 0, UINT32_MAX, source=source)
        if value is None:
            raise ConfigError(join(path, key), "is required", source=source)
        numbers.append(value)
    return numbers[0], numbers[1]


def read_hugepages(
    resources: dict[str, Any], where: str, source: str
) -> list[tuple[str, int, str]]:
    """``hugepageLimits`` as (pageSize, limit, JSON path of the entry)."""
    out = []
    for index, entry in enumerate(array(resources, "hugepageLimits", where, source)):
        path = f"{join(where, 'hugepageLimits')}[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(path, "must be an object", source=source)
        size = text(entry, "pageSize", join(path, "pageSize"), source=source)
        if size is None:
            raise ConfigError(join(path, "pageSize"), "is required", source=source)
        if not parse_page_size(size):
            raise ConfigError(
                join(path, "pageSize"), f'"{size}" is not a size like "2MB" or "1GB"', source=source
            )
        limit = integer(entry, "limit", join(path, "limit"), 0, UINT64_MAX, source=source)
        if limit is None:
            raise ConfigError(join(path, "limit"), "is required", source=source)
        out.append((size, limit, path))
    return out


def read_network(resources: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    """``classID`` (int, 0 = unset) and ``priorities`` as [(name, priority, path)]."""
    network = section(resources, "network", where, source)
    where = join(where, "network")
    out: dict[str, Any] = {}
    class_id = integer(network, "classID", join(where, "classID"), 0, UINT32_MAX, source=source)
    if class_id:
        out["classID"] = class_id
    priorities = []
    for index, entry in enumerate(array(network, "priorities", where, source)):
        path = f"{join(where, 'priorities')}[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(path, "must be an object", source=source)
        name = text(entry, "name", join(path, "name"), source=source)
        if not name or " " in name or "/" in name or "\t" in name:
            raise ConfigError(join(path, "name"), "must be an interface name", source=source)
        priority = integer(entry, "priority", join(path, "priority"), 0, UINT32_MAX, source=source)
        if priority is None:
            raise ConfigError(join(path, "priority"), "is required", source=source)
        priorities.append((name, priority, path))
    if priorities:
        out["priorities"] = priorities
    return out


def read_rdma(resources: dict[str, Any], where: str, source: str) -> list[tuple[str, str, str]]:
    """``rdma`` as (device, ``rdma.max`` line, path): ``mlx5_1 hca_handle=3 hca_object=10``."""
    out = []
    for device, entry in section(resources, "rdma", where, source).items():
        path = f"{join(where, 'rdma')}.{device}"
        if not device or any(c in device for c in " \t\n/\0="):
            raise ConfigError(path, f"{device!r} is not an RDMA device name", source=source)
        if not isinstance(entry, dict):
            raise ConfigError(path, "must be an object", source=source)
        line = device
        for key, name in (("hcaHandles", "hca_handle"), ("hcaObjects", "hca_object")):
            value = integer(entry, key, join(path, key), 0, UINT32_MAX, source=source)
            if value is not None:
                line += f" {name}={value}"
        if line == device:
            raise ConfigError(path, "needs hcaHandles or hcaObjects", source=source)
        out.append((device, line, path))
    return out


# Writing these would not set a limit but act on the container: move processes into
# it (a host pid into the container's cgroup), kill or freeze it behind corral's back.
UNIFIED_REFUSED = ("cgroup.procs", "cgroup.threads", "cgroup.kill", "cgroup.freeze")


def read_unified(resources: dict[str, Any], where: str, source: str) -> list[tuple[str, str, str]]:
    """``unified`` as (file, value, path), keys checked to be one file name."""
    out = []
    for key, value in section(resources, "unified", where, source).items():
        path = f'{join(where, "unified")}["{key}"]'
        controller, dot, rest = key.partition(".")
        if not dot or not controller or not rest or "/" in key or "\0" in key or "\n" in key:
            raise ConfigError(
                path, "must be a file name of the form <controller>.<file>", source=source
            )
        if key in UNIFIED_REFUSED:
            raise ConfigError(
                path, "acts on the container's processes, it is not a limit", source=source
            )
        if not isinstance(value, str):
            raise ConfigError(path, f"must be a string, not {_show(value)}", source=source)
        out.append((key, value, path))
    return out


def check_resources(
    resources: object, *, where: str = "linux.resources", source: str = "config.json"
) -> None:
    """Every check that does not depend on the host's cgroup version or the container
    (for ``update``): the device rules are parsed, their combination with the
    container's is checked when applied."""
    if not isinstance(resources, dict):
        raise ConfigError(where, "must be an object", source=source)
    read_memory(resources, where, source)
    read_cpu(resources, where, source)
    read_pids(resources, where, source)
    read_block_io(resources, where, source)
    read_hugepages(resources, where, source)
    read_network(resources, where, source)
    read_rdma(resources, where, source)
    read_unified(resources, where, source)
    from corral.linux.cgroups.devices import parse_device_rules

    try:
        parse_device_rules(resources, where=where)
    except ConfigError as error:
        if error.source == source:
            raise
        raise ConfigError(error.path, error.message, source=source) from None


def check_memory_update(
    resources: dict[str, Any],
    usage: int,
    *,
    where: str = "linux.resources",
    source: str = "config.json",
) -> None:
    """``memory.checkBeforeUpdate``: refuse a limit at or below the current ``usage``.

    config-linux.md: with the flag, the runtime "MUST reject the new limit" when it is
    lower than the usage. v1's kernel refuses such a limit itself (EBUSY); v2 would
    OOM-kill instead, so the caller reads ``memory.current`` (v2) or
    ``memory.usage_in_bytes`` (v1) and asks here first. As runc, the memory+swap
    limit is compared with the same usage.
    """
    memory = read_memory(resources, where, source)
    if not memory.get("checkBeforeUpdate"):
        return
    for key in ("limit", "swap"):
        value = memory.get(key)
        if value is not None and 0 < value <= usage:
            raise ConfigError(
                join(join(where, "memory"), key),
                f"{value} is not above the current memory usage {usage} (checkBeforeUpdate)",
                source=source,
            )


# --- the writer's ordering contract, for both planners -------------------------


class WriteFailed(Exception):
    """A planned write failed for good: ``item`` is the plan's tuple, ``error`` the OSError."""

    def __init__(self, item: tuple[str, ...], error: OSError) -> None:
        self.item = item
        self.error = error
        super().__init__(f"{item}: {error}")


def write_plan(
    plan: Sequence[T], controller: Callable[[T], str], write: Callable[[T], None]
) -> None:
    """Run ``write`` over ``plan`` under the planners' ordering contract.

    In order; a write that fails with EINVAL while a later write of the same
    controller follows is retried once after that controller's last write (see the
    module docs of :mod:`.v1resources` and :mod:`.v2resources`: this is what lets
    one plan both raise and lower memory/memsw and quota/burst). ``write`` raises
    OSError; the first failure that stands raises :class:`WriteFailed`.
    """
    import errno

    last = {controller(item): index for index, item in enumerate(plan)}
    deferred: list[T] = []
    for index, item in enumerate(plan):
        name = controller(item)
        try:
            write(item)
        except OSError as error:
            if error.errno != errno.EINVAL or last[name] == index:
                raise WriteFailed(tuple(item), error) from error
            deferred.append(item)
        if last[name] == index:
            for retry in [d for d in deferred if controller(d) == name]:
                deferred.remove(retry)
                try:
                    write(retry)
                except OSError as error:
                    raise WriteFailed(tuple(retry), error) from error
