"""corral.linux.cgroups.stats and .oom against fake cgroup trees written in tmp_path.

File contents are what Linux 6.x prints (copied from a live host's cgroups), so the
parsers meet the real formats; the expected values are computed by hand.
"""

from __future__ import annotations

import os
import sys

import pytest

from corral.errors import CorralError
from corral.linux.cgroups import stats
from corral.linux.cgroups.manager import CgroupManager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

MAX = 2**64 - 1


class FakeManager(CgroupManager):
    """A manager with only the paths (what read_stats and watch_oom use)."""

    def __init__(self, v1_paths: dict[str, str], unified_path: str | None) -> None:
        self.v1_paths = v1_paths
        self.unified_path = unified_path


def write_tree(directory: Path, files: dict[str, str]) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return str(directory)


V1_MEMORY = {
    "memory.stat": (
        "cache 4096\nrss 106496\nrss_huge 0\nshmem 0\nmapped_file 0\ndirty 0\n"
        "writeback 0\nswap 0\npgpgin 478\npgpgout 452\npgfault 850\npgmajfault 0\n"
        "inactive_anon 98304\nactive_anon 8192\ninactive_file 0\nactive_file 4096\n"
        "unevictable 0\nhierarchical_memory_limit 67108864\n"
        "hierarchical_memsw_limit 67108864\ntotal_cache 4096\ntotal_rss 106496\n"
    ),
    "memory.usage_in_bytes": "761856\n",
    "memory.max_usage_in_bytes": "2510848\n",
    "memory.failcnt": "3\n",
    "memory.limit_in_bytes": "67108864\n",
    "memory.memsw.usage_in_bytes": "761856\n",
    "memory.memsw.max_usage_in_bytes": "2510848\n",
    "memory.memsw.failcnt": "0\n",
    "memory.memsw.limit_in_bytes": "67108864\n",
    "memory.kmem.usage_in_bytes": "311296\n",
    "memory.kmem.max_usage_in_bytes": "684032\n",
    "memory.kmem.failcnt": "0\n",
    "memory.kmem.limit_in_bytes": "9223372036854771712\n",
    "memory.kmem.tcp.usage_in_bytes": "0\n",
    "memory.kmem.tcp.max_usage_in_bytes": "0\n",
    "memory.kmem.tcp.failcnt": "0\n",
    "memory.kmem.tcp.limit_in_bytes": "9223372036854771712\n",
    "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    "cgroup.event_control": "",
}


def v1_tree(tmp_path: Path) -> dict[str, str]:
    cpu = write_tree(
        tmp_path / "cpu",
        {"cpu.stat": "nr_periods 40\nnr_throttled 7\nthrottled_time 123456789\nnr_bursts 0\n"},
    )
    cpuacct = write_tree(
        tmp_path / "cpuacct",
        {
            "cpuacct.stat": "user 12\nsystem 3\n",
            "cpuacct.usage": "9566494\n",
            "cpuacct.usage_percpu": "1395552 8170942 \n",
            "cpuacct.usage_all": "cpu user system\n0 1000 395552\n1 4000000 4170942\n",
        },
    )
    cpuset = write_tree(
        tmp_path / "cpuset",
        {
            "cpuset.cpus": "0-2,5\n",
            "cpuset.mems": "0\n",
            "cpuset.cpu_exclusive": "0\n",
            "cpuset.mem_hardwall": "0\n",
            "cpuset.mem_exclusive": "1\n",
            "cpuset.memory_migrate": "0\n",
            "cpuset.memory_spread_page": "0\n",
            "cpuset.memory_spread_slab": "0\n",
            "cpuset.memory_pressure": "0\n",
            "cpuset.sched_load_balance": "1\n",
            "cpuset.sched_relax_domain_level": "-1\n",
        },
    )
    memory = write_tree(tmp_path / "memory", V1_MEMORY)
    pids = write_tree(tmp_path / "pids", {"pids.current": "2\n", "pids.max": "50\n"})
    blkio = write_tree(
        tmp_path / "blkio",
        {
            # CFQ's files exist but are empty on a kernel without CFQ: skipped for the
            # throttle layer's, as runc does.
            "blkio.io_serviced_recursive": "Total 0\n",
            "blkio.throttle.io_serviced_recursive": (
                "8:0 Read 10\n8:0 Write 4\n8:0 Sync 14\n8:0 Async 0\n8:0 Discard 0\n"
                "8:0 Total 14\nTotal 14\n"
            ),
            "blkio.throttle.io_service_bytes_recursive": (
                "8:0 Read 40960\n8:0 Write 8192\n8:0 Sync 49152\n8:0 Async 0\n"
                "8:0 Discard 0\n8:0 Total 49152\nTotal 49152\n"
            ),
        },
    )
    hugetlb = write_tree(
        tmp_path / "hugetlb",
        {
            "hugetlb.2MB.usage_in_bytes": "4194304\n",
            "hugetlb.2MB.max_usage_in_bytes": "6291456\n",
            "hugetlb.2MB.failcnt": "1\n",
            "hugetlb.1GB.usage_in_bytes": "0\n",
            "hugetlb.1GB.max_usage_in_bytes": "0\n",
            "hugetlb.1GB.failcnt": "0\n",
        },
    )
    return {
        "cpu": cpu,
        "cpuacct": cpuacct,
        "cpuset": cpuset,
        "memory": memory,
        "pids": pids,
        "blkio": blkio,
        "hugetlb": hugetlb,
    }


