"""linux.resources → cgroup v1 writes (plan_v1) and the writer's ordering contract."""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest

from corral.errors import ConfigError
from corral.linux.cgroups.convert import WriteFailed, write_plan
from corral.linux.cgroups.v1resources import CONTROLLERS, plan_v1

W = "linux.resources"

# config-linux.md's examples, together (network and no unified: this is v1).
SPEC_EXAMPLE: dict[str, Any] = {
    "memory": {
        "limit": 536870912,
        "reservation": 536870912,
        "swap": 536870912,
        "kernel": -1,
        "kernelTCP": -1,
        "swappiness": 0,
        "disableOOMKiller": False,
    },
    "cpu": {
        "shares": 1024,
        "quota": 1000000,
        "burst": 1000000,
        "period": 500000,
        "realtimeRuntime": 950000,
        "realtimePeriod": 1000000,
        "cpus": "2-3",
        "mems": "0-7",
        "idle": 0,
    },
    "blockIO": {
        "weight": 10,
        "leafWeight": 10,
        "weightDevice": [
            {"major": 8, "minor": 0, "weight": 500, "leafWeight": 300},
            {"major": 8, "minor": 16, "weight": 500},
        ],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
        "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}],
    },
    "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}],
    "network": {
        "classID": 1048577,
        "priorities": [{"name": "eth0", "priority": 500}, {"name": "eth1", "priority": 1000}],
    },
    "pids": {"limit": 32771},
    "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
    "devices": [{"allow": False, "access": "rwm"}],
}


def files_of(resources: dict[str, Any], **kwargs: Any) -> dict[tuple[str, str], list[str]]:
    plan = plan_v1(resources, **kwargs)
    out: dict[tuple[str, str], list[str]] = {}
    for controller, name, value, _path in plan:
        out.setdefault((controller, name), []).append(value)
    return out


def test_the_spec_example() -> None:
    plan = plan_v1(SPEC_EXAMPLE)
    assert plan == [
        ("cpuset", "cpuset.cpus", "2-3", f"{W}.cpu.cpus"),
        ("cpuset", "cpuset.mems", "0-7", f"{W}.cpu.mems"),
        ("memory", "memory.memsw.limit_in_bytes", "536870912", f"{W}.memory.swap"),
        ("memory", "memory.limit_in_bytes", "536870912", f"{W}.memory.limit"),
        ("memory", "memory.soft_limit_in_bytes", "536870912", f"{W}.memory.reservation"),
        ("memory", "memory.kmem.tcp.limit_in_bytes", "-1", f"{W}.memory.kernelTCP"),
        ("memory", "memory.swappiness", "0", f"{W}.memory.swappiness"),
        ("memory", "memory.oom_control", "0", f"{W}.memory.disableOOMKiller"),
        ("cpu", "cpu.shares", "1024", f"{W}.cpu.shares"),
        ("cpu", "cpu.cfs_burst_us", "1000000", f"{W}.cpu.burst"),
        ("cpu", "cpu.cfs_period_us", "500000", f"{W}.cpu.period"),
        ("cpu", "cpu.cfs_quota_us", "1000000", f"{W}.cpu.quota"),
        ("cpu", "cpu.rt_period_us", "1000000", f"{W}.cpu.realtimePeriod"),
        ("cpu", "cpu.rt_runtime_us", "950000", f"{W}.cpu.realtimeRuntime"),
        ("cpu", "cpu.idle", "0", f"{W}.cpu.idle"),
        ("pids", "pids.max", "32771", f"{W}.pids.limit"),
        ("blkio", "blkio.weight", "10", f"{W}.blockIO.weight"),
        ("blkio", "blkio.leaf_weight", "10", f"{W}.blockIO.leafWeight"),
        ("blkio", "blkio.weight_device", "8:0 500", f"{W}.blockIO.weightDevice[0].weight"),
        (
            "blkio",
            "blkio.leaf_weight_device",
            "8:0 300",
            f"{W}.blockIO.weightDevice[0].leafWeight",
        ),
        ("blkio", "blkio.weight_device", "8:16 500", f"{W}.blockIO.weightDevice[1].weight"),
        (
            "blkio",
            "blkio.throttle.read_bps_device",
            "8:0 600",
            f"{W}.blockIO.throttleReadBpsDevice[0].rate",
        ),
        (
            "blkio",
            "blkio.throttle.write_iops_device",
            "8:16 300",
            f"{W}.blockIO.throttleWriteIOPSDevice[0].rate",
        ),
        ("hugetlb", "hugetlb.2MB.limit_in_bytes", "209715200", f"{W}.hugepageLimits[0]"),
        ("net_cls", "net_cls.classid", "1048577", f"{W}.network.classID"),
        ("net_prio", "net_prio.ifpriomap", "eth0 500", f"{W}.network.priorities[0]"),
        ("net_prio", "net_prio.ifpriomap", "eth1 1000", f"{W}.network.priorities[1]"),
        ("rdma", "rdma.max", "mlx5_1 hca_handle=3 hca_object=10000", f"{W}.rdma.mlx5_1"),
    ]
    # every controller named is one plan_v1 declares, in its declared order
    order = [CONTROLLERS.index(c) for c, _f, _v, _p in plan]
    assert order == sorted(order)


