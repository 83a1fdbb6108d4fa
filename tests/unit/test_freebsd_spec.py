"""The ``freebsd`` config section: records, per-field checks, numeric IP addresses."""

from __future__ import annotations

import copy
import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.errors import ConfigError
from corral.spec.freebsd import FreeBSD, pack_ip4, pack_ip6, parse_freebsd
from corral.spec.model import parse_config
from corral.spec.reader import Fields

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def parse(section: dict[str, Any]) -> FreeBSD:
    result = parse_freebsd(Fields(section, "freebsd"))
    assert result is not None
    return result


def error_of(section: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_freebsd(Fields(section, "freebsd"))
    return caught.value


# -- records -------------------------------------------------------------------------


def test_no_section_is_none() -> None:
    assert parse_freebsd(None) is None


def test_an_empty_section_has_no_devices_and_no_jail() -> None:
    section = parse({})
    assert section.devices == []
    assert section.jail is None


def test_the_spec_examples_parse() -> None:
    # config-freebsd.md: the Devices example and the Jail example.
    section = parse(
        {
            "devices": [{"path": "pf", "mode": 448}],
            "jail": {
                "host": "new",
                "vnet": "new",
                "enforceStatfs": 1,
                "allow": {"rawSockets": True, "chflags": True, "mount": ["tmpfs"]},
            },
        }
    )
    assert [(d.path, d.mode) for d in section.devices] == [("pf", 0o700)]
    jail = section.jail
    assert jail is not None
    assert (jail.host, jail.vnet, jail.enforce_statfs) == ("new", "new", 1)
    assert jail.allow.raw_sockets is True
    assert jail.allow.chflags is True
    assert jail.allow.mount == ["tmpfs"]
    # Everything the config leaves out stays unset, not false.
    assert jail.allow.set_hostname is None
    assert jail.allow.suser is None
    assert (jail.parent, jail.ip4, jail.ip6, jail.sysvmsg, jail.interface) == (None,) * 5
    assert (jail.ip4_addr, jail.ip6_addr, jail.vnet_interfaces) == ([], [], [])


def test_every_jail_field_is_read() -> None:
    jail = parse(
        {
            "jail": {
                "parent": "pod.infra",
                "host": "inherit",
                "ip4": "new",
                "ip4Addr": ["10.0.0.2", "10.0.0.3"],
                "ip6": "disable",
                "ip6Addr": ["fd10::2"],
                "vnet": "inherit",
                "interface": "lo1",
                "vnetInterfaces": ["epair0b", "epair1b"],
                "sysvmsg": "new",
                "sysvsem": "inherit",
                "sysvshm": "disable",
                "enforceStatfs": 0,
                "allow": {
                    "setHostname": False,
                    "rawSockets": True,
                    "chflags": False,
                    "mount": ["tmpfs", "nullfs"],
                    "quotas": True,
                    "socketAf": False,
                    "mlock": True,
                    "reservedPorts": False,
                    "suser": True,
                },
            }
        }
    ).jail
    assert jail is not None
    assert jail.parent == "pod.infra"
    assert (jail.host, jail.ip4, jail.ip6, jail.vnet) == ("inherit", "new", "disable", "inherit")
    assert jail.ip4_addr == ["10.0.0.2", "10.0.0.3"]
    assert jail.ip6_addr == ["fd10::2"]
    assert jail.interface == "lo1"
    assert jail.vnet_interfaces == ["epair0b", "epair1b"]
    assert (jail.sysvmsg, jail.sysvsem, jail.sysvshm) == ("new", "inherit", "disable")
    assert jail.enforce_statfs == 0
    allow = jail.allow
    assert (allow.set_hostname, allow.raw_sockets, allow.chflags) == (False, True, False)
    assert (allow.quotas, allow.socket_af, allow.mlock) == (True, False, True)
    assert (allow.reserved_ports, allow.suser) == (False, True)
    assert allow.mount == ["tmpfs", "nullfs"]


def test_null_means_unset() -> None:
    jail = parse({"jail": {"host": None, "allow": {"suser": None}}}).jail
    assert jail is not None
    assert jail.host is None
    assert jail.allow.suser is None


def test_parse_config_fills_spec_freebsd() -> None:
    spec = parse_config({"ociVersion": "1.2.0", "freebsd": {"jail": {"ip4": "inherit"}}})
    assert spec.freebsd is not None
    assert spec.freebsd.jail is not None
    assert spec.freebsd.jail.ip4 == "inherit"
    assert parse_config({"ociVersion": "1.2.0"}).freebsd is None


# -- errors name the field -------------------------------------------------------------

BAD = [
    # (section, JSON path, message)
    ({"jail": {"ip4": "maybe"}}, "freebsd.jail.ip4",
     '"maybe" is not one of "new", "inherit", "disable"'),
    ({"jail": {"ip6": "on"}}, "freebsd.jail.ip6", '"on" is not one of'),
    ({"jail": {"sysvmsg": "yes"}}, "freebsd.jail.sysvmsg", '"yes" is not one of'),
    ({"jail": {"sysvsem": ""}}, "freebsd.jail.sysvsem", '"" is not one of'),
    ({"jail": {"sysvshm": "NEW"}}, "freebsd.jail.sysvshm", '"NEW" is not one of'),
    # host and vnet are SharingModeNoDisable.
    ({"jail": {"host": "disable"}}, "freebsd.jail.host",
     '"disable" is not one of "new", "inherit"'),
    ({"jail": {"vnet": "disable"}}, "freebsd.jail.vnet",
     '"disable" is not one of "new", "inherit"'),
    ({"jail": {"vnet": 1}}, "freebsd.jail.vnet", "expected a string, got 1"),
    ({"jail": {"enforceStatfs": 3}}, "freebsd.jail.enforceStatfs", "3 is above the maximum 2"),
    ({"jail": {"enforceStatfs": -1}}, "freebsd.jail.enforceStatfs", "-1 is below the minimum 0"),
    ({"jail": {"enforceStatfs": "1"}}, "freebsd.jail.enforceStatfs", "expected an integer"),
    ({"jail": {"enforceStatfs": True}}, "freebsd.jail.enforceStatfs", "expected an integer"),
    ({"jail": {"parent": ""}}, "freebsd.jail.parent", "must not be empty"),
    ({"jail": {"parent": "a..b"}}, "freebsd.jail.parent", '"a..b" is not a jail name'),
    ({"jail": {"parent": ".a"}}, "freebsd.jail.parent", "is not a jail name"),
    ({"jail": {"parent": "a\0b"}}, "freebsd.jail.parent", "NUL"),
    ({"jail": {"ip4Addr": ["10.0.0.256"]}}, "freebsd.jail.ip4Addr[0]",
     '"10.0.0.256" is not a numeric IPv4 address'),
    ({"jail": {"ip4Addr": ["10.0.0.1", "web"]}}, "freebsd.jail.ip4Addr[1]",
     "is not a numeric IPv4 address"),
    ({"jail": {"ip4Addr": ["fd10::1"]}}, "freebsd.jail.ip4Addr[0]", "not a numeric IPv4"),
    ({"jail": {"ip4Addr": ["0.0.0.0"]}}, "freebsd.jail.ip4Addr[0]", "unspecified address"),
    ({"jail": {"ip4Addr": ["255.255.255.255"]}}, "freebsd.jail.ip4Addr[0]", "broadcast"),
    ({"jail": {"ip4Addr": ["10.0.0.1", "10.0.0.1"]}}, "freebsd.jail.ip4Addr[1]", "given twice"),
    ({"jail": {"ip4Addr": "10.0.0.1"}}, "freebsd.jail.ip4Addr", "expected an array"),
    ({"jail": {"ip4Addr": [1]}}, "freebsd.jail.ip4Addr[0]", "expected a string"),
    ({"jail": {"ip6Addr": ["10.0.0.1"]}}, "freebsd.jail.ip6Addr[0]",
     "is not a numeric IPv6 address"),
    ({"jail": {"ip6Addr": ["fe80::1%em0"]}}, "freebsd.jail.ip6Addr[0]", "not a numeric IPv6"),
    ({"jail": {"ip6Addr": ["::"]}}, "freebsd.jail.ip6Addr[0]", "unspecified address"),
    ({"jail": {"ip6Addr": ["::ffff:10.0.0.1"]}}, "freebsd.jail.ip6Addr[0]", "IPv4-mapped"),
    ({"jail": {"ip6Addr": ["fd10::1", "FD10:0::1"]}}, "freebsd.jail.ip6Addr[1]", "given twice"),
    ({"jail": {"interface": ""}}, "freebsd.jail.interface", "must not be empty"),
    ({"jail": {"interface": "a_very_long_name0"}}, "freebsd.jail.interface",
     "longer than 15 bytes"),
    ({"jail": {"interface": "em 0"}}, "freebsd.jail.interface", "not a network interface name"),
    ({"jail": {"vnetInterfaces": ["epair0b", "../x"]}}, "freebsd.jail.vnetInterfaces[1]",
     "not a network interface name"),
    ({"jail": {"vnetInterfaces": ["epair0b", "epair0b"]}}, "freebsd.jail.vnetInterfaces[1]",
     "given twice"),
    ({"jail": {"allow": {"rawSockets": "yes"}}}, "freebsd.jail.allow.rawSockets",
     'expected a boolean, got "yes"'),
    ({"jail": {"allow": {"suser": 1}}}, "freebsd.jail.allow.suser", "expected a boolean"),
    ({"jail": {"allow": {"mount": ["tmpfs", "proc.fs"]}}}, "freebsd.jail.allow.mount[1]",
     '"proc.fs" is not a file system type name'),
    ({"jail": {"allow": {"mount": [""]}}}, "freebsd.jail.allow.mount[0]", "not a file system"),
    ({"jail": {"allow": {"mount": ["tmpfs", "tmpfs"]}}}, "freebsd.jail.allow.mount[1]",
     "given twice"),
    ({"jail": {"allow": []}}, "freebsd.jail.allow", "expected an object"),
    ({"jail": []}, "freebsd.jail", "expected an object"),
    ({"devices": [{"mode": 438}]}, "freebsd.devices[0].path", "required field is missing"),
    ({"devices": [{"path": "/dev/pf"}]}, "freebsd.devices[0].path",
     '"/dev/pf" must be relative to /dev'),
    ({"devices": [{"path": "../etc/passwd"}]}, "freebsd.devices[0].path", '".." component'),
    ({"devices": [{"path": "usb/../../x"}]}, "freebsd.devices[0].path", '".." component'),
    ({"devices": [{"path": "a//b"}]}, "freebsd.devices[0].path", "empty"),
    ({"devices": [{"path": ""}]}, "freebsd.devices[0].path", "must not be empty"),
    ({"devices": [{"path": "pf\0"}]}, "freebsd.devices[0].path", "NUL"),
    ({"devices": [{"path": "pf"}, {"path": "pf"}]}, "freebsd.devices[1].path", "given twice"),
    ({"devices": [{"path": "pf", "mode": 512}]}, "freebsd.devices[0].mode",
     "512 is above the maximum 511"),
    ({"devices": [{"path": "pf", "mode": -1}]}, "freebsd.devices[0].mode", "below the minimum"),
    ({"devices": [{"path": "pf", "mode": "0600"}]}, "freebsd.devices[0].mode",
     "expected an integer"),
    ({"devices": {"path": "pf"}}, "freebsd.devices", "expected an array"),
]  # fmt: skip


@pytest.mark.parametrize(("section", "path", "message"), BAD)
def test_a_bad_value_names_its_field(section: dict[str, Any], path: str, message: str) -> None:
    error = error_of(section)
    assert error.path == path
    assert message in error.message


def test_the_error_line_reads_as_the_brief_says() -> None:
    error = error_of({"jail": {"ip4": "maybe"}})
    assert str(error) == (
        'config.json: freebsd.jail.ip4: "maybe" is not one of "new", "inherit", "disable"'
    )


def test_parse_config_reports_freebsd_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"ociVersion": "1.2.0", "freebsd": {"jail": {"host": "disable"}}})
    assert caught.value.path == "freebsd.jail.host"


