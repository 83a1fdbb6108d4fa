"""``process.scheduler``, ``process.ioPriority`` and ``process.execCPUAffinity``.

Each field is read from the config into a plain value by a pure function that names
the JSON path of anything wrong; ``apply_*`` hands the value to one system call.

``scheduler`` becomes one sched_setattr(2) call on the init, which its children and
the program it execs inherit (sched(7)). The kernel's own rules are checked first so
a mistake reads as a config error, not as ``EINVAL``: ``nice`` in [-20, 19];
``priority`` 1-99 for ``SCHED_FIFO``/``SCHED_RR`` and 0 otherwise; ``runtime``,
``deadline`` and ``period`` only for ``SCHED_DEADLINE``, where the kernel wants
1024 ns <= runtime <= deadline <= period (a period of 0 means "= deadline") and
values below 2^63 (sched_setattr(2), ``__checkparam_dl``). ``SCHED_ISO`` was never
merged into Linux. The ``SCHED_FLAG_UTIL_CLAMP_*`` flags are refused: they clamp to
``sched_util_min``/``max``, which the spec has no fields for (with zeros the process
would be clamped to no utilisation at all).

``ioPriority`` becomes ioprio_set(2) with ``IOPRIO_WHO_PROCESS`` on the init; the
I/O context is inherited by fork(2) and kept across execve(2) (ioprio_set(2)).
``IOPRIO_CLASS_RT`` and a nice below the current one need ``CAP_SYS_NICE``, so both
are applied before the credentials drop capabilities.

``execCPUAffinity`` is, in config.md's words, "not applicable to the container's init
process": it is for processes started later in a running container (``exec``).
``initial`` is the affinity of the runtime's process that joins the container, set
before it moves into the container's cgroup (so its setup does not run on CPUs the
user keeps free), ``final`` the one set after the move, right before execve(2); an
empty or absent ``final`` leaves the kernel's choice (the cgroup's cpuset) alone.
CPU lists use cpuset(7)'s list format, ``0-3,7``.
"""

from __future__ import annotations

import errno

from corral.errors import ConfigError, CreateError, UnsupportedError
from corral.spec.reader import UINT64_MAX, Fields, describe, join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Spec

# <linux/sched.h>
SCHED_POLICIES = {
    "SCHED_OTHER": 0,
    "SCHED_FIFO": 1,
    "SCHED_RR": 2,
    "SCHED_BATCH": 3,
    "SCHED_ISO": 4,
    "SCHED_IDLE": 5,
    "SCHED_DEADLINE": 6,
}
SCHED_FLAGS = {
    "SCHED_FLAG_RESET_ON_FORK": 0x01,
    "SCHED_FLAG_RECLAIM": 0x02,
    "SCHED_FLAG_DL_OVERRUN": 0x04,
    "SCHED_FLAG_KEEP_POLICY": 0x08,
    "SCHED_FLAG_KEEP_PARAMS": 0x10,
    "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
    "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40,
}
_REALTIME = ("SCHED_FIFO", "SCHED_RR")
_DL_MIN_RUNTIME = 1 << 10  # DL_SCALE: the kernel's resolution for deadline runtimes
_DL_MAX = 1 << 63  # deadline and period must leave the top bit clear

# <linux/ioprio.h>
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
IOPRIO_CLASS_SHIFT = 13
IOPRIO_WHO_PROCESS = 1

# A sanity bound on CPU numbers (Linux's NR_CPUS is at most 8192 today).
MAX_CPU = 65535


class SchedAttr:
    """The fields of ``struct sched_attr`` that the spec sets."""

    __slots__ = ("deadline", "flags", "nice", "period", "policy", "priority", "runtime")

    def __init__(
        self,
        policy: int,
        flags: int = 0,
        nice: int = 0,
        priority: int = 0,
        runtime: int = 0,
        deadline: int = 0,
        period: int = 0,
    ) -> None:
        self.policy = policy
        self.flags = flags
        self.nice = nice
        self.priority = priority
        self.runtime = runtime
        self.deadline = deadline
        self.period = period

    def as_tuple(self) -> tuple[int, int, int, int, int, int, int]:
        return (self.policy, self.flags, self.nice, self.priority, self.runtime,
                self.deadline, self.period)  # fmt: skip


