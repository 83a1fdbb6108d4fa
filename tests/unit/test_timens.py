"""The time namespace: offsets checked, their file format, and the order of the calls.

The calls are made against a directory that stands in for ``/proc`` (its
``self/ns/time*`` entries are plain files: one file twice, via a hard link, is
"not unshared yet") and a recording fake for unshare and setns.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from corral.errors import ConfigError, CreateError
from corral.linux.syscalls import CLONE_NEWTIME
from corral.linux.timens import (
    check_time_namespace,
    enter_time_namespace,
    offsets_text,
    time_offsets,
    write_time_offsets,
)
from corral.spec.model import Spec, parse_config


def make_spec(offsets: Any = None, namespace: dict[str, str] | None = None) -> Spec:
    namespaces: list[dict[str, str]] = [{"type": "mount"}]
    if namespace is not None:
        namespaces.append(namespace)
    linux: dict[str, Any] = {"namespaces": namespaces}
    if offsets is not None:
        linux["timeOffsets"] = offsets
    return parse_config({"ociVersion": "1.2.0", "linux": linux})


NEW_TIME = {"type": "time"}


class RecordingNamespaces:
    def __init__(self, proc: Path, setns_error: OSError | None = None) -> None:
        self.proc = proc
        self.calls: list[tuple[object, ...]] = []
        self.setns_error = setns_error

    def unshare(self, flags: int) -> None:
        self.calls.append(("unshare", flags))
        # After unshare(CLONE_NEWTIME), time_for_children is another namespace.
        ns = self.proc / "self" / "ns"
        (ns / "time_for_children").unlink()
        (ns / "time_for_children").write_text("new")

    def setns(self, fd: int, nstype: int, what: str = "") -> None:
        self.calls.append(("setns", os.readlink(f"/proc/self/fd/{fd}"), nstype, what))
        if self.setns_error is not None:
            raise self.setns_error


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    ns = tmp_path / "self" / "ns"
    ns.mkdir(parents=True)
    (ns / "time").write_text("host")
    os.link(ns / "time", ns / "time_for_children")
    (tmp_path / "self" / "timens_offsets").write_text("")
    return tmp_path


def test_offsets_are_read_with_defaults() -> None:
    spec = make_spec({"monotonic": {"secs": 86400}, "boottime": {"nanosecs": 5}}, NEW_TIME)
    assert time_offsets(spec) == {"monotonic": (86400, 0), "boottime": (0, 5)}
    assert offsets_text(time_offsets(spec)) == "monotonic 86400 0\nboottime 0 5\n"
    assert time_offsets(make_spec()) == {}


def test_negative_offsets_are_allowed() -> None:
    spec = make_spec({"boottime": {"secs": -30, "nanosecs": 999_999_999}}, NEW_TIME)
    assert offsets_text(time_offsets(spec)) == "boottime -30 999999999\n"


@pytest.mark.parametrize(
    ("offsets", "path", "message"),
    [
        ({"realtime": {"secs": 1}}, "linux.timeOffsets.realtime", 'unknown clock "realtime"'),
        ({"monotonic": {"nanosecs": 1_000_000_000}}, "linux.timeOffsets.monotonic.nanosecs",
         "above the maximum 999999999"),
        ({"monotonic": {"nanosecs": -1}}, "linux.timeOffsets.monotonic.nanosecs",
         "below the minimum 0"),
        ({"monotonic": {"secs": 2**63}}, "linux.timeOffsets.monotonic.secs", "above the maximum"),
        ({"boottime": {"secs": "1"}}, "linux.timeOffsets.boottime.secs", "expected an integer"),
        ({"boottime": 5}, "linux.timeOffsets.boottime", "expected an object"),
    ],
)  # fmt: skip
def test_offset_errors_name_the_field(offsets: Any, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_time_namespace(make_spec(offsets, NEW_TIME))
    assert info.value.path == path
    assert message in str(info.value)


def test_offsets_need_a_new_time_namespace() -> None:
    with pytest.raises(ConfigError, match=r'add \{"type": "time"\}'):
        check_time_namespace(make_spec({"monotonic": {"secs": 1}}))
    with pytest.raises(ConfigError, match="joined by path"):
        check_time_namespace(
            make_spec({"monotonic": {"secs": 1}}, {"type": "time", "path": "/proc/1/ns/time"})
        )
    check_time_namespace(make_spec({"monotonic": {"secs": 1}}, NEW_TIME))
    check_time_namespace(make_spec(None, {"type": "time", "path": "/proc/1/ns/time"}))


def test_enter_unshares_writes_then_joins(proc: Path) -> None:
    sc = RecordingNamespaces(proc)
    spec = make_spec({"monotonic": {"secs": 10}}, NEW_TIME)
    enter_time_namespace(sc, spec, proc=str(proc))  # type: ignore[arg-type]
    assert sc.calls == [
        ("unshare", CLONE_NEWTIME),
        ("setns", str(proc / "self" / "ns" / "time_for_children"), CLONE_NEWTIME,
         "time_for_children"),
    ]  # fmt: skip
    assert (proc / "self" / "timens_offsets").read_text() == "monotonic 10 0\n"


def test_enter_after_a_batched_unshare_does_not_unshare_again(proc: Path) -> None:
    ns = proc / "self" / "ns"
    (ns / "time_for_children").unlink()
    (ns / "time_for_children").write_text("already new")
    sc = RecordingNamespaces(proc)
    enter_time_namespace(sc, make_spec(None, NEW_TIME), proc=str(proc))  # type: ignore[arg-type]
    assert [call[0] for call in sc.calls] == ["setns"]
    assert (proc / "self" / "timens_offsets").read_text() == ""  # no offsets, no write


@pytest.mark.parametrize("namespace", [None, {"type": "time", "path": "/proc/1/ns/time"}])
def test_enter_does_nothing_without_a_new_time_namespace(
    proc: Path, namespace: dict[str, str] | None
) -> None:
    sc = RecordingNamespaces(proc)
    enter_time_namespace(sc, make_spec(None, namespace), proc=str(proc))  # type: ignore[arg-type]
    assert sc.calls == []


def test_kernel_without_time_namespaces(tmp_path: Path) -> None:
    (tmp_path / "self" / "ns").mkdir(parents=True)
    sc = RecordingNamespaces(tmp_path)
    with pytest.raises(CreateError, match="no time namespaces"):
        enter_time_namespace(sc, make_spec(None, NEW_TIME), proc=str(tmp_path))  # type: ignore[arg-type]


def test_a_threaded_init_is_told_why(proc: Path) -> None:
    sc = RecordingNamespaces(proc, setns_error=OSError(errno.EUSERS, "setns: Too many users"))
    with pytest.raises(CreateError, match="must be single-threaded"):
        enter_time_namespace(sc, make_spec(None, NEW_TIME), proc=str(proc))  # type: ignore[arg-type]


def test_write_offsets_for_another_pid(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "timens_offsets").write_text("")
    spec = make_spec({"boottime": {"secs": 3, "nanosecs": 4}}, NEW_TIME)
    write_time_offsets(spec, 42, proc=str(tmp_path))
    assert (tmp_path / "42" / "timens_offsets").read_text() == "boottime 3 4\n"
    with pytest.raises(CreateError, match=r"^linux\.timeOffsets: opening .*/43/timens_offsets"):
        write_time_offsets(spec, 43, proc=str(tmp_path))


def test_the_parent_can_write_the_offsets(proc: Path) -> None:
    """In a user namespace the init asks its parent, between unshare and setns."""
    sc = RecordingNamespaces(proc)
    spec = make_spec({"monotonic": {"secs": 10}}, NEW_TIME)
    enter_time_namespace(
        sc,  # type: ignore[arg-type]
        spec,
        write_offsets=lambda: sc.calls.append(("parent writes",)),
        proc=str(proc),
    )
    assert [call[0] for call in sc.calls] == ["unshare", "parent writes", "setns"]
    assert (proc / "self" / "timens_offsets").read_text() == ""


def test_no_offsets_no_request(proc: Path) -> None:
    sc = RecordingNamespaces(proc)
    enter_time_namespace(
        sc,  # type: ignore[arg-type]
        make_spec(None, NEW_TIME),
        write_offsets=lambda: sc.calls.append(("parent writes",)),
        proc=str(proc),
    )
    assert [call[0] for call in sc.calls] == ["unshare", "setns"]