def test_device_paths_may_be_nested() -> None:
    section = parse({"devices": [{"path": "usb/0.1.0"}, {"path": "pf", "mode": 0}]})
    assert [(d.path, d.mode) for d in section.devices] == [("usb/0.1.0", None), ("pf", 0)]


def test_the_documents_are_not_changed() -> None:
    document: dict[str, Any] = {"jail": {"ip4Addr": ["10.0.0.1"], "allow": {"mount": ["x"]}}}
    before = copy.deepcopy(document)
    parse(document)
    assert document == before


# -- IPv4 --------------------------------------------------------------------------------

IP4_GOOD = ["0.0.0.0", "10.11.12.13", "127.0.0.2", "192.168.1.255", "255.255.255.255", "1.2.3.4"]
IP4_BAD = [
    "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", "01.2.3.4", "1.2.3.04", "1..3.4",
    "1.2.3.4 ", " 1.2.3.4", "0x1.2.3.4", "1.2.3.4/24", "1.2.3.1000", "a.b.c.d",
    "\u0661.\u0662.\u0663.\u0664", "10.0.0.1%em0", "::1",
]  # fmt: skip


@pytest.mark.parametrize("text", IP4_GOOD)
def test_pack_ip4_matches_inet_pton(text: str) -> None:
    assert pack_ip4(text) == socket.inet_pton(socket.AF_INET, text)


