"""linux.resources readers and the v1 → v2 conversions (corral.linux.cgroups.convert)."""

from __future__ import annotations

from typing import Any

import pytest

from corral.errors import ConfigError
from corral.linux.cgroups.convert import (
    blkio_weight_to_io_weight,
    check_memory_update,
    check_resources,
    parse_page_size,
    read_block_io,
    read_cpu,
    read_hugepages,
    read_memory,
    read_network,
    read_pids,
    read_rdma,
    read_unified,
    shares_to_weight,
    swap_to_v2,
)

W = "linux.resources"
S = "config.json"


def config_error(fn: Any, *args: Any, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    return info.value


# --- shares → weight -----------------------------------------------------------


def test_shares_weight_keeps_the_defaults_and_ends() -> None:
    assert shares_to_weight(1024) == 100  # v1 default → v2 default
    assert shares_to_weight(2) == 1
    assert shares_to_weight(262144) == 10000
    # outside the kernel's v1 range: clamped like the kernel clamps cpu.shares
    assert shares_to_weight(1) == 1
    assert shares_to_weight(10**9) == 10000


def test_shares_weight_is_monotonic_and_in_range() -> None:
    previous = 0
    for shares in range(2, 262145, 97):
        weight = shares_to_weight(shares)
        assert 1 <= weight <= 10000
        assert weight >= previous
        previous = weight
    assert shares_to_weight(512) < 100 < shares_to_weight(2048)


def test_blkio_weight_maps_the_v1_range_onto_the_v2_range() -> None:
    assert blkio_weight_to_io_weight(10) == 1
    assert blkio_weight_to_io_weight(1000) == 10000
    assert blkio_weight_to_io_weight(500) == 1 + 490 * 9999 // 990
    assert blkio_weight_to_io_weight(1) == 1  # BFQ allows 1..9: clamped to the bottom


# --- swap ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("swap", "limit", "want"),
    [
        (None, None, None),  # nothing said
        (None, 1000, None),  # a limit alone leaves swap alone
        (None, -1, -1),  # unlimited memory: unlimited swap too
        (-1, 1000, -1),
        (3000, 1000, 2000),  # memory+swap minus memory
        (1000, 1000, 0),  # equal: no swap at all
    ],
)
def test_swap_to_v2(swap: int | None, limit: int | None, want: int | None) -> None:
    assert swap_to_v2(swap, limit, "p", source=S) == want


def test_swap_without_a_memory_limit_is_refused() -> None:
    error = config_error(swap_to_v2, 2000, None, "linux.resources.memory.swap", source=S)
    assert error.path == "linux.resources.memory.swap"
    assert "needs a memory limit" in str(error)
    assert "needs a memory limit" in str(config_error(swap_to_v2, 2000, -1, "p", source=S))


def test_swap_below_the_limit_is_refused() -> None:
    assert "below the memory limit" in str(config_error(swap_to_v2, 10, 20, "p", source=S))


# --- page sizes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("2MB", 2 << 20), ("1GB", 1 << 30), ("64KB", 64 << 10), ("512B", 512), ("16GB", 16 << 30)],
)
def test_page_sizes(text: str, size: int) -> None:
    assert parse_page_size(text) == size


@pytest.mark.parametrize("text", ["", "2M", "2mb", "MB", "02MB", "2 MB", "2XB", "-2MB", "2MiB"])
def test_bad_page_sizes(text: str) -> None:
    assert parse_page_size(text) == 0


# --- memory --------------------------------------------------------------------


def test_memory_zero_is_unset_and_minus_one_unlimited() -> None:
    out = read_memory({"memory": {"limit": 0, "reservation": -1, "swap": 0, "kernelTCP": 0}}, W, S)
    assert out == {"reservation": -1}