def test_nothing_set_writes_nothing() -> None:
    assert plan_v1({}) == []
    zeros = {
        "memory": {"limit": 0, "swap": 0, "reservation": 0},
        "cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": ""},
        "blockIO": {"weight": 0},
        "network": {"classID": 0},
        "pids": None,
    }
    assert plan_v1(zeros) == []


def test_pids_minus_one_is_max_and_zero_is_zero() -> None:
    assert files_of({"pids": {"limit": -1}}) == {("pids", "pids.max"): ["max"]}
    assert files_of({"pids": {"limit": 0}}) == {("pids", "pids.max"): ["0"]}


def test_unlimited_memory_lifts_memsw_too() -> None:
    plan = plan_v1({"memory": {"limit": -1}})
    assert plan == [
        ("memory", "memory.memsw.limit_in_bytes", "-1", f"{W}.memory.limit"),
        ("memory", "memory.limit_in_bytes", "-1", f"{W}.memory.limit"),
    ]


def test_limit_alone_leaves_memsw_alone() -> None:
    assert files_of({"memory": {"limit": 1 << 20}}) == {
        ("memory", "memory.limit_in_bytes"): [str(1 << 20)]
    }


def test_oom_killer_and_hierarchy_flags() -> None:
    out = files_of({"memory": {"disableOOMKiller": True, "useHierarchy": True}})
    assert out == {
        ("memory", "memory.oom_control"): ["1"],
        ("memory", "memory.use_hierarchy"): ["1"],
    }


def test_unified_is_refused_on_v1() -> None:
    with pytest.raises(ConfigError) as info:
        plan_v1({"unified": {"memory.max": "1"}})
    assert info.value.path == f"{W}.unified"
    assert "cgroup v2" in str(info.value)
    assert plan_v1({"unified": {}}) == []  # empty means unset


def test_kernel_memory_is_refused_but_minus_one_is_fine() -> None:
    assert plan_v1({"memory": {"kernel": -1}}) == []
    with pytest.raises(ConfigError, match=r"linux.resources.memory.kernel: kernel memory"):
        plan_v1({"memory": {"kernel": 1 << 30}})


def test_where_and_source_are_used_in_paths() -> None:
    plan = plan_v1({"pids": {"limit": 5}}, where="")
    assert plan == [("pids", "pids.max", "5", "pids.limit")]
    with pytest.raises(ConfigError, match=r"^upd\.json: pids\.limit: "):
        plan_v1({"pids": {"limit": -3}}, where="", source="upd.json")


