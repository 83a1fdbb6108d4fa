"""The warm-up migration that takes the cgroup RCU grace period off create's path."""

from __future__ import annotations

import os

import pytest

from corral.linux.cgroups import warmup
from corral.linux.cgroups.hierarchy import Hierarchy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warmup, "_pending", None)
    monkeypatch.setattr(warmup, "_started", False)


def layout(monkeypatch: pytest.MonkeyPatch, hierarchy: Hierarchy, own: dict[str, str]) -> None:
    monkeypatch.setattr("corral.linux.cgroups.hierarchy.detect", lambda: hierarchy)
    monkeypatch.setattr("corral.linux.cgroups.placement.read_own_cgroups", lambda: own)


def test_the_v2_tree_is_preferred(monkeypatch: pytest.MonkeyPatch) -> None:
    hybrid = Hierarchy(
        "hybrid", "/sys/fs/cgroup/unified", {"pids": "/sys/fs/cgroup/pids"}, {"": "/"}
    )
    layout(monkeypatch, hybrid, {"": "/user.slice/s", "pids": "/other"})
    assert warmup.own_procs_file() == "/sys/fs/cgroup/unified/user.slice/s/cgroup.procs"


def test_a_v1_hierarchy_and_the_root_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    v1 = Hierarchy("v1", None, {"cpu": "/sys/fs/cgroup/cpu,cpuacct"})
    layout(monkeypatch, v1, {"cpu": "/"})
    assert warmup.own_procs_file() == "/sys/fs/cgroup/cpu,cpuacct/cgroup.procs"


def test_a_mounted_subtree_is_followed_or_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Inside a container the cgroupfs may show a subtree: paths are below its root.
    hierarchy = Hierarchy(
        "v1",
        None,
        {"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"},
        {"memory": "/docker/abc", "pids": "/docker/abc"},
    )
    layout(monkeypatch, hierarchy, {"memory": "/elsewhere", "pids": "/docker/abc/sub"})
    assert warmup.own_procs_file() == "/sys/fs/cgroup/pids/sub/cgroup.procs"


def test_no_cgroupfs_means_no_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.errors import CorralError

    def missing() -> Hierarchy:
        raise CorralError("no cgroup filesystem is mounted")

    monkeypatch.setattr("corral.linux.cgroups.hierarchy.detect", missing)
    assert warmup.own_procs_file() is None
    warmup.start()
    assert warmup._pending is None
    warmup.finish()  # nothing to wait for


def test_the_thread_writes_this_pid_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    calls: list[int] = []

    def target() -> str:
        calls.append(1)
        return str(procs)

    monkeypatch.setattr(warmup, "own_procs_file", target)
    warmup.start()
    warmup.start()  # once per process
    warmup.finish()
    assert warmup._pending is None
    assert procs.read_text() == str(os.getpid())
    assert calls == [1]


def test_a_refused_write_is_no_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(warmup, "own_procs_file", lambda: str(tmp_path / "missing" / "procs"))
    warmup.start()
    warmup.finish()
    assert warmup._pending is None