def test_memory_values_and_flags() -> None:
    memory = {
        "limit": 100 << 20,
        "swap": 200 << 20,
        "swappiness": 0,
        "disableOOMKiller": False,
        "useHierarchy": True,
        "checkBeforeUpdate": True,
        "kernel": -1,
    }
    out = read_memory({"memory": memory}, W, S)
    assert out == {
        "limit": 100 << 20,
        "swap": 200 << 20,
        "swappiness": 0,
        "disableOOMKiller": False,
        "useHierarchy": True,
        "checkBeforeUpdate": True,
    }


@pytest.mark.parametrize(
    ("memory", "path", "words"),
    [
        ({"limit": -5}, "memory.limit", "not -5"),
        ({"limit": True}, "memory.limit", "integer, not true"),
        ({"limit": "1g"}, "memory.limit", "integer, not '1g'"),
        ({"limit": 1.5}, "memory.limit", "integer"),
        ({"swappiness": 101}, "memory.swappiness", "0 to 100, not 101"),
        ({"swappiness": -1}, "memory.swappiness", "not -1"),
        ({"disableOOMKiller": 1}, "memory.disableOOMKiller", "true or false"),
        ({"kernel": 1 << 30}, "memory.kernel", "not enforced"),
        ({"limit": 200, "swap": 100}, "memory.swap", "below the memory limit 200"),
        ({"limit": 1 << 63}, "memory.limit", "not 9223372036854775808"),
    ],
)
def test_memory_errors_name_the_field(memory: dict[str, Any], path: str, words: str) -> None:
    error = config_error(read_memory, {"memory": memory}, W, S)
    assert error.path == f"{W}.{path}"
    assert words in str(error)
    assert "\n" not in str(error)


def test_a_section_that_is_not_an_object() -> None:
    assert config_error(read_memory, {"memory": [1]}, W, S).path == f"{W}.memory"
    assert config_error(read_cpu, {"cpu": "x"}, W, S).path == f"{W}.cpu"


def test_empty_where_gives_bare_paths_and_the_source_prefix() -> None:
    error = config_error(read_memory, {"memory": {"limit": -2}}, "", "update.json")
    assert error.path == "memory.limit"
    assert str(error).startswith("update.json: memory.limit: ")


# --- cpu -----------------------------------------------------------------------


def test_cpu_unset_rules() -> None:
    cpu: dict[str, Any] = {
        "shares": 0,
        "quota": 0,
        "period": 0,
        "realtimePeriod": 0,
        "realtimeRuntime": 0,
    }
    cpu |= {"cpus": "", "mems": "", "burst": 0, "idle": 0}
    # 0 is a value for burst and idle only
    assert read_cpu({"cpu": cpu}, W, S) == {"burst": 0, "idle": 0}


def test_cpu_values() -> None:
    cpu = {"shares": 512, "quota": -1, "period": 100000, "cpus": "0-1,3", "mems": "0"}
    assert read_cpu({"cpu": cpu}, W, S) == cpu


@pytest.mark.parametrize(
    ("cpu", "path", "words"),
    [
        ({"shares": 1}, "cpu.shares", "2 to 262144, not 1"),
        ({"shares": 262145}, "cpu.shares", "not 262145"),
        ({"shares": -3}, "cpu.shares", "not -3"),
        ({"quota": -2}, "cpu.quota", "not -2"),
        ({"quota": 50000, "burst": 60000}, "cpu.burst", "above the quota 50000"),
        ({"idle": 2}, "cpu.idle", "0 to 1, not 2"),
        ({"cpus": "0-"}, "cpu.cpus", "not a list"),
        ({"cpus": "3-1"}, "cpu.cpus", "not a list"),
        ({"mems": "a"}, "cpu.mems", "not a list"),
        ({"mems": 0}, "cpu.mems", "string"),
        ({"realtimeRuntime": -7}, "cpu.realtimeRuntime", "not -7"),
    ],
)
def test_cpu_errors_name_the_field(cpu: dict[str, Any], path: str, words: str) -> None:
    error = config_error(read_cpu, {"cpu": cpu}, W, S)
    assert error.path == f"{W}.{path}"
    assert words in str(error)