# --- what the host's files decide ----------------------------------------------

MEMORY_FILES = {"memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.swappiness"}


def test_no_swap_accounting() -> None:
    files = MEMORY_FILES
    # unlimited: nothing to write for swap
    assert files_of({"memory": {"limit": -1}}, files=files) == {
        ("memory", "memory.limit_in_bytes"): ["-1"]
    }
    assert files_of({"memory": {"limit": 10 << 20, "swap": -1}}, files=files) == {
        ("memory", "memory.limit_in_bytes"): [str(10 << 20)]
    }
    with pytest.raises(ConfigError) as info:
        plan_v1({"memory": {"limit": 10 << 20, "swap": 20 << 20}}, files=files)
    assert info.value.path == f"{W}.memory.swap"
    assert "swap accounting" in str(info.value)


def test_bfq_names_and_no_leaf_weight() -> None:
    files = {"blkio.bfq.weight", "blkio.bfq.weight_device"}
    block = {"weight": 100, "weightDevice": [{"major": 8, "minor": 0, "weight": 200}]}
    assert files_of({"blockIO": block}, files=files) == {
        ("blkio", "blkio.bfq.weight"): ["100"],
        ("blkio", "blkio.bfq.weight_device"): ["8:0 200"],
    }
    with pytest.raises(ConfigError, match=r"blockIO.leafWeight: the BFQ"):
        plan_v1({"blockIO": {"leafWeight": 100}}, files=files)
    leaf_device = {"weightDevice": [{"major": 8, "minor": 0, "leafWeight": 5}]}
    with pytest.raises(ConfigError, match=r"weightDevice\[0\].leafWeight: the BFQ"):
        plan_v1({"blockIO": leaf_device}, files=files)


def test_no_weight_file_at_all_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        plan_v1({"blockIO": {"weight": 100}}, files={"blkio.throttle.read_bps_device"})
    assert info.value.path == f"{W}.blockIO.weight"
    assert "neither CFQ nor BFQ" in str(info.value)


def test_hugetlb_reservation_files_when_present() -> None:
    limits = {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]}
    files = {"hugetlb.2MB.limit_in_bytes", "hugetlb.2MB.rsvd.limit_in_bytes"}
    assert files_of(limits, files=files) == {
        ("hugetlb", "hugetlb.2MB.limit_in_bytes"): [str(4 << 20)],
        ("hugetlb", "hugetlb.2MB.rsvd.limit_in_bytes"): [str(4 << 20)],
    }
    with pytest.raises(ConfigError, match=r"hugepageLimits\[0\]: no hugetlb.2MB"):
        plan_v1(limits, files={"hugetlb.1GB.limit_in_bytes"})


def test_a_controller_that_is_not_mounted_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        plan_v1({"network": {"classID": 7}}, files=MEMORY_FILES)
    assert info.value.path == f"{W}.network.classID"
    assert "net_cls controller is not mounted" in str(info.value)


# --- the ordering contract -----------------------------------------------------

MAX = 9223372036854771712  # what v1 reads back for -1


class FakeMemcg:
    """memory.limit_in_bytes <= memory.memsw.limit_in_bytes at every step, as the kernel."""

    def __init__(self, limit: int, memsw: int) -> None:
        self.values = {"memory.limit_in_bytes": limit, "memory.memsw.limit_in_bytes": memsw}
        self.log: list[str] = []

    def write(self, item: tuple[str, str, str, str]) -> None:
        _controller, name, text, _path = item
        value = MAX if int(text) == -1 else int(text)
        new = dict(self.values, **{name: value})
        self.log.append(f"{name}={text}")
        if new["memory.limit_in_bytes"] > new["memory.memsw.limit_in_bytes"]:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        self.values = new


M = 1 << 20
STATES = [(M, M), (M, 2 * M), (4 * M, 4 * M), (4 * M, 8 * M), (MAX, MAX), (2 * M, MAX)]