V2_FILES = {
    "cgroup.procs": "101\n102\n103\n",
    "cpu.stat": (
        "usage_usec 52000\nuser_usec 40000\nsystem_usec 12000\ncore_sched.force_idle_usec 0\n"
        "nr_periods 10\nnr_throttled 2\nthrottled_usec 3500\nnr_bursts 0\nburst_usec 0\n"
    ),
    "memory.stat": "anon 1048576\nfile 65536\nkernel 20480\nsock 0\nshmem 0\npgfault 300\n",
    "memory.current": "1200000\n",
    "memory.max": "67108864\n",
    "memory.peak": "3000000\n",
    "memory.swap.current": "4096\n",
    "memory.swap.max": "max\n",
    "memory.events": "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n",
    "pids.current": "3\n",
    "pids.max": "max\n",
    "io.stat": (
        "8:0 rbytes=40960 wbytes=8192 rios=10 wios=2 dbytes=0 dios=0\n"
        "253:1 rbytes=0 wbytes=4096 rios=0 wios=1 dbytes=0 dios=0\n"
    ),
    "hugetlb.2MB.current": "2097152\n",
    "hugetlb.2MB.events": "max 4\n",
}


@pytest.fixture(autouse=True)
def two_huge_page_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = tmp_path / "hugepages"
    for name in ("hugepages-2048kB", "hugepages-1048576kB"):
        (sizes / name).mkdir(parents=True)
    monkeypatch.setattr(stats, "HUGEPAGES_DIR", str(sizes))


# -- v1 ---------------------------------------------------------------------------------