def _process_field(spec: Spec, key: str) -> Fields | None:
    process = Fields(spec.raw, "").obj("process")
    return None if process is None else process.obj(key)


def parse_id_list(text: str, path: str, *, limit: int, what: str = "CPU") -> set[int]:
    """A cpuset(7) list (``0-3,7``) as a set of numbers; errors name ``path``.

    Spaces around an element and empty elements (``"0,,1,"``) are tolerated, as by
    runc and the kernel's own list parser; a list naming nothing is an error.
    """
    ids: set[int] = set()
    for raw in text.split(","):
        element = raw.strip()
        if not element:
            continue
        first, dash, last = element.partition("-")
        bounds = [first.strip(), last.strip()] if dash else [first.strip()]
        if not all(bound.isdigit() and bound.isascii() for bound in bounds):
            raise ConfigError(path, f"{describe(element)} in {describe(text)} is not a {what} "
                              "number or a range like 0-3")  # fmt: skip
        low, high = int(bounds[0]), int(bounds[-1])
        if low > high:
            raise ConfigError(path, f"range {describe(element)} runs backwards")
        if high > limit:
            raise ConfigError(path, f"{what} {high} is above the maximum {limit}")
        ids.update(range(low, high + 1))
    if not ids:
        raise ConfigError(path, f"{describe(text)} names no {what}")
    return ids


# -- process.scheduler ---------------------------------------------------------------


def scheduler_attr(spec: Spec) -> SchedAttr | None:
    """The ``sched_attr`` that ``process.scheduler`` asks for (pure), None if absent."""
    fields = _process_field(spec, "scheduler")
    if fields is None:
        return None
    name = fields.string("policy", required=True)
    if name not in SCHED_POLICIES:
        raise ConfigError(fields.at("policy"), f"unknown policy {describe(name)}")
    if name == "SCHED_ISO":
        raise UnsupportedError(fields.at("policy"), "SCHED_ISO was never merged into Linux")
    flags = 0
    for index, flag in enumerate(fields.strings("flags")):
        where = join(fields.at("flags"), index)
        if flag not in SCHED_FLAGS:
            raise ConfigError(where, f"unknown flag {describe(flag)}")
        if flag.startswith("SCHED_FLAG_UTIL_CLAMP"):
            raise UnsupportedError(where, "the spec has no utilisation values to clamp to")
        flags |= SCHED_FLAGS[flag]
    nice = fields.integer("nice", minimum=-20, maximum=19) or 0
    priority = fields.integer("priority", minimum=0, maximum=99) or 0
    if name in _REALTIME and priority == 0:
        raise ConfigError(fields.at("priority"), f"{name} needs a priority from 1 to 99")
    if name not in _REALTIME and priority != 0:
        raise ConfigError(
            fields.at("priority"), f"must be 0 for {name} (only SCHED_FIFO and SCHED_RR have one)"
        )
    times = {
        key: fields.integer(key, minimum=0, maximum=UINT64_MAX) or 0
        for key in ("runtime", "deadline", "period")
    }
    if name != "SCHED_DEADLINE":
        for key, value in times.items():
            if value:
                raise ConfigError(fields.at(key), f"only SCHED_DEADLINE uses it, not {name}")
    else:
        _check_deadline(fields, times["runtime"], times["deadline"], times["period"])
    return SchedAttr(
        SCHED_POLICIES[name],
        flags,
        nice,
        priority,
        times["runtime"],
        times["deadline"],
        times["period"],
    )


def _check_deadline(fields: Fields, runtime: int, deadline: int, period: int) -> None:
    if deadline == 0:
        raise ConfigError(fields.at("deadline"), "SCHED_DEADLINE needs a deadline")
    if runtime < _DL_MIN_RUNTIME:
        raise ConfigError(
            fields.at("runtime"), f"{runtime} ns is below the kernel's minimum {_DL_MIN_RUNTIME}"
        )
    for key, value in (("deadline", deadline), ("period", period)):
        if value >= _DL_MAX:
            raise ConfigError(fields.at(key), f"{value} ns is not below 2^63")
    if runtime > deadline:
        raise ConfigError(fields.at("runtime"), f"{runtime} ns exceeds the deadline {deadline}")
    if period and deadline > period:
        raise ConfigError(fields.at("deadline"), f"{deadline} ns exceeds the period {period}")