def test_burst_with_unlimited_quota_is_fine() -> None:
    assert read_cpu({"cpu": {"quota": -1, "burst": 5000}}, W, S)["burst"] == 5000


# --- pids ----------------------------------------------------------------------


def test_pids_zero_is_a_limit() -> None:
    assert read_pids({"pids": {"limit": 0}}, W, S) == 0
    assert read_pids({"pids": {"limit": -1}}, W, S) == -1
    assert read_pids({"pids": {}}, W, S) is None
    assert read_pids({}, W, S) is None
    assert config_error(read_pids, {"pids": {"limit": -2}}, W, S).path == f"{W}.pids.limit"


# --- blockIO -------------------------------------------------------------------


def test_block_io_devices() -> None:
    block = {
        "weight": 300,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 500, "leafWeight": 300}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 16, "rate": 600}],
        "throttleWriteIOPSDevice": [{"major": 259, "minor": 0, "rate": 0}],
    }
    out = read_block_io({"blockIO": block}, W, S)
    assert out["weight"] == 300
    (device,) = out["weightDevice"]
    assert (device.number, device.values) == ("8:0", {"weight": 500, "leafWeight": 300})
    assert device.path == f"{W}.blockIO.weightDevice[0]"
    (read,) = out["throttleReadBpsDevice"]
    assert (read.number, read.values["rate"]) == ("8:16", 600)
    assert out["throttleWriteIOPSDevice"][0].values["rate"] == 0


_READ = "blockIO.throttleReadBpsDevice"
_NEGATIVE_MINOR = [{"major": 8, "minor": -1, "rate": 1}]


@pytest.mark.parametrize(
    ("block", "path", "words"),
    [
        ({"weight": 1001}, "blockIO.weight", "1 to 1000"),
        ({"leafWeight": 70000}, "blockIO.leafWeight", "0 to 65535"),
        ({"weightDevice": [{"major": 8, "minor": 0}]}, "blockIO.weightDevice[0]", "needs weight"),
        ({"weightDevice": [{"minor": 0, "weight": 5}]}, "blockIO.weightDevice[0].major", "requi"),
        ({"throttleReadBpsDevice": [{"major": 8, "minor": 0}]}, f"{_READ}[0].rate", "required"),
        ({"throttleReadBpsDevice": _NEGATIVE_MINOR}, f"{_READ}[0].minor", "not -1"),
        ({"throttleWriteBpsDevice": {}}, "blockIO.throttleWriteBpsDevice", "array"),
        ({"throttleWriteBpsDevice": [3]}, "blockIO.throttleWriteBpsDevice[0]", "object"),
    ],
)  # fmt: skip
def test_block_io_errors_name_the_field(block: dict[str, Any], path: str, words: str) -> None:
    error = config_error(read_block_io, {"blockIO": block}, W, S)
    assert error.path == f"{W}.{path}"
    assert words in str(error)


# --- hugepages, network, rdma, unified -----------------------------------------


def test_hugepages() -> None:
    limits = [{"pageSize": "2MB", "limit": 209715200}, {"pageSize": "1GB", "limit": 0}]
    assert read_hugepages({"hugepageLimits": limits}, W, S) == [
        ("2MB", 209715200, f"{W}.hugepageLimits[0]"),
        ("1GB", 0, f"{W}.hugepageLimits[1]"),
    ]
    bad = [{"pageSize": "2M", "limit": 1}]
    assert "not a size" in str(config_error(read_hugepages, {"hugepageLimits": bad}, W, S))
    missing = [{"pageSize": "2MB"}]
    error = config_error(read_hugepages, {"hugepageLimits": missing}, W, S)
    assert error.path == f"{W}.hugepageLimits[0].limit"