def test_v1_stats_have_runcs_layout_and_values(tmp_path: Path) -> None:
    data = stats.read_stats(FakeManager(v1_tree(tmp_path), None))
    assert list(data) == [
        "cpu",
        "cpuset",
        "memory",
        "pids",
        "blkio",
        "hugetlb",
        "intel_rdt",
        "network_interfaces",
    ]
    ticks = os.sysconf("SC_CLK_TCK")
    assert data["cpu"]["usage"] == {
        "total": 9566494,
        "percpu": [1395552, 8170942],
        "percpu_kernel": [395552, 4170942],
        "percpu_user": [1000, 4000000],
        "kernel": 3 * 1_000_000_000 // ticks,
        "user": 12 * 1_000_000_000 // ticks,
    }
    assert data["cpu"]["throttling"] == {
        "periods": 40,
        "throttledPeriods": 7,
        "throttledTime": 123456789,
    }
    assert data["cpuset"]["cpus"] == [0, 1, 2, 5]
    assert data["cpuset"]["mems"] == [0]
    assert data["cpuset"]["mem_exclusive"] == 1
    assert data["cpuset"]["sched_relax_domain_level"] == -1
    memory = data["memory"]
    assert memory["cache"] == 4096
    assert memory["usage"] == {"limit": 67108864, "usage": 761856, "max": 2510848, "failcnt": 3}
    assert memory["kernel"]["limit"] == 9223372036854771712
    # kmem.tcp has no usage and no max: Go's omitempty drops both, keeps limit and failcnt.
    assert memory["kernelTCP"] == {"limit": 9223372036854771712, "failcnt": 0}
    assert memory["raw"]["pgfault"] == 850
    assert list(memory["raw"]) == sorted(memory["raw"])
    assert data["pids"] == {"current": 2, "limit": 50}
    assert data["blkio"]["ioServicedRecursive"][:2] == [
        {"major": 8, "op": "Read", "value": 10},
        {"major": 8, "op": "Write", "value": 4},
    ]
    assert {"major": 8, "op": "Read", "value": 40960} in data["blkio"]["ioServiceBytesRecursive"]
    # value 0 is omitted (Async 0), the "Total" summary line is skipped
    assert {"major": 8, "op": "Async"} in data["blkio"]["ioServiceBytesRecursive"]
    assert len(data["blkio"]["ioServicedRecursive"]) == 6  # "Total 14" is not a device
    assert set(data["blkio"]) == {"ioServicedRecursive", "ioServiceBytesRecursive"}
    assert data["hugetlb"] == {
        "1GB": {"failcnt": 0},
        "2MB": {"usage": 4194304, "max": 6291456, "failcnt": 1},
    }
    assert data["intel_rdt"] == {}
    assert data["network_interfaces"] is None


def test_v1_missing_controllers_give_runcs_empty_values(tmp_path: Path) -> None:
    data = stats.read_stats(FakeManager({"pids": str(tmp_path / "gone")}, None))
    assert data["cpu"] == {"usage": {"kernel": 0, "user": 0}, "throttling": {}}
    assert data["memory"] == {
        "usage": {"limit": 0, "failcnt": 0},
        "swap": {"limit": 0, "failcnt": 0},
        "kernel": {"limit": 0, "failcnt": 0},
        "kernelTCP": {"limit": 0, "failcnt": 0},
    }
    assert data["pids"] == {}
    assert data["blkio"] == {}
    assert data["hugetlb"] == {}
    assert "cpus" not in data["cpuset"] and data["cpuset"]["sched_load_balance"] == 0


def test_v1_memory_without_swap_accounting(tmp_path: Path) -> None:
    files = {k: v for k, v in V1_MEMORY.items() if ".memsw." not in k}
    memory = stats.v1_memory(write_tree(tmp_path / "m", files))
    assert memory["swap"] == {"limit": 0, "failcnt": 0}
    assert memory["usage"]["usage"] == 761856


def test_v1_unlimited_pids_is_no_limit_key(tmp_path: Path) -> None:
    directory = write_tree(tmp_path / "p", {"pids.current": "7\n", "pids.max": "max\n"})
    assert stats.read_pids(directory) == {"current": 7}


def test_v1_blkio_prefers_cfq_files_when_they_have_devices(tmp_path: Path) -> None:
    directory = write_tree(
        tmp_path / "b",
        {
            "blkio.sectors_recursive": "8:16 96\n",
            "blkio.io_service_time_recursive": "8:16 Read 5000\nTotal 5000\n",
            "blkio.io_wait_time_recursive": "8:16 Read 10\n",
            "blkio.io_merged_recursive": "8:16 Read 1\n",
            "blkio.io_queued_recursive": "8:16 Read 2\n",
            "blkio.time_recursive": "8:16 4\n",
            "blkio.io_serviced_recursive": "8:16 Read 3\n",
            "blkio.io_service_bytes_recursive": "8:16 Read 12288\n",
            "blkio.throttle.io_serviced_recursive": "8:0 Read 99\n",
        },
    )
    blkio = stats.v1_blkio(directory)
    assert list(blkio) == list(stats.BLKIO_KEYS)
    assert blkio["sectorsRecursive"] == [{"major": 8, "minor": 16, "value": 96}]
    assert blkio["ioServicedRecursive"] == [{"major": 8, "minor": 16, "op": "Read", "value": 3}]


