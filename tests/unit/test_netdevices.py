"""linux.netDevices: validation, host checks and the address filter (no root needed)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from corral.errors import ConfigError, CreateError
from corral.linux.netdevices import (
    apply_net_devices,
    check_host_devices,
    check_net_devices,
    interfaces_of,
    net_devices,
    permanent_addresses,
    valid_interface_name,
)
from corral.spec.default import default_spec
from corral.spec.model import Spec, parse_config

if TYPE_CHECKING:
    from pathlib import Path


def spec_with(devices: Any, network: bool = True) -> Spec:
    raw = default_spec(["true"])
    raw["linux"]["netDevices"] = devices
    if not network:
        raw["linux"]["namespaces"] = [
            ns for ns in raw["linux"]["namespaces"] if ns["type"] != "network"
        ]
    return parse_config(raw)


def test_names_default_to_the_host_name() -> None:
    spec = spec_with({"eth0": {"name": "c0"}, "eth1": {}})
    assert net_devices(spec) == {"eth0": "c0", "eth1": "eth1"}
    check_net_devices(spec)


@pytest.mark.parametrize(
    ("name", "ok"),
    [("eth0", True), ("a" * 15, True), ("a" * 16, False), ("", False), ("a/b", False),
     ("a b", False), ("a:1", False), ("..", False)],
)  # fmt: skip
def test_valid_interface_name(name: str, ok: bool) -> None:
    assert valid_interface_name(name) is ok


def test_bad_names_are_refused_with_their_path() -> None:
    with pytest.raises(ConfigError) as caught:
        check_net_devices(spec_with({"eth0": {"name": "x" * 20}}))
    assert caught.value.path == "linux.netDevices.eth0.name"
    with pytest.raises(ConfigError) as caught:
        check_net_devices(spec_with({"bad/name": {}}))
    assert caught.value.path == "linux.netDevices.bad/name"
    with pytest.raises(ConfigError) as caught:
        check_net_devices(spec_with({"eth0": {"name": 3}}))
    assert caught.value.path == "linux.netDevices.eth0.name"
    with pytest.raises(ConfigError) as caught:
        check_net_devices(spec_with({"eth0": {"name": "c%s%d"}}))
    assert caught.value.path == "linux.netDevices.eth0.name"


def test_template_names_may_repeat_but_plain_ones_may_not() -> None:
    check_net_devices(spec_with({"eth0": {"name": "c%d"}, "eth1": {"name": "c%d"}}))
    with pytest.raises(ConfigError) as caught:
        check_net_devices(spec_with({"eth0": {"name": "c0"}, "eth1": {"name": "c0"}}))
    assert caught.value.path == "linux.netDevices.eth1.name"


def test_a_new_network_namespace_is_required() -> None:
    with pytest.raises(ConfigError) as caught:
        check_net_devices(spec_with({"eth0": {}}, network=False))
    assert caught.value.path == "linux.netDevices"
    check_net_devices(spec_with({}, network=False))  # nothing asked, nothing needed


def test_host_devices_must_exist(tmp_path: Path) -> None:
    (tmp_path / "eth0").mkdir()
    check_host_devices(spec_with({"eth0": {"name": "c0"}}), str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        check_host_devices(spec_with({"eth9": {}}), str(tmp_path))
    assert caught.value.path == "linux.netDevices.eth9"
    assert "eth9" in str(caught.value)


def test_permanent_global_addresses_only() -> None:
    listing: list[dict[str, object]] = [
        {
            "ifname": "eth0",
            "addr_info": [
                {"family": "inet", "local": "10.0.0.2", "prefixlen": 24, "scope": "global"},
                {"family": "inet", "local": "10.0.1.2", "prefixlen": 16, "scope": "global",
                 "dynamic": True},
                {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
                {"family": "inet6", "local": "2001:db8::2", "prefixlen": 64, "scope": "global"},
            ],
        }
    ]  # fmt: skip
    assert permanent_addresses(listing) == ["10.0.0.2/24", "2001:db8::2/64"]
    assert permanent_addresses([{"ifname": "lo"}]) == []


def test_interfaces_of_this_process() -> None:
    names = interfaces_of(os.getpid())
    assert "lo" in names
    assert all(name and ":" not in name for name in names)


def test_a_name_taken_in_the_container_is_refused_before_moving() -> None:
    # Our own netns stands in for the container's: "lo" is always there.
    with pytest.raises(CreateError, match="already exists"):
        apply_net_devices(spec_with({"corral-nonexistent0": {"name": "lo"}}), os.getpid())
