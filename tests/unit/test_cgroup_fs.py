"""corral.linux.cgroups.fs: FsManager against a temporary tree that acts like cgroupfs.

:class:`FakeCgroupfs` stands in for the kernel side of ``corral.core.fastos`` as the
fs driver sees it: ``mkdir`` in a hierarchy makes the interface files a new cgroup has
(a v2 child's ``cgroup.controllers`` is its parent's ``subtree_control``), writes to
``cgroup.subtree_control``, ``cgroup.procs``, ``cgroup.freeze`` and ``freezer.state``
change the state as the kernel does, v1 memory keeps limit <= memory+swap (EINVAL)
and refuses a limit below ``memory.usage_in_bytes`` (EBUSY, as when reclaim fails),
and ``rmdir`` of a populated cgroup or one with children is EBUSY.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time

import pytest

from corral.core import fastos
from corral.errors import ConfigError, CorralError, CreateError
from corral.linux.cgroups import fs
from corral.linux.cgroups.fs import FsManager
from corral.linux.cgroups.hierarchy import Hierarchy
from corral.linux.cgroups.manager import manager_from_record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any

V2_CONTROLLERS = "cpuset cpu io memory pids"
V1_FILES = {
    "memory": {
        "memory.limit_in_bytes": "9223372036854771712",
        "memory.memsw.limit_in_bytes": "9223372036854771712",
        "memory.usage_in_bytes": "4096",
        "memory.soft_limit_in_bytes": "9223372036854771712",
        "memory.swappiness": "60",
    },
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "freezer": {"freezer.state": "THAWED"},
    "pids": {"pids.max": "max"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm"},
    "cpu": {"cpu.shares": "1024", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000"},
}
V2_FILES = {
    "memory": {"memory.max": "max", "memory.current": "8192", "memory.swap.max": "max"},
    "pids": {"pids.max": "max"},
    "cpu": {"cpu.max": "max 100000", "cpu.weight": "100"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "io": {"io.max": ""},
}


class FakeCgroupfs:
    """Plays the kernel's part behind ``fastos`` for directories under ``top``."""

    def __init__(self, top: Path) -> None:
        self.top = str(top)
        self.writes: list[tuple[str, str]] = []
        self.device_writes: list[tuple[str, str]] = []
        self.fds: dict[int, str] = {}
        self.refuse_controllers: set[str] = set()
        self.v1_root = f"{self.top}/v1"
        self.v2_root = f"{self.top}/unified"

    # -- layouts ----------------------------------------------------------------------

    def v2_host(self) -> Hierarchy:
        self._populate(self.v2_root, kind="v2", controllers=V2_CONTROLLERS)
        return Hierarchy("v2", self.v2_root, {})

    def v1_host(self, controllers: tuple[str, ...], *, unified: bool = False) -> Hierarchy:
        roots = {}
        for name in controllers:
            mount_point = f"{self.v1_root}/{name.replace('+', ',')}"
            self._populate(mount_point, kind=name)
            for part in name.split("+"):
                roots[part] = mount_point
        root_cpuset = roots.get("cpuset")
        if root_cpuset:
            self._put(f"{root_cpuset}/cpuset.cpus", "0-1")
            self._put(f"{root_cpuset}/cpuset.mems", "0")
        if unified:
            self._populate(self.v2_root, kind="v2", controllers="")
            return Hierarchy("hybrid", self.v2_root, roots)
        return Hierarchy("v1", None, roots)

    def _kind(self, path: str) -> str:
        if path.startswith(self.v2_root):
            return "v2"
        return path[len(self.v1_root) + 1 :].split("/", maxsplit=1)[0]

    def _populate(self, path: str, *, kind: str, controllers: str = "") -> None:
        os.makedirs(path, exist_ok=True)
        files = {"cgroup.procs": ""}
        if kind == "v2":
            files.update(
                {
                    "cgroup.controllers": controllers,
                    "cgroup.subtree_control": "",
                    "cgroup.freeze": "0",
                    "cgroup.events": "populated 0\nfrozen 0",
                }
            )
            for name in controllers.split():
                files.update(V2_FILES.get(name, {}))
        else:
            for name in kind.split("+"):
                files.update(V1_FILES.get(name, {}))
        for name, value in files.items():
            self._put(f"{path}/{name}", value)

    @staticmethod
    def _put(path: str, value: str) -> None:
        with open(path, "w") as file:
            file.write(value)

    @staticmethod
    def content(path: str) -> str:
        with open(path) as file:
            return file.read()

    # -- the fastos calls ---------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        return getattr(fastos, name)

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        os.mkdir(path, mode)
        kind = self._kind(path)
        controllers = ""
        if kind == "v2":
            controllers = self.content(f"{os.path.dirname(path)}/cgroup.subtree_control")
        self._populate(path, kind=kind, controllers=controllers)

    def rmdir(self, path: str) -> None:
        if not os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if any(entry.is_dir() for entry in os.scandir(path)):
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        if self.content(f"{path}/cgroup.procs").split():
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        for entry in os.scandir(path):
            os.unlink(entry.path)
        os.rmdir(path)

    def open(self, path: str, flags: int, mode: int = 0o777) -> int:
        fd = fastos.open(path, flags & ~os.O_TRUNC, mode)  # cgroupfs ignores O_TRUNC
        self.fds[fd] = path
        return fd

    def close(self, fd: int) -> None:
        self.fds.pop(fd, None)
        fastos.close(fd)

    def write(self, fd: int, data: bytes) -> int:
        path = self.fds[fd]
        value = data.decode()
        directory, name = os.path.split(path)
        self.writes.append((path, value))
        if name == "cgroup.subtree_control":
            offered = self.content(f"{directory}/cgroup.controllers").split()
            enabled = self.content(path).split()
            for word in value.split():
                controller = word[1:]
                if controller not in offered or controller in self.refuse_controllers:
                    raise OSError(errno.ENOENT if controller not in offered else errno.EBUSY, "")
                if word[0] == "+" and controller not in enabled:
                    enabled.append(controller)
            value = " ".join(enabled)
        elif name == "cgroup.procs":
            value = " ".join([*self.content(path).split(), value])
        elif name == "cgroup.freeze":
            self._put(f"{directory}/cgroup.events", f"populated 0\nfrozen {value}")
        elif name in ("devices.allow", "devices.deny"):
            self._device_write(directory, name == "devices.allow", value)
            self.device_writes.append((name, value))
            return len(data)
        elif name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
            limit, memsw = (
                (value, self.content(f"{directory}/memory.memsw.limit_in_bytes"))
                if name == "memory.limit_in_bytes"
                else (self.content(f"{directory}/memory.limit_in_bytes"), value)
            )
            if int(limit) > int(memsw):
                raise OSError(errno.EINVAL, "Invalid argument")
            if int(value) < int(self.content(f"{directory}/memory.usage_in_bytes")):
                # mem_cgroup_resize_max: reclaim could not bring the usage under it.
                raise OSError(errno.EBUSY, "Device or resource busy")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        return os.write(fd, value.encode())

    def _device_write(self, directory: str, allow: bool, line: str) -> None:
        """The v1 devices controller: its state (corral's model of it, which
        test_devices_root.py checks against the kernel) shown in devices.list."""
        from corral.linux.cgroups.devices import ANY, DeviceRule, parse_devices_list

        kind, numbers, access = [*line.split(), "rwm", "rwm"][:3]
        if kind == "a":
            if any(entry.is_dir() for entry in os.scandir(directory)):
                raise OSError(errno.EINVAL, "Invalid argument")  # no reset with children
            major = minor = ANY
        else:
            major, minor = (ANY if n == "*" else int(n) for n in numbers.split(":"))
        state = parse_devices_list(self.content(f"{directory}/devices.list"))
        if state is None:  # default allow: the file hides its exceptions; none here
            from corral.linux.cgroups.devices import DeviceState

            state = DeviceState(default_allow=True)
        state.apply(DeviceRule(allow, kind, major, minor, access))
        listed = (
            "a *:* rwm"
            if state.default_allow
            else "\n".join(entry.cgroup_string() for entry in state.entries())
        )
        self._put(f"{directory}/devices.list", listed)