def test_network() -> None:
    network = {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]}
    out = read_network({"network": network}, W, S)
    assert out == {
        "classID": 1048577,
        "priorities": [("eth0", 500, f"{W}.network.priorities[0]")],
    }
    assert read_network({"network": {"classID": 0}}, W, S) == {}
    bad = {"priorities": [{"name": "eth 0", "priority": 1}]}
    assert config_error(read_network, {"network": bad}, W, S).path.endswith("[0].name")


def test_rdma_lines() -> None:
    rdma = {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}, "rxe3": {"hcaObjects": 7}}
    assert read_rdma({"rdma": rdma}, W, S) == [
        ("mlx5_1", "mlx5_1 hca_handle=3 hca_object=10000", f"{W}.rdma.mlx5_1"),
        ("rxe3", "rxe3 hca_object=7", f"{W}.rdma.rxe3"),
    ]
    assert "needs hcaHandles" in str(config_error(read_rdma, {"rdma": {"x": {}}}, W, S))
    assert "device name" in str(config_error(read_rdma, {"rdma": {"a b": {"hcaObjects": 1}}}, W, S))


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("memory", "<controller>.<file>"),
        (".max", "<controller>.<file>"),
        ("memory.", "<controller>.<file>"),
        ("../memory.max", "<controller>.<file>"),
        ("memory.max/x", "<controller>.<file>"),
        ("cgroup.procs", "not a limit"),
        ("cgroup.kill", "not a limit"),
        ("cgroup.freeze", "not a limit"),
    ],
)
def test_unified_keys_are_one_file_name(key: str, words: str) -> None:
    error = config_error(read_unified, {"unified": {key: "1"}}, W, S)
    assert error.path == f'{W}.unified["{key}"]'
    assert words in str(error)


def test_unified_values_are_strings() -> None:
    assert read_unified({"unified": {"memory.max": "1"}}, W, S) == [
        ("memory.max", "1", f'{W}.unified["memory.max"]')
    ]
    assert "string" in str(config_error(read_unified, {"unified": {"memory.max": 1}}, W, S))


def test_check_resources_runs_every_reader() -> None:
    check_resources({"devices": [{"allow": False}], "someFutureField": 1})  # ignored: not ours
    with pytest.raises(ConfigError, match="must be an object"):
        check_resources([])
    bad: dict[str, Any]
    for bad in (
        {"memory": {"limit": -9}},
        {"cpu": {"shares": 1}},
        {"pids": {"limit": "x"}},
        {"blockIO": {"weight": 0.5}},
        {"hugepageLimits": [{}]},
        {"network": {"classID": -1}},
        {"rdma": {"d": []}},
        {"unified": {"x": "1"}},
    ):
        with pytest.raises(ConfigError):
            check_resources(bad)


# --- checkBeforeUpdate ---------------------------------------------------------


def test_check_memory_update_refuses_a_limit_at_or_below_usage() -> None:
    resources = {"memory": {"limit": 100 << 20, "checkBeforeUpdate": True}}
    check_memory_update(resources, (100 << 20) - 1, where=W)
    error = config_error(check_memory_update, resources, 100 << 20, where=W)
    assert error.path == f"{W}.memory.limit"
    assert "current memory usage 104857600" in str(error)


def test_check_memory_update_looks_at_swap_too() -> None:
    resources = {"memory": {"swap": 80, "checkBeforeUpdate": True}}
    check_memory_update(resources, 79, where=W)
    assert config_error(check_memory_update, resources, 80, where=W).path == f"{W}.memory.swap"


def test_check_memory_update_only_with_the_flag() -> None:
    check_memory_update({"memory": {"limit": 10}}, 1 << 30, where=W)
    check_memory_update({"memory": {"limit": 10, "checkBeforeUpdate": False}}, 1 << 30, where=W)
    check_memory_update({"memory": {"limit": -1, "checkBeforeUpdate": True}}, 1 << 30, where=W)