def check_scheduler(spec: Spec) -> None:
    scheduler_attr(spec)


def apply_scheduler(sc: Syscalls, spec: Spec) -> None:
    """sched_setattr(2) on the init, while it still has CAP_SYS_NICE."""
    attr = scheduler_attr(spec)
    if attr is None:
        return
    try:
        sc.sched_setattr(*attr.as_tuple())
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno == errno.EBUSY:  # deadline admission control, sched_setattr(2)
            reason += " (not enough CPU bandwidth left for this SCHED_DEADLINE reservation)"
        elif error.errno == errno.EPERM:
            reason += " (a real-time policy or a raised nice needs CAP_SYS_NICE)"
        raise CreateError(f"process.scheduler: {reason}") from error


# -- process.ioPriority --------------------------------------------------------------


def io_priority_value(spec: Spec) -> int | None:
    """The ioprio value (class << 13 | level) ``process.ioPriority`` asks for (pure)."""
    fields = _process_field(spec, "ioPriority")
    if fields is None:
        return None
    name = fields.string("class", required=True)
    if name not in IOPRIO_CLASSES:
        raise ConfigError(
            fields.at("class"),
            f"unknown class {describe(name)} (IOPRIO_CLASS_RT, IOPRIO_CLASS_BE, IOPRIO_CLASS_IDLE)",
        )
    level = fields.integer("priority", required=True, minimum=0, maximum=7)
    assert level is not None
    return IOPRIO_CLASSES[name] << IOPRIO_CLASS_SHIFT | level


def check_io_priority(spec: Spec) -> None:
    io_priority_value(spec)


def apply_io_priority(sc: Syscalls, spec: Spec) -> None:
    """ioprio_set(2) on the init; fork and execve keep it."""
    value = io_priority_value(spec)
    if value is None:
        return
    try:
        sc.ioprio_set(IOPRIO_WHO_PROCESS, 0, value)
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno == errno.EPERM:
            reason += " (IOPRIO_CLASS_RT needs CAP_SYS_NICE or CAP_SYS_ADMIN)"
        raise CreateError(f"process.ioPriority: {reason}") from error


# -- process.execCPUAffinity -----------------------------------------------------------


def exec_cpu_affinity(spec: Spec) -> tuple[set[int] | None, set[int] | None]:
    """``(initial, final)`` CPU sets; None where the list is absent or empty (pure)."""
    fields = _process_field(spec, "execCPUAffinity")
    if fields is None:
        return None, None
    sets: list[set[int] | None] = []
    for key in ("initial", "final"):
        text = fields.string(key)
        sets.append(parse_id_list(text, fields.at(key), limit=MAX_CPU) if text.strip() else None)
    return sets[0], sets[1]


def check_exec_cpu_affinity(spec: Spec) -> None:
    exec_cpu_affinity(spec)


def apply_initial_cpu_affinity(sc: Syscalls, spec: Spec) -> None:
    """For ``exec`` only: the joining process's affinity before it enters the cgroup."""
    _set_affinity(sc, exec_cpu_affinity(spec)[0], "initial")


def apply_final_cpu_affinity(sc: Syscalls, spec: Spec) -> None:
    """For ``exec`` only: the affinity after the move into the cgroup, before execve."""
    _set_affinity(sc, exec_cpu_affinity(spec)[1], "final")


def _set_affinity(sc: Syscalls, cpus: set[int] | None, key: str) -> None:
    if cpus is None:
        return
    try:
        sc.sched_setaffinity(cpus)
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno == errno.EINVAL:  # no CPU of the set is online and allowed
            reason += " (none of these CPUs is online and allowed here)"
        raise CreateError(f"process.execCPUAffinity.{key}: {reason}") from error


def check_scheduling(spec: Spec) -> None:
    """All three fields of this module (pure)."""
    check_scheduler(spec)
    check_io_priority(spec)
    check_exec_cpu_affinity(spec)
