"""linux.resources → cgroup v2 writes (plan_v2, controllers_needed)."""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest

from corral.errors import ConfigError
from corral.linux.cgroups.convert import write_plan
from corral.linux.cgroups.v2resources import controllers_needed, plan_v2

W = "linux.resources"

SPEC_EXAMPLE: dict[str, Any] = {
    "memory": {"limit": 536870912, "reservation": 536870912, "swap": 1073741824, "kernel": -1},
    "cpu": {
        "shares": 1024,
        "quota": 1000000,
        "burst": 1000000,
        "period": 500000,
        "cpus": "2-3",
        "mems": "0-7",
        "idle": 0,
    },
    "blockIO": {
        "weight": 10,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
        "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}],
    },
    "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}],
    "pids": {"limit": 32771},
    "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
    "unified": {
        "io.max": "259:0 rbps=2097152 wiops=120\n253:0 rbps=2097152 wiops=120",
        "hugetlb.1GB.max": "1073741824",
    },
    "devices": [{"allow": False, "access": "rwm"}],
}


def test_the_spec_example() -> None:
    assert plan_v2(SPEC_EXAMPLE) == [
        ("pids.max", "32771", f"{W}.pids.limit"),
        ("memory.swap.max", "536870912", f"{W}.memory.swap"),  # swap minus limit
        ("memory.max", "536870912", f"{W}.memory.limit"),
        ("memory.low", "536870912", f"{W}.memory.reservation"),
        ("io.weight", "default 1", f"{W}.blockIO.weight"),
        ("io.weight", "8:0 4950", f"{W}.blockIO.weightDevice[0].weight"),
        ("io.max", "8:0 rbps=600", f"{W}.blockIO.throttleReadBpsDevice[0].rate"),
        ("io.max", "8:16 wiops=300", f"{W}.blockIO.throttleWriteIOPSDevice[0].rate"),
        ("cpu.weight", "100", f"{W}.cpu.shares"),
        ("cpu.max.burst", "1000000", f"{W}.cpu.burst"),
        ("cpu.max", "1000000 500000", f"{W}.cpu.quota"),
        ("cpu.idle", "0", f"{W}.cpu.idle"),
        ("cpuset.cpus", "2-3", f"{W}.cpu.cpus"),
        ("cpuset.mems", "0-7", f"{W}.cpu.mems"),
        ("hugetlb.2MB.max", "209715200", f"{W}.hugepageLimits[0]"),
        ("rdma.max", "mlx5_1 hca_handle=3 hca_object=10000", f"{W}.rdma.mlx5_1"),
        ("io.max", "259:0 rbps=2097152 wiops=120", f'{W}.unified["io.max"]'),
        ("io.max", "253:0 rbps=2097152 wiops=120", f'{W}.unified["io.max"]'),
        ("hugetlb.1GB.max", "1073741824", f'{W}.unified["hugetlb.1GB.max"]'),
    ]


def test_controllers_needed() -> None:
    assert controllers_needed(SPEC_EXAMPLE) == {
        "pids",
        "memory",
        "io",
        "cpu",
        "cpuset",
        "hugetlb",
        "rdma",
    }
    assert controllers_needed({}) == set()
    assert controllers_needed({"unified": {"cgroup.max.depth": "3", "misc.max": "x 1"}}) == {"misc"}
    assert controllers_needed({"cpu": {"cpus": "0"}}) == {"cpuset"}
    with pytest.raises(ConfigError):
        controllers_needed({"memory": {"swappiness": 10}})


# --- memory --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("memory", "want"),
    [
        ({"limit": -1}, [("memory.swap.max", "max"), ("memory.max", "max")]),
        ({"limit": 100}, [("memory.max", "100")]),
        ({"limit": 100, "swap": -1}, [("memory.swap.max", "max"), ("memory.max", "100")]),
        ({"limit": 100, "swap": 100}, [("memory.swap.max", "0"), ("memory.max", "100")]),
        ({"limit": 100, "swap": 300}, [("memory.swap.max", "200"), ("memory.max", "100")]),
        ({"reservation": -1}, [("memory.low", "max")]),
        ({"kernelTCP": -1, "useHierarchy": True, "disableOOMKiller": False}, []),
        ({"checkBeforeUpdate": True}, []),
    ],
)
def test_memory(memory: dict[str, Any], want: list[tuple[str, str]]) -> None:
    assert [(f, v) for f, v, _p in plan_v2({"memory": memory})] == want