@pytest.mark.parametrize("text", IP4_BAD)
def test_pack_ip4_refuses_what_is_not_a_dotted_quad(text: str) -> None:
    assert pack_ip4(text) is None


def test_pack_ip4_is_network_byte_order() -> None:
    assert pack_ip4("10.0.0.1") == b"\x0a\x00\x00\x01"


# -- IPv6 --------------------------------------------------------------------------------

IP6_GOOD = [
    "::", "::1", "1::", "fd10::11:12:13", "FD10::11:12:13", "2001:db8::8a2e:370:7334",
    "2001:0db8:0000:0000:0000:ff00:0042:8329", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8", "1::8", "::ffff:10.0.0.1", "::10.0.0.1", "64:ff9b::192.0.2.33",
    "1:2:3:4:5:6:1.2.3.4", "1::1.2.3.4", "fe80::",
]  # fmt: skip
IP6_BAD = [
    "", ":", ":::", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "g::1",
    ":1:2:3:4:5:6:7", "1:2:3:4:5:6:7:", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3", "::1.2.3.256", "1.2.3.4", "fe80::1%em0",
    "1:2:3:4:5:6:7:8 ", "::01.2.3.4", "1.2.3.4::", "::1.2.3.4:5", "ff::\u0663",
]  # fmt: skip