def test_v1_blkio_malformed_line_names_the_file(tmp_path: Path) -> None:
    directory = write_tree(tmp_path / "b", {"blkio.throttle.io_serviced_recursive": "8:0\n"})
    with pytest.raises(CorralError, match=r"blkio\.throttle\.io_serviced_recursive"):
        stats.v1_blkio(directory)


def test_v1_negative_value_reads_as_zero_and_garbage_is_an_error(tmp_path: Path) -> None:
    directory = write_tree(tmp_path / "x", {"a": "-5\n", "b": "twelve\n"})
    assert stats._read_uint(directory, "a") == 0
    with pytest.raises(CorralError, match="x/b"):
        stats._read_uint(directory, "b")


def test_cpu_list_parsing() -> None:
    assert stats.parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert stats.parse_cpu_list("") == []
    with pytest.raises(CorralError):
        stats.parse_cpu_list("3-1")


def test_hugepage_size_names(tmp_path: Path) -> None:
    for name in ("hugepages-2048kB", "hugepages-1048576kB", "hugepages-64kB", "other"):
        (tmp_path / "hp" / name).mkdir(parents=True)
    assert stats.hugepage_sizes(str(tmp_path / "hp")) == ["1GB", "2MB", "64KB"]
    assert stats.hugepage_sizes(str(tmp_path / "none")) == []


# -- v2 ---------------------------------------------------------------------------------


def test_v2_stats(tmp_path: Path) -> None:
    directory = write_tree(tmp_path / "c", V2_FILES)
    data = stats.read_stats(FakeManager({}, directory))
    assert data["cpu"]["usage"] == {"total": 52000000, "kernel": 12000000, "user": 40000000}
    assert data["cpu"]["throttling"] == {
        "periods": 10,
        "throttledPeriods": 2,
        "throttledTime": 3500000,
    }
    memory = data["memory"]
    assert memory["cache"] == 65536
    assert memory["usage"] == {"limit": 67108864, "usage": 1200000, "max": 3000000, "failcnt": 5}
    # swap = memory + swap; an unlimited swap stays unlimited
    assert memory["swap"] == {"limit": MAX, "usage": 1204096, "failcnt": 0}
    assert memory["raw"]["anon"] == 1048576
    assert data["pids"] == {"current": 3}
    assert data["blkio"] == {
        "ioServiceBytesRecursive": [
            {"major": 8, "op": "Read", "value": 40960},
            {"major": 8, "op": "Write", "value": 8192},
            {"major": 253, "minor": 1, "op": "Read"},
            {"major": 253, "minor": 1, "op": "Write", "value": 4096},
        ],
        "ioServicedRecursive": [
            {"major": 8, "op": "Read", "value": 10},
            {"major": 8, "op": "Write", "value": 2},
            {"major": 253, "minor": 1, "op": "Read"},
            {"major": 253, "minor": 1, "op": "Write", "value": 1},
        ],
    }
    assert data["hugetlb"] == {"2MB": {"usage": 2097152, "failcnt": 4}}
    assert data["cpuset"]["cpu_exclusive"] == 0 and "cpus" not in data["cpuset"]


def test_v2_limited_swap_adds_the_memory_limit(tmp_path: Path) -> None:
    files = dict(V2_FILES, **{"memory.swap.max": "1000\n"})
    memory = stats.v2_memory(write_tree(tmp_path / "c", files))
    assert memory["swap"]["limit"] == 67108864 + 1000


