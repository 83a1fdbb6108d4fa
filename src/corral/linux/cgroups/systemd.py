"""The systemd cgroup driver (``--systemd-cgroup``): systemd owns the container's cgroup.

When systemd manages the host's cgroups it expects to be the only writer of its tree
(systemd.io/CGROUP_DELEGATION): a container gets its own transient *scope unit* with
``Delegate=yes``, inside which the runtime may then write. So, as runc 1.1 does:

1. ``linux.cgroupsPath`` is ``slice:prefix:name`` (placement.parse_systemd_path); the
   unit is ``<prefix>-<name>.scope`` in that slice, and its cgroup is the slice's path
   (``a-b.slice`` is ``/a.slice/a-b.slice``, systemd.slice(5)) plus the unit's name.
2. When the init's pid is known (:meth:`SystemdManager.add_process`; a scope must be
   started with its processes), corral calls ``StartTransientUnit`` on
   ``org.freedesktop.systemd1.Manager`` with Description, Slice, Delegate, PIDs,
   DefaultDependencies=no, the accounting switches, and the resource properties systemd
   understands (:func:`resource_properties`, runc's table in its docs/systemd.md), and
   waits for the job's ``JobRemoved`` signal. Giving systemd the limits matters: it
   rewrites every limit of a unit it knows from its own settings whenever it
   re-realises the unit (a ``daemon-reload``), so a limit it did not hear of would be
   reset to "unlimited", and a device allow-list it did not hear of to allow-all.
3. Then the same cgroupfs writes as the fs driver (an :class:`FsManager` on the unit's
   path): the hierarchies systemd did not populate, and every limit systemd has no
   property for.
4. ``destroy`` stops the unit (``StopUnit``), then removes what is left.

The bus is the system bus (``DBUS_SYSTEM_BUS_ADDRESS`` or
``/var/run/dbus/system_bus_socket``), as for runc: it is where systemd is reached on any
host with a bus daemon, and a test can stand up its own daemon. Only when that socket
does not answer does corral use systemd's private socket ``/run/systemd/private``
(root only, no bus daemon: systemd sends its signals to such peers unasked).

systemd runs when ``/run/systemd/system`` exists (sd_booted(3)); without it,
``--systemd-cgroup`` is an error, never a silent fall back to the fs driver. The one
other proof accepted is a systemd that answers: when ``DBUS_SYSTEM_BUS_ADDRESS`` names a
bus on which ``org.freedesktop.systemd1`` has an owner (how the tests run a stand-in
systemd on a host booted without it).
"""

from __future__ import annotations

from corral.errors import ConfigError, CorralError, CreateError
from corral.linux.cgroups.manager import CgroupManager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.linux.cgroups.devices import DeviceRule
    from corral.linux.cgroups.fs import FsManager
    from corral.linux.cgroups.hierarchy import Hierarchy
    from corral.linux.dbus import Connection, Message, Variant

BOOTED_MARKER = "/run/systemd/system"
PRIVATE_SOCKET = "unix:path=/run/systemd/private"
SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
# How long systemd may take to run a start or stop job (runc waits 30 s as well).
JOB_TIMEOUT = 30.0
# USEC_INFINITY / "infinity" for TasksMax, MemoryMax...: (uint64)-1 in systemd.
INFINITY = 2**64 - 1
DEFAULT_CPU_PERIOD = 100000  # µs, the kernel's default CFS period (sched-bwc.rst)

_UNIT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:-_.\\")


class SystemdNotRunningError(CorralError):
    """``--systemd-cgroup`` on a host where no systemd manages the cgroups."""


# -- placement ----------------------------------------------------------------------------


def expand_slice(slice_name: str) -> str:
    """A slice unit's cgroup path: ``a-b.slice`` -> ``/a.slice/a-b.slice`` (systemd.slice(5):
    dashes nest slices), ``-.slice`` -> ``/`` (the root slice)."""
    stem = slice_name.removesuffix(".slice")
    if stem == slice_name or not stem or "/" in slice_name:
        raise ConfigError("linux.cgroupsPath", f'"{slice_name}" is not a slice unit name')
    if stem == "-":
        return "/"
    path = ""
    prefix = ""
    for part in stem.split("-"):
        if not part:  # "a--b.slice" and "-a.slice" name no slice
            raise ConfigError("linux.cgroupsPath", f'"{slice_name}" is not a valid slice name')
        path += f"/{prefix}{part}.slice"
        prefix += part + "-"
    return path