@pytest.mark.parametrize(
    ("memory", "field", "words"),
    [
        ({"swappiness": 60}, "swappiness", "no per-cgroup swappiness"),
        ({"kernelTCP": 1 << 20}, "kernelTCP", "no TCP buffer limit"),
        ({"disableOOMKiller": True}, "disableOOMKiller", "cannot turn the OOM killer off"),
        ({"useHierarchy": False}, "useHierarchy", "always hierarchical"),
        ({"swap": 1 << 20}, "swap", "needs a memory limit"),
        ({"limit": -1, "swap": 1 << 20}, "swap", "needs a memory limit"),
    ],
)
def test_v1_only_memory_fields_are_refused(memory: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan_v2({"memory": memory})
    assert info.value.path == f"{W}.memory.{field}"
    assert words in str(info.value)


def test_no_swap_accounting() -> None:
    files = {"memory.max", "memory.low"}
    assert plan_v2({"memory": {"limit": -1}}, files=files) == [
        ("memory.max", "max", f"{W}.memory.limit")
    ]
    with pytest.raises(ConfigError, match=r"memory.swap: swap accounting is off"):
        plan_v2({"memory": {"limit": 100, "swap": 200}}, files=files)


# --- cpu -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpu", "want"),
    [
        ({"quota": 50000}, [("cpu.max", "50000 100000")]),
        ({"quota": -1}, [("cpu.max", "max 100000")]),
        ({"period": 20000}, [("cpu.max", "max 20000")]),
        ({"quota": 5000, "period": 10000}, [("cpu.max", "5000 10000")]),
        ({"shares": 2}, [("cpu.weight", "1")]),
        ({"shares": 262144}, [("cpu.weight", "10000")]),
        ({"idle": 1, "shares": 512}, [("cpu.weight", "59"), ("cpu.idle", "1")]),
        ({"burst": 0}, [("cpu.max.burst", "0")]),
    ],
)
def test_cpu(cpu: dict[str, Any], want: list[tuple[str, str]]) -> None:
    assert [(f, v) for f, v, _p in plan_v2({"cpu": cpu})] == want