@pytest.mark.parametrize("now", STATES)
@pytest.mark.parametrize("target", [(M, M), (M, 3 * M), (8 * M, 8 * M), (6 * M, -1), (-1, -1)])
def test_memory_and_swap_reach_any_target(now: tuple[int, int], target: tuple[int, int]) -> None:
    memcg = FakeMemcg(*now)
    plan = plan_v1({"memory": {"limit": target[0], "swap": target[1]}})
    write_plan(plan, lambda item: item[0], memcg.write)
    want = tuple(MAX if v == -1 else v for v in target)
    assert (
        memcg.values["memory.limit_in_bytes"],
        memcg.values["memory.memsw.limit_in_bytes"],
    ) == want, memcg.log


def test_the_retry_is_needed_when_swap_drops_below_the_current_limit() -> None:
    memcg = FakeMemcg(8 * M, 16 * M)
    plan = plan_v1({"memory": {"limit": M, "swap": 2 * M}})
    write_plan(plan, lambda item: item[0], memcg.write)
    assert memcg.log == [
        f"memory.memsw.limit_in_bytes={2 * M}",  # refused: below the limit of the moment
        f"memory.limit_in_bytes={M}",
        f"memory.memsw.limit_in_bytes={2 * M}",
    ]


def test_a_failure_that_stands_is_reported_with_its_tuple() -> None:
    def busy(item: tuple[str, str, str, str]) -> None:
        if item[1] == "memory.limit_in_bytes":
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))

    plan = plan_v1({"memory": {"limit": M, "reservation": M}})
    with pytest.raises(WriteFailed) as info:
        write_plan(plan, lambda item: item[0], busy)
    assert info.value.item[3] == f"{W}.memory.limit"
    assert info.value.error.errno == errno.EBUSY


def test_einval_on_the_last_write_of_a_controller_is_final() -> None:
    calls: list[str] = []

    def refuse_period(item: tuple[str, str, str, str]) -> None:
        calls.append(item[1])
        if item[1] == "cpu.cfs_quota_us":
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    plan = plan_v1({"cpu": {"period": 100000, "quota": 50000}, "pids": {"limit": 3}})
    with pytest.raises(WriteFailed) as info:
        write_plan(plan, lambda item: item[0], refuse_period)
    assert info.value.item[3] == f"{W}.cpu.quota"
    assert calls == ["cpu.cfs_period_us", "cpu.cfs_quota_us"]  # pids never reached


# --- the names against this host's v1 hierarchy --------------------------------

EVERYTHING: dict[str, Any] = {
    **SPEC_EXAMPLE,
    "memory": {**SPEC_EXAMPLE["memory"], "useHierarchy": True, "disableOOMKiller": True},
}


def _child_dir(controller: str) -> str | None:
    """A non-root cgroup of ``controller`` on this host (the root lacks e.g. pids.max)."""
    root = f"/sys/fs/cgroup/{controller}"
    if not os.path.isdir(root):
        return None
    for entry in sorted(os.listdir(root)):
        if os.path.isdir(os.path.join(root, entry)):
            return os.path.join(root, entry)
    return None


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_each_emitted_file_exists_on_this_hosts_v1_hierarchy(controller: str) -> None:
    directory = _child_dir(controller)
    if directory is None:
        pytest.skip(f"no v1 {controller} hierarchy with a child cgroup on this host")
    present = set(os.listdir(directory))
    names = {name for c, name, _v, _p in plan_v1(EVERYTHING) if c == controller}
    assert names
    missing = names - present
    # Names that depend on the host's kernel: CFQ's blkio weights exist only with CFQ
    # (gone since 5.0), hugetlb files only for the host's page sizes.
    optional = {n for n in missing if n.startswith("blkio.") and "weight" in n}
    optional |= {n for n in missing if n.startswith("hugetlb.")}
    assert missing - optional == set(), directory
