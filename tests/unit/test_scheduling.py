"""process.scheduler, ioPriority and execCPUAffinity: checks and the calls they make."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from corral.errors import ConfigError, CreateError, UnsupportedError
from corral.linux import scheduling
from corral.linux.scheduling import (
    IOPRIO_WHO_PROCESS,
    apply_final_cpu_affinity,
    apply_initial_cpu_affinity,
    apply_io_priority,
    apply_scheduler,
    check_scheduling,
    exec_cpu_affinity,
    io_priority_value,
    parse_id_list,
    scheduler_attr,
)
from corral.spec.model import Spec, parse_config


def make_spec(**process: Any) -> Spec:
    return parse_config(
        {
            "ociVersion": "1.2.0",
            "process": {"args": ["sh"], "cwd": "/", **process},
            "linux": {"namespaces": [{"type": "mount"}]},
        }
    )


class RecordingSyscalls:
    def __init__(self, fail: OSError | None = None) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.fail = fail

    def _record(self, *call: object) -> None:
        self.calls.append(call)
        if self.fail is not None:
            raise self.fail

    def sched_setattr(self, *args: int) -> None:
        self._record("sched_setattr", *args)

    def ioprio_set(self, which: int, who: int, ioprio: int) -> None:
        self._record("ioprio_set", which, who, ioprio)

    def sched_setaffinity(self, cpus: set[int]) -> None:
        self._record("sched_setaffinity", cpus)


# -- the list format ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-3,7", {0, 1, 2, 3, 7}),
        ("5", {5}),
        (" 1 , 2-2 ", {1, 2}),
        ("0,,1,", {0, 1}),
        ("3,1-2,1", {1, 2, 3}),
    ],
)
def test_id_lists(text: str, expected: set[int]) -> None:
    assert parse_id_list(text, "x", limit=100) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", '"a" in "a" is not a CPU number'),
        ("1-", '"1-" in "1-" is not a CPU number'),
        ("-1", "is not a CPU number"),
        ("0x3", "is not a CPU number"),
        ("3-1", 'range "3-1" runs backwards'),
        ("101", "CPU 101 is above the maximum 100"),
        ("0-200", "CPU 200 is above the maximum 100"),
        (",", "names no CPU"),
        ("", "names no CPU"),
    ],
)
def test_bad_id_lists(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_id_list(text, "some.field", limit=100)
    assert info.value.path == "some.field"
    assert message in str(info.value)


# -- process.scheduler ---------------------------------------------------------------


def test_no_scheduler_no_call() -> None:
    sc = RecordingSyscalls()
    apply_scheduler(sc, make_spec())  # type: ignore[arg-type]
    assert scheduler_attr(make_spec()) is None
    assert sc.calls == []


def test_other_with_nice() -> None:
    sc = RecordingSyscalls()
    apply_scheduler(sc, make_spec(scheduler={"policy": "SCHED_OTHER", "nice": -5}))  # type: ignore[arg-type]
    assert sc.calls == [("sched_setattr", 0, 0, -5, 0, 0, 0, 0)]


def test_fifo_with_priority_and_flags() -> None:
    attr = scheduler_attr(
        make_spec(
            scheduler={
                "policy": "SCHED_FIFO",
                "priority": 10,
                "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_KEEP_PARAMS"],
            }
        )
    )
    assert attr is not None
    assert attr.as_tuple() == (1, 0x11, 0, 10, 0, 0, 0)


def test_deadline_times_pass_through() -> None:
    attr = scheduler_attr(
        make_spec(
            scheduler={
                "policy": "SCHED_DEADLINE",
                "runtime": 1_000_000,
                "deadline": 5_000_000,
                "period": 10_000_000,
                "flags": ["SCHED_FLAG_DL_OVERRUN"],
            }
        )
    )
    assert attr is not None
    assert attr.as_tuple() == (6, 0x04, 0, 0, 1_000_000, 5_000_000, 10_000_000)


def test_deadline_period_zero_means_the_deadline() -> None:
    spec = make_spec(scheduler={"policy": "SCHED_DEADLINE", "runtime": 2048, "deadline": 4096})
    attr = scheduler_attr(spec)
    assert attr is not None and attr.period == 0


@pytest.mark.parametrize(
    ("scheduler", "path", "message"),
    [
        ({"policy": "SCHED_FAST"}, "policy", 'unknown policy "SCHED_FAST"'),
        ({"nice": 1}, "policy", "required field is missing"),
        ({"policy": "SCHED_OTHER", "nice": 20}, "nice", "above the maximum 19"),
        ({"policy": "SCHED_OTHER", "nice": -21}, "nice", "below the minimum -20"),
        ({"policy": "SCHED_FIFO"}, "priority", "SCHED_FIFO needs a priority from 1 to 99"),
        ({"policy": "SCHED_RR", "priority": 100}, "priority", "above the maximum 99"),
        ({"policy": "SCHED_BATCH", "priority": 3}, "priority", "must be 0 for SCHED_BATCH"),
        ({"policy": "SCHED_OTHER", "runtime": 5}, "runtime", "only SCHED_DEADLINE uses it"),
        ({"policy": "SCHED_RR", "priority": 1, "period": 9}, "period", "not SCHED_RR"),
        ({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_RECLAIM", "X"]}, "flags[1]",
         'unknown flag "X"'),
        ({"policy": "SCHED_DEADLINE", "runtime": 2048}, "deadline", "needs a deadline"),
        ({"policy": "SCHED_DEADLINE", "runtime": 1000, "deadline": 5000}, "runtime",
         "below the kernel's minimum 1024"),
        ({"policy": "SCHED_DEADLINE", "runtime": 6000, "deadline": 5000}, "runtime",
         "exceeds the deadline 5000"),
        ({"policy": "SCHED_DEADLINE", "runtime": 2048, "deadline": 5000, "period": 4000},
         "deadline", "exceeds the period 4000"),
        ({"policy": "SCHED_DEADLINE", "runtime": 2048, "deadline": 2**63}, "deadline",
         "not below 2^63"),
        ({"policy": "SCHED_OTHER", "nice": "5"}, "nice", "expected an integer"),
    ],
)  # fmt: skip
def test_scheduler_errors_name_the_field(
    scheduler: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        check_scheduling(make_spec(scheduler=scheduler))
    assert info.value.path == f"process.scheduler.{path}"
    assert message in str(info.value)


def test_iso_and_util_clamp_are_refused_as_unsupported() -> None:
    with pytest.raises(UnsupportedError, match="never merged"):
        scheduler_attr(make_spec(scheduler={"policy": "SCHED_ISO"}))
    with pytest.raises(UnsupportedError) as info:
        scheduler_attr(
            make_spec(scheduler={"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_UTIL_CLAMP_MAX"]})
        )
    assert info.value.path == "process.scheduler.flags[0]"


@pytest.mark.parametrize(
    ("err", "hint"),
    [(errno.EPERM, "CAP_SYS_NICE"), (errno.EBUSY, "CPU bandwidth"), (errno.EINVAL, "")],
)
def test_scheduler_failures_explain(err: int, hint: str) -> None:
    sc = RecordingSyscalls(fail=OSError(err, f"sched_setattr 1: {errno.errorcode[err]}"))
    with pytest.raises(CreateError) as info:
        apply_scheduler(sc, make_spec(scheduler={"policy": "SCHED_FIFO", "priority": 1}))  # type: ignore[arg-type]
    assert str(info.value).startswith("process.scheduler: sched_setattr 1:")
    assert hint in str(info.value)


# -- process.ioPriority --------------------------------------------------------------


@pytest.mark.parametrize(
    ("klass", "level", "value"),
    [("IOPRIO_CLASS_RT", 0, 1 << 13), ("IOPRIO_CLASS_BE", 4, 2 << 13 | 4),
     ("IOPRIO_CLASS_IDLE", 7, 3 << 13 | 7)],
)  # fmt: skip
def test_io_priority_values(klass: str, level: int, value: int) -> None:
    spec = make_spec(ioPriority={"class": klass, "priority": level})
    assert io_priority_value(spec) == value
    sc = RecordingSyscalls()
    apply_io_priority(sc, spec)  # type: ignore[arg-type]
    assert sc.calls == [("ioprio_set", IOPRIO_WHO_PROCESS, 0, value)]


@pytest.mark.parametrize(
    ("io", "path", "message"),
    [
        (
            {"class": "IOPRIO_CLASS_NONE", "priority": 0},
            "class",
            'unknown class "IOPRIO_CLASS_NONE"',
        ),
        ({"class": "IOPRIO_CLASS_BE", "priority": 8}, "priority", "above the maximum 7"),
        ({"class": "IOPRIO_CLASS_BE", "priority": -1}, "priority", "below the minimum 0"),
        ({"class": "IOPRIO_CLASS_BE"}, "priority", "required field is missing"),
        ({"priority": 1}, "class", "required field is missing"),
    ],
)
def test_io_priority_errors(io: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_scheduling(make_spec(ioPriority=io))
    assert info.value.path == f"process.ioPriority.{path}"
    assert message in str(info.value)


def test_io_priority_permission_error_says_what_is_needed() -> None:
    sc = RecordingSyscalls(fail=OSError(errno.EPERM, "ioprio_set 0x2000: Operation not permitted"))
    spec = make_spec(ioPriority={"class": "IOPRIO_CLASS_RT", "priority": 0})
    with pytest.raises(CreateError, match="IOPRIO_CLASS_RT needs CAP_SYS_NICE"):
        apply_io_priority(sc, spec)  # type: ignore[arg-type]
    untouched = RecordingSyscalls()
    apply_io_priority(untouched, make_spec())  # type: ignore[arg-type]
    assert untouched.calls == []


# -- process.execCPUAffinity ---------------------------------------------------------


def test_affinity_lists() -> None:
    spec = make_spec(execCPUAffinity={"initial": "0-1", "final": "3,5"})
    assert exec_cpu_affinity(spec) == ({0, 1}, {3, 5})
    sc = RecordingSyscalls()
    apply_initial_cpu_affinity(sc, spec)  # type: ignore[arg-type]
    apply_final_cpu_affinity(sc, spec)  # type: ignore[arg-type]
    assert sc.calls == [("sched_setaffinity", {0, 1}), ("sched_setaffinity", {3, 5})]


@pytest.mark.parametrize("affinity", [None, {}, {"initial": "", "final": "  "}])
def test_absent_or_empty_affinity_changes_nothing(affinity: dict[str, str] | None) -> None:
    spec = make_spec() if affinity is None else make_spec(execCPUAffinity=affinity)
    assert exec_cpu_affinity(spec) == (None, None)
    sc = RecordingSyscalls()
    apply_initial_cpu_affinity(sc, spec)  # type: ignore[arg-type]
    apply_final_cpu_affinity(sc, spec)  # type: ignore[arg-type]
    assert sc.calls == []


def test_only_initial_leaves_final_to_the_kernel() -> None:
    spec = make_spec(execCPUAffinity={"initial": "1"})
    sc = RecordingSyscalls()
    apply_final_cpu_affinity(sc, spec)  # type: ignore[arg-type]
    assert sc.calls == []


def test_affinity_errors() -> None:
    with pytest.raises(ConfigError) as info:
        check_scheduling(make_spec(execCPUAffinity={"initial": "0", "final": "2-1"}))
    assert info.value.path == "process.execCPUAffinity.final"
    with pytest.raises(ConfigError) as info:
        check_scheduling(make_spec(execCPUAffinity={"initial": f"{scheduling.MAX_CPU + 1}"}))
    assert info.value.path == "process.execCPUAffinity.initial"
    sc = RecordingSyscalls(fail=OSError(errno.EINVAL, "sched_setaffinity 9: Invalid argument"))
    with pytest.raises(CreateError, match=r"final: sched_setaffinity 9: .* \(none of these CPUs"):
        apply_final_cpu_affinity(sc, make_spec(execCPUAffinity={"final": "9"}))  # type: ignore[arg-type]
