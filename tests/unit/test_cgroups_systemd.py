"""The systemd driver's pure parts: slices and unit names, unit properties, device lists."""

from __future__ import annotations

import pytest

from corral.errors import ConfigError
from corral.linux.cgroups import systemd
from corral.linux.cgroups.convert import shares_to_weight
from corral.linux.cgroups.devices import DeviceRule
from corral.linux.dbus import Variant

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

INF = 2**64 - 1


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("system.slice", "/system.slice"),
        ("user-1000.slice", "/user.slice/user-1000.slice"),
        ("a-b-c.slice", "/a.slice/a-b.slice/a-b-c.slice"),
        ("-.slice", "/"),
    ],
)
def test_expand_slice(name: str, path: str) -> None:
    assert systemd.expand_slice(name) == path


@pytest.mark.parametrize(
    "name", ["a--b.slice", "-a.slice", "a-.slice", "foo", ".slice", "a/b.slice"]
)
def test_bad_slices(name: str) -> None:
    with pytest.raises(ConfigError, match=r"linux\.cgroupsPath"):
        systemd.expand_slice(name)


def test_unit_names() -> None:
    assert systemd.unit_name("corral", "abc") == "corral-abc.scope"
    assert systemd.unit_name("", "abc") == "-abc.scope"  # runc's rule, kept
    with pytest.raises(ConfigError, match="slice unit cannot hold"):
        systemd.unit_name("corral", "pod.slice")
    with pytest.raises(ConfigError, match="not a valid systemd unit name"):
        systemd.unit_name("corral", "a b")


def test_cpu_mask_is_little_endian_bytes() -> None:
    assert systemd.cpu_mask("0-2,9", "x") == [0b111, 0b10]
    assert systemd.cpu_mask("8", "x") == [0, 1]
    for bad in ("", "3-1", "a"):
        with pytest.raises(ConfigError, match=r"^config\.json: x: "):
            systemd.cpu_mask(bad, "x")


def _props(resources: dict[str, Any], *, v2: bool, version: int = 252) -> dict[str, object]:
    found = systemd.resource_properties(resources, v2=v2, version=version)
    names = [name for name, _ in found]
    assert len(names) == len(set(names)), names
    return {name: value.value for name, value in found}


def test_v1_properties() -> None:
    resources = {
        "memory": {"limit": -1},
        "cpu": {"shares": 512, "quota": 12345, "period": 100000, "cpus": "1", "mems": "0"},
        "blockIO": {"weight": 300},
        "pids": {"limit": -1},
    }
    assert _props(resources, v2=False) == {
        "MemoryLimit": INF,
        "CPUShares": 512,
        "CPUQuotaPeriodUSec": 100000,
        # 123450 µs per second, rounded up to a whole percent of a CPU
        "CPUQuotaPerSecUSec": 130000,
        "BlockIOWeight": 300,
        "TasksMax": INF,
        "AllowedCPUs": [2],
        "AllowedMemoryNodes": [1],
    }


def test_old_systemd_gets_fewer_properties() -> None:
    resources = {"cpu": {"quota": 50000, "period": 50000, "cpus": "0"}}
    assert _props(resources, v2=False, version=241) == {"CPUQuotaPerSecUSec": 1000000}


def test_quota_without_period_assumes_the_kernel_default() -> None:
    assert _props({"cpu": {"quota": 25000}}, v2=False) == {"CPUQuotaPerSecUSec": 250000}
    assert _props({"cpu": {"quota": -1, "period": 100000}}, v2=False) == {
        "CPUQuotaPeriodUSec": 100000,
        "CPUQuotaPerSecUSec": INF,
    }


def test_v2_properties() -> None:
    resources = {
        "memory": {"limit": 1 << 30, "reservation": 1 << 20, "swap": (1 << 30) + 4096},
        "cpu": {"shares": 1024},
        "blockIO": {"weight": 300},  # io.weight has no unit property in runc's table
        "pids": {"limit": 7},
        "unified": {"memory.high": "max", "memory.min": "4096", "cpu.max": "20000 50000"},
    }
    assert _props(resources, v2=True) == {
        "MemoryMax": 1 << 30,
        "CPUWeight": shares_to_weight(1024),
        "TasksMax": 7,
        "MemoryLow": 1 << 20,
        "MemorySwapMax": 4096,  # v2 limits swap alone
        "MemoryHigh": INF,
        "MemoryMin": 4096,
        "CPUQuotaPeriodUSec": 50000,
        "CPUQuotaPerSecUSec": 400000,
    }


def test_no_resources_no_properties() -> None:
    assert systemd.resource_properties({}, v2=False, version=252) == []
    assert systemd.resource_properties({}, v2=True, version=252) == []


def _deny_all() -> DeviceRule:
    return DeviceRule(False, "a")


def test_device_allow_list_is_the_final_state() -> None:
    rules = [
        _deny_all(),
        DeviceRule(True, "c", 1, 3, "rwm"),
        DeviceRule(True, "c", 5, 0, "rw"),
        DeviceRule(False, "c", 5, 0, "w"),
        DeviceRule(True, "c", 136, -1, "rwm"),
        DeviceRule(True, "b", -1, -1, "r"),
    ]
    assert systemd.device_properties(rules) == [
        ("DevicePolicy", Variant("s", "strict")),
        (
            "DeviceAllow",
            Variant(
                "a(ss)",
                [
                    ("block-*", "r"),
                    ("/dev/char/1:3", "rwm"),
                    ("/dev/char/5:0", "r"),
                    ("char-pts", "rwm"),
                ],
            ),
        ),
    ]


def test_allow_all_is_auto_and_a_blacklist_is_deny_all() -> None:
    everything = DeviceRule(True, "a")
    assert systemd.device_properties([_deny_all(), everything]) == [
        ("DevicePolicy", Variant("s", "auto")),
        ("DeviceAllow", Variant("a(ss)", [])),
    ]
    blacklist = [_deny_all(), everything, DeviceRule(False, "c", 1, 3, "rwm")]
    assert systemd.device_properties(blacklist) == [
        ("DevicePolicy", Variant("s", "strict")),
        ("DeviceAllow", Variant("a(ss)", [])),
    ]