@pytest.fixture
def cgroupfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCgroupfs]:
    fake = FakeCgroupfs(tmp_path)
    monkeypatch.setattr(fs, "fastos", fake)
    monkeypatch.setattr(fs, "FREEZE_TIMEOUT", 0.2)
    yield fake


def written(fake: FakeCgroupfs, suffix: str) -> list[str]:
    return [value for path, value in fake.writes if path.endswith(suffix)]


# -- placement and creation ------------------------------------------------------------


def test_v2_create_enables_the_controllers_in_every_ancestor(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v2_host()
    manager = FsManager(hierarchy, "/pod/c1")
    assert manager.unified_path == f"{cgroupfs.v2_root}/pod/c1"
    assert manager.v1_paths == {}
    manager.create()
    for ancestor in (cgroupfs.v2_root, f"{cgroupfs.v2_root}/pod"):
        assert cgroupfs.content(f"{ancestor}/cgroup.subtree_control") == V2_CONTROLLERS
    # the leaf holds the processes: it enables nothing, and offers every controller
    assert cgroupfs.content(f"{manager.unified_path}/cgroup.subtree_control") == ""
    assert cgroupfs.content(f"{manager.unified_path}/cgroup.controllers") == V2_CONTROLLERS
    assert manager.created == [f"{cgroupfs.v2_root}/pod", f"{cgroupfs.v2_root}/pod/c1"]


def test_v2_a_refused_controller_does_not_stop_the_others(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v2_host()
    cgroupfs.refuse_controllers = {"cpu"}
    FsManager(hierarchy, "/c1").create()
    assert cgroupfs.content(f"{cgroupfs.v2_root}/cgroup.subtree_control").split() == [
        "cpuset",
        "io",
        "memory",
        "pids",
    ]


def test_v2_relative_path_is_below_the_parent_of_the_own_cgroup(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v2_host()
    manager = FsManager(hierarchy, "c1", own={"": "/user.slice/session.scope"})
    assert manager.unified_path == f"{cgroupfs.v2_root}/user.slice/c1"


def test_v1_create_makes_one_directory_per_hierarchy(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("memory", "cpu+cpuacct", "cpuset", "freezer"))
    own = {"memory": "/api/x", "cpu": "/", "cpuacct": "/", "cpuset": "/", "freezer": "/f"}
    manager = FsManager(hierarchy, "c1", own=own)
    assert manager.v1_paths["freezer"] == f"{cgroupfs.v1_root}/freezer/f/c1"
    assert manager.v1_paths["memory"] == f"{cgroupfs.v1_root}/memory/api/x/c1"
    assert (
        manager.v1_paths["cpu"]
        == manager.v1_paths["cpuacct"]
        == (f"{cgroupfs.v1_root}/cpu,cpuacct/c1")
    )


def test_v1_relative_needs_the_own_cgroup_of_each_hierarchy(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("memory", "pids"))
    with pytest.raises(CorralError, match="has no base"):
        FsManager(hierarchy, "c1", own={"memory": "/"})


def test_v1_create_copies_the_parents_cpuset(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("cpuset", "memory"))
    manager = FsManager(hierarchy, "/a/c1")
    manager.create()
    for level in ("a", "a/c1"):
        assert cgroupfs.content(f"{cgroupfs.v1_root}/cpuset/{level}/cpuset.cpus") == "0-1"
        assert cgroupfs.content(f"{cgroupfs.v1_root}/cpuset/{level}/cpuset.mems") == "0"
    assert os.path.isdir(f"{cgroupfs.v1_root}/memory/a/c1")


def test_hybrid_joins_the_unified_tree_without_enabling_controllers(
    cgroupfs: FakeCgroupfs,
) -> None:
    hierarchy = cgroupfs.v1_host(("memory", "pids"), unified=True)
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    manager.add_process(4242)
    assert manager.unified_path == f"{cgroupfs.v2_root}/c1"
    assert cgroupfs.content(f"{cgroupfs.v2_root}/c1/cgroup.procs") == "4242"
    assert cgroupfs.content(f"{cgroupfs.v1_root}/memory/c1/cgroup.procs") == "4242"
    assert cgroupfs.content(f"{cgroupfs.v2_root}/cgroup.subtree_control") == ""


def test_co_mounted_controllers_are_joined_once(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("cpu+cpuacct",))
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    manager.add_process(7)
    assert written(cgroupfs, "/c1/cgroup.procs") == ["7"]


def test_record_round_trip(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("memory", "freezer"), unified=True)
    manager = FsManager(hierarchy, "/x/c1")
    manager.create()
    again = manager_from_record(manager.to_record())
    assert isinstance(again, FsManager)
    assert again.driver == "fs"
    assert (again.unified_path, again.v1_paths, again.created) == (
        manager.unified_path,
        manager.v1_paths,
        manager.created,
    )
    assert again.hierarchy.mode == "hybrid"
    assert again.spec is None


def test_an_existing_populated_cgroup_is_refused_and_nothing_is_left(
    cgroupfs: FakeCgroupfs,
) -> None:
    hierarchy = cgroupfs.v1_host(("memory", "freezer"))
    cgroupfs.mkdir(f"{cgroupfs.v1_root}/freezer/busy")
    cgroupfs._put(f"{cgroupfs.v1_root}/freezer/busy/cgroup.procs", "99")
    manager = FsManager(hierarchy, "/busy")
    with pytest.raises(CreateError, match="already has 1 process"):
        manager.create()
    assert not os.path.exists(f"{cgroupfs.v1_root}/memory/busy")  # made here: undone
    assert os.path.isdir(f"{cgroupfs.v1_root}/freezer/busy")  # not ours: kept


def test_an_existing_frozen_cgroup_is_refused(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v2_host()
    cgroupfs.mkdir(f"{cgroupfs.v2_root}/cold")
    cgroupfs._put(f"{cgroupfs.v2_root}/cold/cgroup.freeze", "1")
    with pytest.raises(CreateError, match="is frozen"):
        FsManager(hierarchy, "/cold").create()


def test_an_existing_empty_cgroup_is_taken(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v2_host()
    cgroupfs.mkdir(f"{cgroupfs.v2_root}/ready")
    manager = FsManager(hierarchy, "/ready")
    manager.create()
    assert manager.created == []


# -- processes ---------------------------------------------------------------------


def test_pids_include_sub_cgroups(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v2_host()
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    manager.add_process(30)
    cgroupfs.mkdir(f"{manager.unified_path}/inner")
    cgroupfs._put(f"{manager.unified_path}/inner/cgroup.procs", "12\n31\n")
    assert manager.pids() == [12, 30, 31]


def test_v1_freezer(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("freezer", "memory"), unified=True)
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    assert not manager.is_frozen()
    manager.freeze()
    assert cgroupfs.content(f"{cgroupfs.v1_root}/freezer/c1/freezer.state") == "FROZEN"
    assert manager.is_frozen()
    manager.thaw()
    assert not manager.is_frozen()
    # the v1 freezer is used on hybrid, not cgroup.freeze
    assert written(cgroupfs, "cgroup.freeze") == []


def test_v2_freeze_waits_for_frozen_in_cgroup_events(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v2_host()
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    manager.freeze()
    assert manager.is_frozen()
    manager.thaw()
    assert written(cgroupfs, "/c1/cgroup.freeze") == ["1", "0"]


def test_a_freeze_that_never_completes_is_undone(
    cgroupfs: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    hierarchy = cgroupfs.v2_host()
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    original = cgroupfs.write

    def stuck(fd: int, data: bytes) -> int:
        result = original(fd, data)
        if cgroupfs.fds[fd].endswith("cgroup.freeze"):
            cgroupfs._put(f"{manager.unified_path}/cgroup.events", "populated 1\nfrozen 0")
        return result

    monkeypatch.setattr(cgroupfs, "write", stuck)
    with pytest.raises(CorralError, match="did not freeze"):
        manager.freeze()
    assert not manager.is_frozen()


def test_pausing_without_any_freezer_is_an_error(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("memory",))
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    with pytest.raises(CorralError, match="cannot pause"):
        manager.freeze()


def test_kill_all_uses_cgroup_kill_for_sigkill(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v2_host()
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    assert manager.unified_path is not None
    cgroupfs._put(f"{manager.unified_path}/cgroup.kill", "")
    manager.kill_all(signal.SIGKILL)
    assert written(cgroupfs, "/c1/cgroup.kill") == ["1"]


def test_kill_all_signals_every_process_while_frozen(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("freezer",))
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    children = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]
    try:
        for child in children:
            manager.add_process(child.pid)
        manager.kill_all(signal.SIGTERM)
        assert [child.wait(timeout=5) for child in children] == [-signal.SIGTERM] * 2
    finally:
        for child in children:
            child.kill()
            child.wait()
    # frozen for the signals, then thawed as it was
    assert written(cgroupfs, "/c1/freezer.state")[0] == "FROZEN"
    assert written(cgroupfs, "/c1/freezer.state")[-1] == "THAWED"


def test_kill_all_keeps_a_paused_cgroup_paused_except_for_sigkill(
    cgroupfs: FakeCgroupfs,
) -> None:
    hierarchy = cgroupfs.v1_host(("freezer",))
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    manager.freeze()
    manager.kill_all(signal.SIGUSR1)  # no process: nothing to signal
    assert manager.is_frozen()
    manager.kill_all(signal.SIGKILL)
    assert not manager.is_frozen()  # a frozen v1 task dies only once thawed


# -- removal ---------------------------------------------------------------------------


def test_destroy_removes_sub_cgroups_and_created_parents(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("memory",), unified=True)
    cgroupfs.mkdir(f"{cgroupfs.v2_root}/kept")  # a parent that was there before
    manager = FsManager(hierarchy, "/kept/new/c1")
    manager.create()
    cgroupfs.mkdir(f"{manager.unified_path}/made-by-the-container")
    manager.destroy()
    assert os.path.isdir(f"{cgroupfs.v2_root}/kept")
    assert not os.path.exists(f"{cgroupfs.v2_root}/kept/new")
    assert not os.path.exists(f"{cgroupfs.v1_root}/memory/kept")
    manager.destroy()  # again: nothing left, no error


def test_destroy_keeps_a_parent_another_container_uses(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v2_host()
    first = FsManager(hierarchy, "/pod/c1")
    first.create()
    second = FsManager(hierarchy, "/pod/c2")
    second.create()
    first.destroy()
    assert os.path.isdir(f"{cgroupfs.v2_root}/pod/c2")
    second.destroy()  # it did not create /pod: the first one did, and kept it
    assert os.path.isdir(f"{cgroupfs.v2_root}/pod")


def test_destroy_of_a_populated_cgroup_fails_after_retries(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v2_host()
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    manager.add_process(5)
    started = time.monotonic()
    with pytest.raises(CorralError, match=r"removing cgroup .*/c1: Device or resource busy"):
        manager.destroy()
    assert time.monotonic() - started > 0.2  # it waited for the processes to go
    assert os.path.isdir(str(manager.unified_path))


# -- limits --------------------------------------------------------------------------


def test_v1_apply_writes_the_plan(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("memory", "pids", "cpuset"))
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    manager.apply({"memory": {"limit": 1 << 30, "swap": 1 << 30}, "pids": {"limit": 20}})
    directory = f"{cgroupfs.v1_root}/memory/c1"
    assert cgroupfs.content(f"{directory}/memory.limit_in_bytes") == str(1 << 30)
    assert cgroupfs.content(f"{directory}/memory.memsw.limit_in_bytes") == str(1 << 30)
    assert cgroupfs.content(f"{cgroupfs.v1_root}/pids/c1/pids.max") == "20"


def test_v1_lowering_memory_and_swap_retries_in_the_other_order(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("memory",))
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    manager.apply({"memory": {"limit": 1 << 30, "swap": 1 << 30}})
    manager.apply({"memory": {"limit": 1 << 20, "swap": 2 << 20}}, update=True)
    directory = f"{cgroupfs.v1_root}/memory/c1"
    assert cgroupfs.content(f"{directory}/memory.limit_in_bytes") == str(1 << 20)
    assert cgroupfs.content(f"{directory}/memory.memsw.limit_in_bytes") == str(2 << 20)


def test_v1_a_limit_below_the_usage_is_named_with_its_cause(cgroupfs: FakeCgroupfs) -> None:
    # update --memory 4k --memory-swap 4k on a container using 64 MiB: memsw first is
    # EINVAL (below the current limit) and set aside; the limit is EBUSY, the real cause.
    hierarchy = cgroupfs.v1_host(("memory",))
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    manager.apply({"memory": {"limit": 1 << 30, "swap": 1 << 30}})
    directory = f"{cgroupfs.v1_root}/memory/c1"
    cgroupfs._put(f"{directory}/memory.usage_in_bytes", str(64 << 20))
    with pytest.raises(ConfigError) as info:
        manager.apply({"memory": {"limit": 4096, "swap": 4096}}, update=True)
    assert info.value.path == "linux.resources.memory.limit"
    assert "Device or resource busy" in info.value.message
    assert "uses more memory than this" in info.value.message
    assert cgroupfs.content(f"{directory}/memory.limit_in_bytes") == str(1 << 30)
    # memsw was tried once (EINVAL) and not retried once the limit had failed for good.
    assert written(cgroupfs, "memory.memsw.limit_in_bytes").count("4096") == 1
    assert cgroupfs.content(f"{directory}/memory.memsw.limit_in_bytes") == str(1 << 30)


def test_v2_einval_is_retried_after_the_rest_of_its_controller_only(
    cgroupfs: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # cpu.max.burst above the current quota is EINVAL until cpu.max is raised; a pids
    # write in between (another controller, same v2 directory) does not end the wait.
    refused = {"cpu.max.burst": 1}
    plan = [
        ("/cg", "cpu.max.burst", "50000", "linux.resources.cpu.burst"),
        ("/cg", "pids.max", "10", "linux.resources.pids.limit"),
        ("/cg", "cpu.max", "100000 100000", "linux.resources.cpu.quota"),
    ]
    done: list[str] = []

    def write(path: str, value: str) -> None:
        name = path.rsplit("/", 1)[1]
        if refused.get(name):
            refused[name] -= 1
            raise OSError(errno.EINVAL, "Invalid argument")
        done.append(name)

    monkeypatch.setattr(fs, "_write", write)
    fs.write_all(plan)
    assert done == ["pids.max", "cpu.max", "cpu.max.burst"]
    refused["pids.max"] = 1  # the last write of its controller: final, named
    done.clear()
    with pytest.raises(ConfigError) as info:
        fs.write_all(plan[1:2])
    assert info.value.path == "linux.resources.pids.limit"


def test_v1_a_field_whose_controller_is_not_mounted_is_named(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("memory",))
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    with pytest.raises(ConfigError) as info:
        manager.apply({"pids": {"limit": 5}})
    assert info.value.path == "linux.resources.pids.limit"
    assert "the pids controller is not mounted" in str(info.value)


def test_v1_device_rules_go_to_the_devices_controller(cgroupfs: FakeCgroupfs) -> None:
    from corral.spec.default import default_spec
    from corral.spec.model import parse_config

    hierarchy = cgroupfs.v1_host(("devices", "memory"), unified=True)
    manager = FsManager(hierarchy, "/c1")
    manager.spec = parse_config(default_spec(["true"]))
    manager.create()
    manager.apply({})
    deny = written(cgroupfs, "/c1/devices.deny")
    allow = written(cgroupfs, "/c1/devices.allow")
    assert deny[0] == "a *:* rwm"
    assert "c 1:3 rwm" in allow  # /dev/null
    assert written(cgroupfs, "/c1/cgroup.procs") == []


def test_hybrid_without_a_devices_controller_uses_the_unified_tree(
    cgroupfs: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.linux.cgroups import devices
    from corral.spec.default import default_spec
    from corral.spec.model import parse_config

    attached: list[tuple[str, int]] = []
    monkeypatch.setattr(
        devices, "apply_v2_devices", lambda path, rules: attached.append((path, len(rules)))
    )
    hierarchy = cgroupfs.v1_host(("memory",), unified=True)
    manager = FsManager(hierarchy, "/c1")
    manager.spec = parse_config(default_spec(["true"]))
    manager.create()
    manager.apply({})
    assert [path for path, _count in attached] == [manager.unified_path]
    assert attached[0][1] > 1


# (Without a leading deny-all: that would reset the state, the config's nodes included.)
FUSE_RULES = [{"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}]


def created_with_devices(
    cgroupfs: FakeCgroupfs, hierarchy: Hierarchy, resources: dict[str, Any]
) -> tuple[FsManager, dict[str, Any]]:
    """A container's manager at create (config with a linux.devices node and
    ``resources``), and the cgroup record an update rebuilds it from."""
    from corral.spec.default import default_spec
    from corral.spec.model import parse_config

    document = default_spec(["true"])
    document["linux"]["devices"] = [{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]
    document["linux"]["resources"] = resources
    manager = FsManager(hierarchy, "/c1")
    manager.spec = parse_config(document)
    manager.create()
    manager.apply(resources)
    return manager, json.loads(json.dumps(manager.to_record()))


def test_v1_update_applies_device_rules_as_the_difference(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("devices", "pids"))
    _, record = created_with_devices(cgroupfs, hierarchy, {"pids": {"limit": 5}})
    devices_dir = f"{cgroupfs.v1_root}/devices/c1"
    listed = cgroupfs.content(f"{devices_dir}/devices.list").splitlines()
    assert "b 8:0 rwm" in listed  # the config's node
    assert "c 10:229 rw" not in listed
    cgroupfs.device_writes.clear()

    manager = manager_from_record(record)
    manager.apply({"pids": {"limit": 5}, "devices": FUSE_RULES}, update=True)
    assert cgroupfs.device_writes == [("devices.allow", "c 10:229 rw")]  # no reset
    after = cgroupfs.content(f"{devices_dir}/devices.list").splitlines()
    assert sorted(after) == sorted([*listed, "c 10:229 rw"])

    # containerd sends the same rules with every update: nothing to write, no error.
    cgroupfs.device_writes.clear()
    manager.apply({"pids": {"limit": 6}, "devices": FUSE_RULES}, update=True)
    assert cgroupfs.device_writes == []
    # Without devices in the (merged) resources the rules are left as they are.
    manager.apply({"pids": {"limit": 7}}, update=True)
    assert cgroupfs.device_writes == []
    assert cgroupfs.content(f"{cgroupfs.v1_root}/pids/c1/pids.max") == "7"

    # Taking the rule away revokes exactly it.
    manager.apply({"devices": []}, update=True)
    assert cgroupfs.device_writes == [("devices.deny", "c 10:229 rw")]
    assert sorted(cgroupfs.content(f"{devices_dir}/devices.list").splitlines()) == sorted(listed)


def test_v1_create_in_a_cgroup_with_children_needs_no_reset(cgroupfs: FakeCgroupfs) -> None:
    # An existing (empty) cgroup that already has the rules and a sub-cgroup: the kernel
    # refuses an "a" reset there (EINVAL); the difference is empty.
    hierarchy = cgroupfs.v1_host(("devices",))
    created_with_devices(cgroupfs, hierarchy, {"devices": FUSE_RULES})
    cgroupfs.mkdir(f"{cgroupfs.v1_root}/devices/c1/sub")
    cgroupfs.device_writes.clear()
    created_with_devices(cgroupfs, hierarchy, {"devices": FUSE_RULES})
    assert cgroupfs.device_writes == []


def test_a_bad_device_rule_in_an_update_changes_nothing(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("devices", "pids"))
    _, record = created_with_devices(cgroupfs, hierarchy, {})
    cgroupfs.writes.clear()
    manager = manager_from_record(record)
    hole = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 4, "access": "rw"},
        {"allow": False, "type": "c", "major": 4, "minor": 1, "access": "w"},
    ]
    for devices, field in (
        (hole, "devices[2]"),
        ([{"allow": True, "type": "x"}], "devices[0].type"),
    ):
        with pytest.raises(ConfigError) as info:
            manager.apply({"pids": {"limit": 3}, "devices": devices}, update=True)
        assert info.value.path == f"linux.resources.{field}"
    assert cgroupfs.writes == []  # checked before the pids limit was written


def test_device_update_without_the_nodes_in_the_record_is_refused(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("devices",))
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    record = manager.to_record()
    assert "deviceNodes" not in record  # no config: an older record looks like this
    with pytest.raises(CorralError, match=r"^linux.resources.devices: the state of this"):
        manager_from_record(record).apply({"devices": FUSE_RULES}, update=True)
    assert cgroupfs.device_writes == []


def test_v2_update_swaps_the_device_program(
    cgroupfs: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.linux.cgroups import devices

    attached: list[list[devices.DeviceRule]] = []
    monkeypatch.setattr(devices, "apply_v2_devices", lambda path, rules: attached.append(rules))
    hierarchy = cgroupfs.v2_host()
    _, record = created_with_devices(cgroupfs, hierarchy, {})
    manager = manager_from_record(record)
    manager.apply({"pids": {"limit": 4}}, update=True)
    assert len(attached) == 1  # create's only
    manager.apply({"devices": FUSE_RULES}, update=True)
    state = devices.device_state(attached[-1])
    assert (
        state.exceptions[("c", 10, 229)]
        == devices.device_state([devices.DeviceRule(True, "c", 10, 229, "rw")]).exceptions[
            ("c", 10, 229)
        ]
    )
    assert ("b", 8, 0) in state.exceptions  # the config's node stays allowed
    assert ("c", 1, 3) in state.exceptions  # and the standard devices


def test_check_before_update_compares_with_the_usage(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v1_host(("memory",))
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    with pytest.raises(ConfigError) as info:
        manager.apply({"memory": {"limit": 4096, "checkBeforeUpdate": True}}, update=True)
    assert info.value.path == "linux.resources.memory.limit"
    assert written(cgroupfs, "memory.limit_in_bytes") == []


def test_v2_apply_writes_the_plan_in_the_unified_directory(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v2_host()
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    manager.apply({"memory": {"limit": 1 << 30}, "pids": {"limit": 30}})
    assert cgroupfs.content(f"{manager.unified_path}/memory.max") == str(1 << 30)
    assert cgroupfs.content(f"{manager.unified_path}/pids.max") == "30"


def test_v2_a_controller_not_enabled_for_the_cgroup_is_named(cgroupfs: FakeCgroupfs) -> None:
    hierarchy = cgroupfs.v2_host()
    cgroupfs.refuse_controllers = {"pids"}
    manager = FsManager(hierarchy, "/c1")
    manager.create()
    with pytest.raises(ConfigError) as info:
        manager.apply({"pids": {"limit": 30}})
    assert info.value.path == "linux.resources.pids.limit"
    assert "the pids controller is not enabled" in str(info.value)


def test_v2_device_rules_become_a_program_on_the_cgroup(
    cgroupfs: FakeCgroupfs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.linux.cgroups import devices
    from corral.spec.default import default_spec
    from corral.spec.model import parse_config

    attached: list[str] = []
    monkeypatch.setattr(devices, "apply_v2_devices", lambda path, rules: attached.append(path))
    hierarchy = cgroupfs.v2_host()
    manager = FsManager(hierarchy, "/c1")
    manager.spec = parse_config(default_spec(["true"]))
    manager.create()
    manager.apply({})
    assert attached == [manager.unified_path]


def test_the_light_frozen_check_agrees_with_the_manager(cgroupfs: FakeCgroupfs) -> None:
    from corral.linux.cgroups import is_frozen_record

    for hierarchy in (cgroupfs.v2_host(), cgroupfs.v1_host(("freezer",), unified=True)):
        manager = FsManager(hierarchy, f"/c-{hierarchy.mode}")
        manager.create()
        assert not is_frozen_record(manager.to_record())
        manager.freeze()
        assert is_frozen_record(manager.to_record())
        assert is_frozen_record({"driver": "systemd", "fs": manager.to_record()})
        manager.thaw()
        assert not is_frozen_record(manager.to_record())