@pytest.mark.parametrize("field", ["realtimeRuntime", "realtimePeriod"])
def test_realtime_is_refused(field: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan_v2({"cpu": {field: 1000}})
    assert info.value.path == f"{W}.cpu.{field}"
    assert "no realtime" in str(info.value)


class FakeCpu:
    """cpu.max.burst <= quota at every step (kernel/sched/core.c tg_set_cfs_bandwidth)."""

    def __init__(self, quota: int | None, burst: int) -> None:
        self.quota, self.burst = quota, burst  # quota None = "max"

    def write(self, item: tuple[str, str, str]) -> None:
        name, value, _path = item
        quota, burst = self.quota, self.burst
        if name == "cpu.max":
            text = value.split()[0]
            quota = None if text == "max" else int(text)
        elif name == "cpu.max.burst":
            burst = int(value)
        if quota is not None and burst > quota:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        self.quota, self.burst = quota, burst


@pytest.mark.parametrize("now", [(None, 0), (10000, 10000), (200000, 100000), (5000, 0)])
@pytest.mark.parametrize("target", [(20000, 20000), (100000, 0), (300000, 250000), (1000, 500)])
def test_quota_and_burst_reach_any_target(
    now: tuple[int | None, int], target: tuple[int, int]
) -> None:
    cpu = FakeCpu(*now)
    plan = plan_v2({"cpu": {"quota": target[0], "burst": target[1]}})
    write_plan(plan, lambda item: item[0].partition(".")[0], cpu.write)
    assert (cpu.quota, cpu.burst) == target


# --- io ------------------------------------------------------------------------


def test_io_weight_without_bfq_is_converted() -> None:
    plan = plan_v2({"blockIO": {"weight": 1000}})
    assert plan == [("io.weight", "default 10000", f"{W}.blockIO.weight")]


def test_io_weight_with_bfq_is_as_given() -> None:
    block = {"weight": 750, "weightDevice": [{"major": 8, "minor": 0, "weight": 200}]}
    files = {"io.bfq.weight", "io.weight", "io.max"}
    assert [(f, v) for f, v, _p in plan_v2({"blockIO": block}, files=files)] == [
        ("io.bfq.weight", "750"),
        ("io.bfq.weight", "8:0 200"),
    ]


def test_io_max_rate_zero_is_max() -> None:
    block = {"throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 0}]}
    assert plan_v2({"blockIO": block})[0][:2] == ("io.max", "8:0 wbps=max")


@pytest.mark.parametrize(
    ("block", "path"),
    [
        ({"leafWeight": 100}, "blockIO.leafWeight"),
        ({"weightDevice": [{"major": 8, "minor": 0, "leafWeight": 9}]}, "blockIO.weightDevice[0]"),
    ],
)
def test_leaf_weights_are_refused(block: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan_v2({"blockIO": block})
    assert info.value.path.startswith(f"{W}.{path}")
    assert "no leaf weight" in str(info.value)


def test_no_io_weight_file() -> None:
    with pytest.raises(ConfigError, match=r"blockIO.weight: no io.weight .*neither io.cost"):
        plan_v2({"blockIO": {"weight": 100}}, files={"io.max"})


# --- network, hugetlb, unified -------------------------------------------------


@pytest.mark.parametrize(
    ("network", "field"),
    [({"classID": 5}, "classID"), ({"priorities": [{"name": "lo", "priority": 1}]}, "priorities")],
)
def test_network_is_refused(network: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan_v2({"network": network})
    assert info.value.path == f"{W}.network.{field}"
    assert "net_cls/net_prio" in str(info.value)


def test_network_with_only_unset_values_is_fine() -> None:
    assert plan_v2({"network": {"classID": 0, "priorities": []}}) == []


def test_hugetlb_reservation_when_present() -> None:
    limits = {"hugepageLimits": [{"pageSize": "2MB", "limit": 8 << 20}]}
    files = {"hugetlb.2MB.max", "hugetlb.2MB.rsvd.max"}
    assert [f for f, _v, _p in plan_v2(limits, files=files)] == [
        "hugetlb.2MB.max",
        "hugetlb.2MB.rsvd.max",
    ]
    assert [f for f, _v, _p in plan_v2(limits)] == ["hugetlb.2MB.max"]


def test_unified_is_last_and_wins_over_a_structured_field() -> None:
    plan = plan_v2({"memory": {"limit": 100}, "unified": {"memory.max": "200"}})
    assert [(f, v) for f, v, _p in plan] == [("memory.max", "100"), ("memory.max", "200")]


def test_unified_values_are_written_line_by_line() -> None:
    plan = plan_v2({"unified": {"io.max": "8:0 rbps=1\n\n8:16 wbps=2\n", "cpuset.cpus": ""}})
    assert [(f, v) for f, v, _p in plan] == [
        ("io.max", "8:0 rbps=1"),
        ("io.max", "8:16 wbps=2"),
        ("cpuset.cpus", ""),  # an empty value is one empty write
    ]


def test_unified_controller_not_available_is_an_error() -> None:
    files = {"memory.max", "cgroup.max.depth"}
    assert plan_v2({"unified": {"cgroup.max.depth": "2"}}, files=files)
    with pytest.raises(ConfigError) as info:
        plan_v2({"unified": {"rdma.max": "x hca_handle=1"}}, files=files)
    assert info.value.path == f'{W}.unified["rdma.max"]'
    assert "rdma controller is not enabled" in str(info.value)


# --- names against the kernel's documentation ----------------------------------

# The interface files named in Documentation/admin-guide/cgroup-v2.rst (sections
# CPU, Memory, IO, PID, Cpuset, RDMA, HugeTLB), plus io.bfq.weight from
# Documentation/block/bfq-iosched.rst.
DOCUMENTED = {
    "cpu.weight",
    "cpu.max",
    "cpu.max.burst",
    "cpu.idle",
    "memory.low",
    "memory.max",
    "memory.swap.max",
    "io.weight",
    "io.max",
    "io.bfq.weight",
    "pids.max",
    "cpuset.cpus",
    "cpuset.mems",
    "rdma.max",
}


def _documented(name: str) -> bool:
    # hugetlb.<hugepagesize>.max and hugetlb.<hugepagesize>.rsvd.max
    if name.startswith("hugetlb.") and name.endswith(".max"):
        return name.count(".") in (2, 3)
    return name in DOCUMENTED


def test_every_structured_file_is_a_documented_v2_file() -> None:
    resources = dict(SPEC_EXAMPLE)
    del resources["unified"]
    variants = [
        plan_v2(resources),
        plan_v2(
            resources,
            files={f for f, _v, _p in plan_v2(resources)}
            | {"io.bfq.weight", "hugetlb.2MB.rsvd.max", "memory.swap.max"},
        ),
    ]
    names = {name for plan in variants for name, _v, _p in plan}
    assert {"io.bfq.weight", "hugetlb.2MB.rsvd.max", "cpu.max.burst"} <= names
    assert [n for n in names if not _documented(n)] == []


def test_names_against_a_live_v2_cgroup_when_the_host_has_one() -> None:
    # On a host with controllers on cgroup2 (not this hybrid one: its cgroup2 has
    # none), the files of our own cgroup's parent must include the planned names of
    # the controllers enabled there.
    mount = "/sys/fs/cgroup" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else ""
    if not mount:
        pytest.skip("no cgroup2 mount at /sys/fs/cgroup with controllers")
    with open(f"{mount}/cgroup.subtree_control") as f:
        enabled = set(f.read().split())
    children = [e for e in os.listdir(mount) if os.path.isdir(os.path.join(mount, e))]
    if not enabled or not children:
        pytest.skip("no controllers enabled below the cgroup2 root")
    present = set(os.listdir(os.path.join(mount, children[0])))
    planned = {
        name for name, _v, _p in plan_v2({"pids": {"limit": 5}, "memory": {"limit": 1 << 30}})
    }
    for name in planned:
        if name.partition(".")[0] in enabled:
            assert name in present