def unit_name(prefix: str, name: str) -> str:
    """The scope unit of ``prefix:name`` (runc's rule: ``<prefix>-<name>.scope``)."""
    if name.endswith(".slice"):
        # runc would ask for a slice unit, with the init's pid, which systemd refuses
        # (slices hold no processes); say so up front.
        raise ConfigError(
            "linux.cgroupsPath",
            f'"{name}": a container needs a scope unit; a slice unit cannot hold its processes',
        )
    unit = f"{prefix}-{name}.scope"
    bad = sorted(set(unit) - _UNIT_CHARS)
    if bad or len(unit) > 255:
        raise ConfigError(
            "linux.cgroupsPath",
            f'"{unit}" is not a valid systemd unit name (characters {"".join(bad)!r})'
            if bad
            else f'"{unit}" is longer than 255 characters',
        )
    return unit


# -- is systemd there? --------------------------------------------------------------------


def require_systemd() -> None:
    """Raise SystemdNotRunningError unless systemd manages this host's cgroups."""
    import os

    if os.path.isdir(BOOTED_MARKER):
        return
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    if address and _systemd_on_bus(address):
        return
    detail = f"no {BOOTED_MARKER}"
    if address:
        detail += f", and no {SYSTEMD} on the bus at DBUS_SYSTEM_BUS_ADDRESS"
    raise SystemdNotRunningError(
        f"--systemd-cgroup: systemd is not running on this host ({detail})"
    )


def _systemd_on_bus(address: str) -> bool:
    from corral.linux.dbus import Connection, DBusError

    try:
        with Connection.open(address, timeout=5.0) as conn:
            (owned,) = conn.call(
                "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                "NameHasOwner", "s", [SYSTEMD], timeout=5.0,
            )  # fmt: skip
    except (DBusError, OSError):
        return False
    return bool(owned)


def _connect() -> tuple[Connection, bool]:
    """A connection to systemd and whether it goes through a bus daemon."""
    from corral.linux.dbus import Connection, DBusError, system_bus_address

    try:
        return Connection.open(system_bus_address()), True
    except (DBusError, OSError) as exc:
        import os

        if os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or not os.path.exists(PRIVATE_SOCKET[10:]):
            raise CorralError(f"--systemd-cgroup: cannot reach systemd over D-Bus: {exc}") from None
    try:
        return Connection.open(PRIVATE_SOCKET, bus=False), False
    except (DBusError, OSError) as exc:
        raise CorralError(f"--systemd-cgroup: cannot reach systemd over D-Bus: {exc}") from None


# -- resources as unit properties ---------------------------------------------------------