@pytest.mark.parametrize("text", IP6_GOOD)
def test_pack_ip6_matches_inet_pton(text: str) -> None:
    assert pack_ip6(text) == socket.inet_pton(socket.AF_INET6, text)


@pytest.mark.parametrize("text", IP6_BAD)
def test_pack_ip6_refuses_malformed_text(text: str) -> None:
    assert pack_ip6(text) is None


@given(st.binary(min_size=16, max_size=16))
def test_pack_ip6_reads_every_form_ipaddress_writes(raw: bytes) -> None:
    address = ipaddress.IPv6Address(raw)
    assert pack_ip6(address.compressed) == raw
    assert pack_ip6(address.exploded) == raw
    assert pack_ip6(address.exploded.upper()) == raw


@given(st.binary(min_size=4, max_size=4))
def test_pack_ip4_reads_every_address(raw: bytes) -> None:
    assert pack_ip4(str(ipaddress.IPv4Address(raw))) == raw


@given(st.text(alphabet="0123456789abcdefABCDEF:.%", max_size=45))
def test_pack_ip6_agrees_with_inet_pton_on_noise(text: str) -> None:
    try:
        expected: bytes | None = socket.inet_pton(socket.AF_INET6, text)
    except OSError:
        expected = None
    assert pack_ip6(text) == expected