def test_v2_unlimited_memory_is_max_uint64(tmp_path: Path) -> None:
    files = dict(V2_FILES, **{"memory.max": "max\n", "memory.swap.max": "1000\n"})
    memory = stats.v2_memory(write_tree(tmp_path / "c", files))
    assert memory["usage"]["limit"] == MAX
    assert memory["swap"]["limit"] == MAX  # saturated, not wrapped around


def test_v2_pids_without_the_controller_counts_processes(tmp_path: Path) -> None:
    files = {k: v for k, v in V2_FILES.items() if not k.startswith("pids.")}
    assert stats.read_pids(write_tree(tmp_path / "c", files)) == {"current": 3}


def test_hybrid_reads_v1_and_takes_hugetlb_from_the_unified_tree(tmp_path: Path) -> None:
    paths = v1_tree(tmp_path)
    del paths["hugetlb"]
    unified = write_tree(tmp_path / "unified", V2_FILES)
    data = stats.read_stats(FakeManager(paths, unified))
    assert data["memory"]["usage"]["usage"] == 761856  # v1's, not v2's 1200000
    assert data["pids"] == {"current": 2, "limit": 50}
    assert data["hugetlb"] == {"2MB": {"usage": 2097152, "failcnt": 4}}


def test_stats_encode_as_go_would(tmp_path: Path) -> None:
    """Compact JSON with uint64 values only (Go's decoder refuses negatives)."""
    from corral.core import jsonio

    data = stats.read_stats(FakeManager({}, write_tree(tmp_path / "c", V2_FILES)))
    text = jsonio.dumps({"type": "stats", "id": "c1", "data": data})
    assert text.startswith('{"type":"stats","id":"c1","data":{"cpu":{"usage":{"total":52000000')
    assert '"network_interfaces":null' in text
    assert "-" not in text.replace("percpu_", "").replace("intel_rdt", "")


# -- network ----------------------------------------------------------------------------

NET_DEV = "\n".join(
    [
        "Inter-|   Receive                                                |  Transmit",
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets"
        " errs drop fifo colls carrier compressed",
        "    lo:     560       8    0    0    0     0          0         0      560       8"
        "    0    0    0     0       0          0",
        "  eth0: 1234567    890    1    2    0     0          0         0    76543     210"
        "    3    4    0     0       0          0",
    ]
)


def test_net_dev_parsing_skips_loopback() -> None:
    assert stats.parse_net_dev(NET_DEV) == [
        {
            "Name": "eth0",
            "RxBytes": 1234567,
            "RxPackets": 890,
            "RxErrors": 1,
            "RxDropped": 2,
            "TxBytes": 76543,
            "TxPackets": 210,
            "TxErrors": 3,
            "TxDropped": 4,
        }
    ]
    only_lo = "\n".join(NET_DEV.splitlines()[:3])
    assert stats.parse_net_dev(only_lo) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_network_of_a_process_in_our_namespace_is_not_reported() -> None:
    assert stats.read_network_interfaces(os.getpid()) is None


# -- OOM watcher (v2 file polling; the v1 eventfd needs a real cgroup: integration) ------


def test_v2_oom_watcher_sees_a_counter_increase(tmp_path: Path) -> None:
    from corral.linux.cgroups import oom

    directory = write_tree(tmp_path / "c", V2_FILES)
    watcher = oom.watch_oom(FakeManager({}, directory))
    assert isinstance(watcher, oom.EventsFileOomWatcher)
    assert watcher.wait(0.05) == 0  # the counts present at start are not new
    (tmp_path / "c" / "memory.events").write_text(
        "low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\noom_group_kill 0\n"
    )
    assert watcher.wait(1.0) == 1
    assert watcher.wait(0.05) == 0
    (tmp_path / "c" / "memory.events").unlink()
    assert watcher.wait(0.05) == 0
    assert watcher.gone


def test_no_memory_controller_means_no_watcher(tmp_path: Path) -> None:
    from corral.linux.cgroups import oom

    directory = write_tree(tmp_path / "c", {"cgroup.procs": ""})
    assert oom.watch_oom(FakeManager({}, directory)) is None