def cpu_mask(value: str, where: str) -> list[int]:
    """A cpuset list ("0-2,5") as systemd's ``AllowedCPUs`` bytes: bit i of byte j is
    CPU 8*j+i (systemd's cpu_set_to_dbus)."""
    bits: set[int] = set()
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        low, _, high = item.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise ConfigError(where, f'"{value}" is not a list of numbers and ranges') from None
        if first < 0 or last < first:
            raise ConfigError(where, f'"{value}": bad range "{item}"')
        bits.update(range(first, last + 1))
    if not bits:
        raise ConfigError(where, f'"{value}" names no CPU or node')
    mask = [0] * (max(bits) // 8 + 1)
    for bit in bits:
        mask[bit // 8] |= 1 << (bit % 8)
    return mask


def _quota_properties(quota: int, period: int, version: int) -> list[tuple[str, Variant]]:
    from corral.linux.dbus import Variant

    props: list[tuple[str, Variant]] = []
    if period and version >= 242:  # CPUQuotaPeriodUSec came with systemd v242
        props.append(("CPUQuotaPeriodUSec", Variant("t", period)))
    if quota or period:
        per_second = INFINITY
        if quota > 0:
            # systemd keeps the quota as a percentage of a CPU (µs per second), so round
            # up to a whole 1% (10 ms) lest it grant less than the config asks.
            per_second = quota * 1000000 // (period or DEFAULT_CPU_PERIOD)
            if per_second % 10000:
                per_second = (per_second // 10000 + 1) * 10000
        props.append(("CPUQuotaPerSecUSec", Variant("t", per_second)))
    return props


def _number(resources: dict[str, Any], group: str, key: str) -> int:
    value = (resources.get(group) or {}).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _uint(value: int) -> int:
    return INFINITY if value < 0 else value


def resource_properties(
    resources: dict[str, Any], *, v2: bool, version: int, where: str = "linux.resources"
) -> list[tuple[str, Variant]]:
    """The unit properties systemd has for ``resources`` (runc's table, docs/systemd.md).

    ``v2`` picks cgroup v2's names (MemoryMax, CPUWeight) over v1's (MemoryLimit,
    CPUShares); ``version`` is systemd's, for the properties younger ones added.
    Everything else is written to cgroupfs only.
    """
    from corral.linux.dbus import Variant

    props: list[tuple[str, Variant]] = []
    memory = _number(resources, "memory", "limit")
    if memory:
        props.append(("MemoryMax" if v2 else "MemoryLimit", Variant("t", _uint(memory))))
    shares = _number(resources, "cpu", "shares")
    if shares:
        if v2:
            from corral.linux.cgroups.convert import shares_to_weight

            props.append(("CPUWeight", Variant("t", shares_to_weight(shares))))
        else:
            props.append(("CPUShares", Variant("t", shares)))
    props += _quota_properties(
        _number(resources, "cpu", "quota"), _number(resources, "cpu", "period"), version
    )
    weight = _number(resources, "blockIO", "weight")
    if weight and not v2:
        props.append(("BlockIOWeight", Variant("t", weight)))
    pids = _number(resources, "pids", "limit")
    if pids > 0 or pids == -1:
        props.append(("TasksMax", Variant("t", _uint(pids))))
    if version >= 244:  # AllowedCPUs / AllowedMemoryNodes came with systemd v244
        cpu = resources.get("cpu") or {}
        for key, name in (("cpus", "AllowedCPUs"), ("mems", "AllowedMemoryNodes")):
            if cpu.get(key):
                props.append((name, Variant("ay", cpu_mask(cpu[key], f"{where}.cpu.{key}"))))
    if v2:
        props += _v2_only_properties(resources, memory, version, where)
    return props


def _v2_only_properties(
    resources: dict[str, Any], memory: int, version: int, where: str
) -> list[tuple[str, Variant]]:
    from corral.linux.dbus import Variant

    props: list[tuple[str, Variant]] = []
    reservation = _number(resources, "memory", "reservation")
    if reservation:
        props.append(("MemoryLow", Variant("t", _uint(reservation))))
    swap = _number(resources, "memory", "swap")
    # cgroup v2 limits swap alone; the spec's swap is memory+swap (runc's conversion).
    if memory == -1 and swap == 0:
        swap_max = -1
    elif swap in (0, -1):
        swap_max = swap
    elif memory <= 0 or swap < memory:
        swap_max = 0  # refused by the v2 planner, which names the field
    else:
        swap_max = swap - memory
    if swap_max:
        props.append(("MemorySwapMax", Variant("t", _uint(swap_max))))
    unified = resources.get("unified") or {}
    simple = {
        "memory.high": "MemoryHigh",
        "memory.low": "MemoryLow",
        "memory.min": "MemoryMin",
        "memory.max": "MemoryMax",
        "memory.swap.max": "MemorySwapMax",
        "pids.max": "TasksMax",
    }
    for key, raw in unified.items():
        text = str(raw).strip()
        if key in simple:
            number = INFINITY if text == "max" else _int_or_none(text)
            if number is not None:
                props.append((simple[key], Variant("t", number)))
        elif key == "cpu.weight" and _int_or_none(text):
            props.append(("CPUWeight", Variant("t", int(text))))
        elif key == "cpu.max":
            fields = text.split()
            quota = -1 if fields[:1] == ["max"] else _int_or_none(fields[0]) if fields else None
            period = _int_or_none(fields[1]) if len(fields) > 1 else DEFAULT_CPU_PERIOD
            if quota is not None and period:
                props += _quota_properties(max(quota, 0), period, version)
        elif key in ("cpuset.cpus", "cpuset.mems") and version >= 244 and text:
            name = "AllowedCPUs" if key == "cpuset.cpus" else "AllowedMemoryNodes"
            props.append((name, Variant("ay", cpu_mask(text, f"{where}.unified.{key}"))))
    return props


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def device_properties(rules: list[DeviceRule]) -> list[tuple[str, Variant]]:
    """``DevicePolicy`` and ``DeviceAllow`` for the device rules' final state.

    systemd keeps only an allow-list (``DevicePolicy=strict`` denies the rest), so the
    rules are first reduced to their end state (C's v1 emulation,
    :func:`.devices.device_state`). Allow-all with nothing denied is ``auto`` with no
    list; allow-all with exceptions cannot be said, so systemd hears deny-all: what it
    would re-apply is never wider than what corral wrote (runc does the same). Paths
    follow systemd.resource-control(5): ``/dev/char/M:m``, ``char-<name>``
    (/proc/devices) for a whole major, ``char-*`` for all.
    """
    from corral.linux.cgroups.devices import access_string, device_state
    from corral.linux.dbus import Variant

    state = device_state(rules)
    allowed: list[tuple[str, str]] = []
    if state.default_allow:
        if not state.exceptions:
            return [("DevicePolicy", Variant("s", "auto")), ("DeviceAllow", Variant("a(ss)", []))]
    else:
        for (kind, major, minor), bits in sorted(state.exceptions.items()):
            for one in ("c", "b") if kind == "a" else (kind,):
                path = _device_path(one, major, minor)
                if path:
                    allowed.append((path, access_string(bits)))
    return [
        ("DevicePolicy", Variant("s", "strict")),
        ("DeviceAllow", Variant("a(ss)", allowed)),
    ]


def _device_path(kind: str, major: int, minor: int) -> str | None:
    group = "char" if kind == "c" else "block"
    if major == -1:
        return f"{group}-*" if minor == -1 else None  # systemd has no "*:m" form
    if minor != -1:
        return f"/dev/{group}/{major}:{minor}"
    try:
        with open("/proc/devices", encoding="ascii") as file:
            text = file.read()
    except OSError:
        return None
    section = "Character devices:" if kind == "c" else "Block devices:"
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.endswith("devices:"):
            inside = line == section
        elif inside and line.split()[:1] == [str(major)]:
            return f"{group}-{line.split()[1]}"
    return None


# -- the manager --------------------------------------------------------------------------


class SystemdManager(CgroupManager):
    """A container's cgroup as a systemd scope unit, with :class:`FsManager`'s writes."""

    driver = "systemd"

    def __init__(
        self, hierarchy: Hierarchy, slice_name: str, unit: str, *, started: bool = False
    ) -> None:
        from corral.linux.cgroups.fs import FsManager

        self.hierarchy = hierarchy
        self.slice = slice_name
        self.unit = unit
        self.started = started
        self.relative_path = expand_slice(slice_name).rstrip("/") + "/" + unit
        self.fs: FsManager = FsManager(hierarchy, self.relative_path)
        self._pending: tuple[dict[str, Any], str] | None = None
        self._version: int | None = None
        self._spec: Any = None

    # A's manager_for hands the spec over after construction; the fs half needs it too.
    @property
    def spec(self) -> Any:
        return self._spec

    @spec.setter
    def spec(self, value: Any) -> None:
        self._spec = value
        self.fs.spec = value

    @property
    def unified_path(self) -> str | None:  # type: ignore[override]
        return self.fs.unified_path

    @property
    def v1_paths(self) -> dict[str, str]:  # type: ignore[override]
        return self.fs.v1_paths

    # -- lifecycle ------------------------------------------------------------------------

    def create(self) -> None:
        # The directories first, as the fs driver makes them (and checks an existing one
        # is empty and thawed); systemd then adopts them when it starts the scope, which
        # it can only do with the first process (add_process).
        self.fs.create()

    def apply(
        self, resources: dict[str, Any], *, where: str = "linux.resources", update: bool = False
    ) -> None:
        if not self.started:
            # Before the scope exists the limits go into StartTransientUnit's properties
            # and are written after it (systemd writes its own on start); checked now.
            self.fs.plan(resources, where=where)
            resource_properties(resources, v2=self._v2, version=10**6, where=where)
            self._pending = (resources, where)
            return
        props = self._properties(resources, where, update=update)
        if props:
            from corral.linux.dbus import DBusError

            conn, _ = _connect()
            try:
                # runtime=true: a live change, not written to /etc (SetUnitProperties).
                conn.call(SYSTEMD, SYSTEMD_PATH, MANAGER, "SetUnitProperties",
                          "sba(sv)", [self.unit, True, props])  # fmt: skip
            except DBusError as exc:
                raise CorralError(f"systemd refused the limits of {self.unit}: {exc}") from None
            finally:
                conn.close()
        self.fs.apply(resources, where=where, update=update)

    def add_process(self, pid: int) -> None:
        if not self.started:
            resources, where = self._pending or ({}, "linux.resources")
            self._start(pid, resources, where)
            self.started = True
        # systemd moved the pid in the hierarchies it manages; the others follow here.
        self.fs.add_process(pid)
        if self._pending is not None:
            resources, where = self._pending
            self._pending = None
            self.fs.apply(resources, where=where)

    def pids(self) -> list[int]:
        return self.fs.pids()

    def freeze(self) -> None:
        self.fs.freeze()

    def thaw(self) -> None:
        self.fs.thaw()

    def is_frozen(self) -> bool:
        return self.fs.is_frozen()

    def kill_all(self, signal: int) -> None:
        self.fs.kill_all(signal)

    def destroy(self) -> None:
        failure: CorralError | None = None
        if self.started:
            try:
                self._stop()
                self.started = False
            except CorralError as exc:
                failure = exc  # systemd unreachable or refusing: still clear cgroupfs
        # systemd removes the unit's cgroups; corral's own directories (hierarchies
        # systemd does not manage) and anything left go the fs driver's way.
        self.fs.destroy()
        if failure is not None:
            raise failure

    def to_record(self) -> dict[str, Any]:
        return {
            "driver": "systemd",
            "slice": self.slice,
            "unit": self.unit,
            "started": self.started,
            "fs": self.fs.to_record(),
        }

    @classmethod
    def from_record(cls, doc: dict[str, Any]) -> SystemdManager:
        from corral.linux.cgroups.fs import FsManager

        fs = FsManager.from_record(doc["fs"])
        manager = cls(fs.hierarchy, doc["slice"], doc["unit"], started=bool(doc["started"]))
        manager.fs = fs
        return manager

    # -- D-Bus ----------------------------------------------------------------------------

    @property
    def _v2(self) -> bool:
        return self.hierarchy.mode == "v2"

    def _properties(
        self, resources: dict[str, Any], where: str, *, update: bool = False
    ) -> list[tuple[str, Variant]]:
        props = []
        # The fs half knows the rules: the config's at create, the record's nodes with
        # an update's devices (systemd would otherwise put its old policy back).
        rules = self.fs.device_rules(resources, where=where, update=update)
        if rules is not None:
            props += device_properties(rules)
        return props + resource_properties(
            resources, v2=self._v2, version=self._systemd_version(), where=where
        )

    def _systemd_version(self) -> int:
        """systemd's version number ("252.22-1~deb12u1" -> 252), 0 if unknown."""
        if self._version is None:
            from corral.linux.dbus import DBusError

            self._version = 0
            try:
                conn, _ = _connect()
                with conn:
                    (value,) = conn.call(SYSTEMD, SYSTEMD_PATH, "org.freedesktop.DBus.Properties",
                                         "Get", "ss", [MANAGER, "Version"])  # fmt: skip
                text = str(value.value).lstrip("v")
                digits = text[: len(text) - len(text.lstrip("0123456789"))]
                self._version = int(digits or 0)
            except (DBusError, CorralError):
                pass
        return self._version

    def _start(self, pid: int, resources: dict[str, Any], where: str) -> None:
        from corral.linux.dbus import DBusError, Variant

        props: list[tuple[str, Variant]] = [
            ("Description", Variant("s", f"corral container {self.unit}")),
            ("Slice", Variant("s", self.slice)),
            ("Delegate", Variant("b", True)),
            ("PIDs", Variant("au", [pid])),
            # Accounting on for every controller, so systemd puts the scope in each
            # hierarchy and the kernel charges the container from its first page.
            ("MemoryAccounting", Variant("b", True)),
            ("CPUAccounting", Variant("b", True)),
            ("IOAccounting" if self._v2 else "BlockIOAccounting", Variant("b", True)),
            ("TasksAccounting", Variant("b", True)),
            # No implicit ordering on shutdown.target etc.: the container is not a service.
            ("DefaultDependencies", Variant("b", False)),
        ]
        props += self._properties(resources, where)
        conn, via_bus = _connect()
        with conn:
            try:
                self._run_job(conn, via_bus, "StartTransientUnit", "ssa(sv)a(sa(sv))",
                              [self.unit, "fail", props, []])  # fmt: skip
            except DBusError as exc:
                if exc.name == "org.freedesktop.systemd1.UnitExists":
                    raise CreateError(
                        f"systemd unit {self.unit} already exists (linux.cgroupsPath names "
                        f"another container's scope)"
                    ) from None
                raise CreateError(f"systemd could not start {self.unit}: {exc}") from None
            except _JobFailed as exc:
                _reset_failed(conn, self.unit)
                raise CreateError(f"systemd could not start {self.unit}: job {exc}") from None

    def _stop(self) -> None:
        from corral.linux.dbus import DBusError

        conn, via_bus = _connect()
        with conn:
            try:
                self._run_job(conn, via_bus, "StopUnit", "ss", [self.unit, "replace"])
            except DBusError as exc:
                if exc.name != "org.freedesktop.systemd1.NoSuchUnit":
                    raise CorralError(f"systemd could not stop {self.unit}: {exc}") from None
            except _JobFailed:
                _reset_failed(conn, self.unit)  # the unit is gone either way

    def _run_job(
        self, conn: Connection, via_bus: bool, method: str, signature: str, args: list[Any]
    ) -> None:
        """Call a Manager method that queues a job, and wait for the job to finish."""
        if via_bus:
            # Ask for JobRemoved before the call, so the signal cannot slip by unseen.
            conn.add_match(
                f"type='signal',sender='{SYSTEMD}',path='{SYSTEMD_PATH}',"
                f"interface='{MANAGER}',member='JobRemoved'"
            )
        (job,) = conn.call(SYSTEMD, SYSTEMD_PATH, MANAGER, method, signature, args)

        def is_ours(message: Message) -> bool:
            return (
                message.member == "JobRemoved"
                and message.interface == MANAGER
                and message.signature == "uoss"
                and message.body[1] == job
            )

        done = conn.wait_signal(is_ours, JOB_TIMEOUT)
        if done.body[3] != "done":
            raise _JobFailed(str(done.body[3]))


class _JobFailed(Exception):
    """A systemd job ended with a result other than "done" (e.g. "failed", "timeout")."""


def _reset_failed(conn: Connection, unit: str) -> None:
    from corral.linux.dbus import DBusError

    try:
        conn.call(SYSTEMD, SYSTEMD_PATH, MANAGER, "ResetFailedUnit", "s", [unit])
    except DBusError:
        pass  # only tidies systemd's list of failed units


def systemd_manager_for(hierarchy: Hierarchy, value: str, container_id: str) -> SystemdManager:
    """The manager of a new container (``linux.cgroupsPath`` is ``value``); refuses
    when systemd does not run."""
    from corral.linux.cgroups.placement import parse_systemd_path

    slice_name, prefix, name = parse_systemd_path(value, container_id)
    unit = unit_name(prefix, name)
    expand_slice(slice_name)
    require_systemd()
    return SystemdManager(hierarchy, slice_name, unit)
