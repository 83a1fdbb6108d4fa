"""Jail parameters from config.json, and the contradictions check_freebsd refuses."""

from __future__ import annotations

import copy

import pytest

from corral.errors import ConfigError, InvalidIdError
from corral.freebsd.params import (
    JAIL_SYS_DISABLE,
    JAIL_SYS_INHERIT,
    JAIL_SYS_NEW,
    check_freebsd,
    devfs_ruleset,
    jail_name,
    jail_params,
)
from corral.freebsd.syscalls import encode_params
from corral.spec.model import Spec, parse_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.freebsd.params import JailValue

ROOTFS = "/var/run/corral/web/rootfs"
SYSV_NEW: list[tuple[str, JailValue]] = [
    ("sysvmsg", JAIL_SYS_NEW),
    ("sysvsem", JAIL_SYS_NEW),
    ("sysvshm", JAIL_SYS_NEW),
]
DEVFS_MOUNT = {"destination": "/dev", "type": "devfs", "source": "devfs", "options": ["ruleset=4"]}


def spec_of(extra: dict[str, Any] | None = None, jail: dict[str, Any] | None = None) -> Spec:
    document: dict[str, Any] = {"ociVersion": "1.2.0", "root": {"path": "rootfs"}}
    document.update(copy.deepcopy(extra or {}))
    if jail is not None:
        document["freebsd"] = {"jail": copy.deepcopy(jail)}
    return parse_config(document)


def params_of(
    extra: dict[str, Any] | None = None, jail: dict[str, Any] | None = None
) -> list[tuple[str, JailValue]]:
    return jail_params(spec_of(extra, jail), "web", ROOTFS)


def head(name: str = "web") -> list[tuple[str, JailValue]]:
    return [("name", name), ("path", ROOTFS), ("persist", True)]


# -- the mapping, field by field -----------------------------------------------------------

TABLE: list[tuple[str, dict[str, Any], dict[str, Any] | None, list[tuple[str, JailValue]]]] = [
    # (what, top-level fields, freebsd.jail, parameters after name/path/persist)
    ("no freebsd section", {}, None, SYSV_NEW),
    ("an empty jail", {}, {}, SYSV_NEW),
    ("hostname", {"hostname": "web1"}, None, [("host.hostname", "web1"), *SYSV_NEW]),
    ("domainname", {"domainname": "example.org"}, None,
     [("host.domainname", "example.org"), *SYSV_NEW]),
    ("both names and host new", {"hostname": "h", "domainname": "d"}, {"host": "new"},
     [("host.hostname", "h"), ("host.domainname", "d"), ("host", JAIL_SYS_NEW), *SYSV_NEW]),
    ("host inherit turns set_hostname off", {}, {"host": "inherit"},
     [("host", JAIL_SYS_INHERIT), *SYSV_NEW, ("allow.set_hostname", False)]),
    ("host inherit, setHostname false", {}, {"host": "inherit", "allow": {"setHostname": False}},
     [("host", JAIL_SYS_INHERIT), *SYSV_NEW, ("allow.set_hostname", False)]),
    ("ip4 new with addresses", {}, {"ip4": "new", "ip4Addr": ["10.0.0.2", "10.0.0.3"]},
     [("ip4", JAIL_SYS_NEW), ("ip4.addr", ["10.0.0.2", "10.0.0.3"]), *SYSV_NEW]),
    ("ip4Addr alone", {}, {"ip4Addr": ["127.0.0.2"]}, [("ip4.addr", ["127.0.0.2"]), *SYSV_NEW]),
    ("ip4 inherit", {}, {"ip4": "inherit"}, [("ip4", JAIL_SYS_INHERIT), *SYSV_NEW]),
    ("ip4 disable", {}, {"ip4": "disable"}, [("ip4", JAIL_SYS_DISABLE), *SYSV_NEW]),
    ("ip6 new with an address", {}, {"ip6": "new", "ip6Addr": ["fd10::11:12:13"]},
     [("ip6", JAIL_SYS_NEW), ("ip6.addr", ["fd10::11:12:13"]), *SYSV_NEW]),
    ("ip6 disable", {}, {"ip6": "disable"}, [("ip6", JAIL_SYS_DISABLE), *SYSV_NEW]),
    ("ip6Addr alone", {}, {"ip6Addr": ["::1"]}, [("ip6.addr", ["::1"]), *SYSV_NEW]),
    ("vnet new", {}, {"vnet": "new"}, [("vnet", JAIL_SYS_NEW), *SYSV_NEW]),
    ("vnet new with interfaces moved in", {}, {"vnet": "new", "vnetInterfaces": ["epair0b"]},
     [("vnet", JAIL_SYS_NEW), *SYSV_NEW]),
    # The spec's way of sharing the host's stack: vnet inherit is the kernel default and
    # must not be passed next to ip4/ip6 (kern_jail.c would refuse the pair).
    ("vnet inherit, ip4 and ip6 inherit", {},
     {"vnet": "inherit", "ip4": "inherit", "ip6": "inherit"},
     [("ip4", JAIL_SYS_INHERIT), ("ip6", JAIL_SYS_INHERIT), *SYSV_NEW]),
    ("interface with addresses (done by the backend, not a kernel parameter)", {},
     {"interface": "lo1", "ip4Addr": ["127.0.1.1"]}, [("ip4.addr", ["127.0.1.1"]), *SYSV_NEW]),
    ("sysvmsg inherit", {}, {"sysvmsg": "inherit"},
     [("sysvmsg", JAIL_SYS_INHERIT), ("sysvsem", JAIL_SYS_NEW), ("sysvshm", JAIL_SYS_NEW)]),
    ("sysvsem disable", {}, {"sysvsem": "disable"},
     [("sysvmsg", JAIL_SYS_NEW), ("sysvsem", JAIL_SYS_DISABLE), ("sysvshm", JAIL_SYS_NEW)]),
    ("sysvshm new", {}, {"sysvshm": "new"}, SYSV_NEW),
    ("all sysv disabled", {}, {"sysvmsg": "disable", "sysvsem": "disable", "sysvshm": "disable"},
     [("sysvmsg", 0), ("sysvsem", 0), ("sysvshm", 0)]),
    ("enforceStatfs 0", {}, {"enforceStatfs": 0}, [*SYSV_NEW, ("enforce_statfs", 0)]),
    ("enforceStatfs 2", {}, {"enforceStatfs": 2}, [*SYSV_NEW, ("enforce_statfs", 2)]),
    ("allow.setHostname true", {}, {"allow": {"setHostname": True}},
     [*SYSV_NEW, ("allow.set_hostname", True)]),
    ("allow.rawSockets true", {}, {"allow": {"rawSockets": True}},
     [*SYSV_NEW, ("allow.raw_sockets", True)]),
    ("allow.rawSockets false", {}, {"allow": {"rawSockets": False}},
     [*SYSV_NEW, ("allow.raw_sockets", False)]),
    ("allow.chflags", {}, {"allow": {"chflags": True}}, [*SYSV_NEW, ("allow.chflags", True)]),
    ("allow.quotas", {}, {"allow": {"quotas": False}}, [*SYSV_NEW, ("allow.quotas", False)]),
    ("allow.socketAf", {}, {"allow": {"socketAf": True}},
     [*SYSV_NEW, ("allow.socket_af", True)]),
    ("allow.mlock", {}, {"allow": {"mlock": True}}, [*SYSV_NEW, ("allow.mlock", True)]),
    ("allow.reservedPorts", {}, {"allow": {"reservedPorts": False}},
     [*SYSV_NEW, ("allow.reserved_ports", False)]),
    ("allow.suser false", {}, {"allow": {"suser": False}}, [*SYSV_NEW, ("allow.suser", False)]),
    ("allow.mount, two types", {}, {"enforceStatfs": 1, "allow": {"mount": ["tmpfs", "nullfs"]}},
     [*SYSV_NEW, ("enforce_statfs", 1), ("allow.mount", True),
      ("allow.mount.tmpfs", True), ("allow.mount.nullfs", True)]),
    ("allow.mount empty is no permission", {}, {"enforceStatfs": 1, "allow": {"mount": []}},
     [*SYSV_NEW, ("enforce_statfs", 1)]),
    ("allow.mount devfs takes the ruleset of the devfs mount", {"mounts": [DEVFS_MOUNT]},
     {"enforceStatfs": 1, "allow": {"mount": ["devfs"]}},
     [*SYSV_NEW, ("enforce_statfs", 1), ("devfs_ruleset", 4), ("allow.mount", True),
      ("allow.mount.devfs", True)]),
    ("allow.mount devfs without a ruleset option: ruleset 4", {},
     {"enforceStatfs": 0, "allow": {"mount": ["devfs"]}},
     [*SYSV_NEW, ("enforce_statfs", 0), ("devfs_ruleset", 4), ("allow.mount", True),
      ("allow.mount.devfs", True)]),
    ("a devfs mount alone sets no jail parameter", {"mounts": [DEVFS_MOUNT]}, {}, SYSV_NEW),
    ("the spec's example", {"hostname": "web1"},
     {"host": "new", "vnet": "new", "enforceStatfs": 1,
      "allow": {"rawSockets": True, "chflags": True, "mount": ["tmpfs"]}},
     [("host.hostname", "web1"), ("host", JAIL_SYS_NEW), ("vnet", JAIL_SYS_NEW), *SYSV_NEW,
      ("enforce_statfs", 1), ("allow.raw_sockets", True), ("allow.chflags", True),
      ("allow.mount", True), ("allow.mount.tmpfs", True)]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "jail", "expected"),
    [case[1:] for case in TABLE],
    ids=[case[0] for case in TABLE],
)
def test_config_to_jail_params(
    extra: dict[str, Any], jail: dict[str, Any] | None, expected: list[tuple[str, JailValue]]
) -> None:
    params = params_of(extra, jail)
    assert params == [*head(), *expected]
    encode_params(params)  # every value is one jail_set(2) can take


def test_a_parent_makes_a_hierarchical_name_and_keeps_the_kernel_sysv_default() -> None:
    # jail(8): a child jail is named "<parent>.<name>"; SysV "new" there needs it in
    # the parent, so the spec's default is not forced on a child.
    assert params_of(jail={"parent": "pod"}) == head("pod.web")
    assert params_of(jail={"parent": "pod.infra", "sysvshm": "new"}) == [
        *head("pod.infra.web"),
        ("sysvshm", JAIL_SYS_NEW),
    ]


def test_every_boolean_jail_parameter_is_a_known_kernel_flag() -> None:
    # The allow.* names of kern_jail.c's pr_flag_allow table, and the mount types of jail(8).
    known = {
        "persist", "allow.set_hostname", "allow.raw_sockets", "allow.chflags", "allow.mount",
        "allow.quotas", "allow.socket_af", "allow.mlock", "allow.reserved_ports", "allow.suser",
        "allow.mount.tmpfs", "allow.mount.nullfs", "allow.mount.devfs",
    }  # fmt: skip
    booleans = {
        name
        for _, extra, jail, _ in TABLE
        for name, value in params_of(extra, jail)
        if isinstance(value, bool)
    }
    assert booleans <= known
    assert {"persist", "allow.mount.devfs", "allow.suser"} <= booleans  # the table covers them


# -- contradictions -----------------------------------------------------------------------

CONTRADICTIONS: list[tuple[dict[str, Any], dict[str, Any] | None, str, str]] = [
    # (top-level fields, freebsd.jail, JSON path, message)
    ({"hostname": "web1"}, {"host": "inherit"}, "hostname", 'host "inherit"'),
    ({"domainname": "example.org"}, {"host": "inherit"}, "domainname", 'host "inherit"'),
    ({}, {"host": "inherit", "allow": {"setHostname": True}}, "freebsd.jail.allow.setHostname",
     "would rename the host"),
    ({}, {"ip4": "inherit", "ip4Addr": ["10.0.0.2"]}, "freebsd.jail.ip4Addr",
     'needs ip4 "new", not "inherit"'),
    ({}, {"ip4": "disable", "ip4Addr": ["10.0.0.2"]}, "freebsd.jail.ip4Addr",
     'needs ip4 "new", not "disable"'),
    ({}, {"ip6": "inherit", "ip6Addr": ["fd10::2"]}, "freebsd.jail.ip6Addr",
     'needs ip6 "new", not "inherit"'),
    ({}, {"ip6": "disable", "ip6Addr": ["fd10::2"]}, "freebsd.jail.ip6Addr", 'not "disable"'),
    ({}, {"vnet": "new", "ip4Addr": ["10.0.0.2"]}, "freebsd.jail.ip4Addr", 'vnet "new"'),
    ({}, {"vnet": "new", "ip6Addr": ["fd10::2"]}, "freebsd.jail.ip6Addr", 'vnet "new"'),
    ({}, {"vnet": "new", "ip4": "inherit"}, "freebsd.jail.ip4", 'vnet "new"'),
    ({}, {"vnet": "new", "ip6": "disable"}, "freebsd.jail.ip6", 'vnet "new"'),
    ({}, {"vnetInterfaces": ["epair0b"]}, "freebsd.jail.vnetInterfaces", 'vnet "new"'),
    ({}, {"vnet": "inherit", "vnetInterfaces": ["epair0b"]}, "freebsd.jail.vnetInterfaces",
     'vnet "new"'),
    ({}, {"interface": "lo1"}, "freebsd.jail.interface", "set ip4Addr or ip6Addr"),
    ({}, {"interface": "lo1", "ip4": "new"}, "freebsd.jail.interface", "no addresses"),
    ({}, {"interface": "epair0b", "vnet": "new"}, "freebsd.jail.interface", "vnetInterfaces"),
    ({}, {"allow": {"mount": ["tmpfs"]}}, "freebsd.jail.allow.mount",
     "needs enforceStatfs 0 or 1, and it is unset (2)"),
    ({}, {"enforceStatfs": 2, "allow": {"mount": ["tmpfs"]}}, "freebsd.jail.allow.mount",
     "and it is 2"),
    ({"mounts": [{**DEVFS_MOUNT, "options": ["ruleset=0"]}]},
     {"enforceStatfs": 1, "allow": {"mount": ["tmpfs", "devfs"]}},
     "freebsd.jail.allow.mount[1]", "needs a devfs ruleset"),
    ({"mounts": [{**DEVFS_MOUNT, "options": ["ro", "ruleset=four"]}]},
     {"enforceStatfs": 1, "allow": {"mount": ["devfs"]}}, "mounts[0].options[1]",
     "a devfs ruleset is 0 to 65535"),
    ({"linux": {"namespaces": [{"type": "pid"}]}}, {}, "linux", "Linux section"),
    ({"windows": {"layerFolders": ["x"]}}, None, "windows", "a Windows section on a FreeBSD host"),
    ({"solaris": {"milestone": "x"}}, None, "solaris", "a Solaris section"),
    ({"vm": {"kernel": {"path": "/k"}}}, None, "vm", "virtual-machine section"),
    ({"zos": {"namespaces": [{"type": "pid"}]}}, None, "zos", "z/OS section"),
    ({"process": {"args": ["sh"], "cwd": "/", "capabilities": {"bounding": ["CAP_KILL"]}}},
     None, "process.capabilities", "a Linux process setting on a FreeBSD host"),
    ({"process": {"args": ["sh"], "cwd": "/", "oomScoreAdj": 5}}, None, "process.oomScoreAdj",
     "Linux process setting"),
    ({"process": {"args": ["sh"], "cwd": "/", "commandLine": "x"}}, None,
     "process.commandLine", "a Windows field"),
    ({"process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0, "username": "x"}}},
     None, "process.user.username", "a Windows field"),
    ({"mounts": [{**DEVFS_MOUNT, "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}]},
     None, "mounts[0].uidMappings", "no idmapped mounts"),
    ({"process": {"args": ["sh"], "cwd": "/", "apparmorProfile": "x"}}, None,
     "process.apparmorProfile", "Linux"),
    ({"process": {"args": ["sh"], "cwd": "/", "selinuxLabel": "x"}}, None,
     "process.selinuxLabel", "Linux"),
    ({"process": {"args": ["sh"], "cwd": "/", "scheduler": {"policy": "SCHED_OTHER"}}}, None,
     "process.scheduler", "Linux"),
    ({"process": {"args": ["sh"], "cwd": "/", "ioPriority": {"class": "IOPRIO_CLASS_RT"}}},
     None, "process.ioPriority", "Linux"),
    ({"process": {"args": ["sh"], "cwd": "/", "execCPUAffinity": {"initial": "0"}}}, None,
     "process.execCPUAffinity", "Linux"),
    ({"hostname": "h" * 256}, None, "hostname", "longer than 255 bytes"),
    ({"domainname": "d" * 300}, None, "domainname", "longer than 255 bytes"),
    ({"hostname": "a\0b"}, None, "hostname", "NUL"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "jail", "path", "message"), CONTRADICTIONS)
def test_contradictions_name_the_field(
    extra: dict[str, Any], jail: dict[str, Any] | None, path: str, message: str
) -> None:
    spec = spec_of(extra, jail)
    for call in (lambda: check_freebsd(spec), lambda: jail_params(spec, "web", ROOTFS)):
        with pytest.raises(ConfigError) as caught:
            call()
        assert caught.value.path == path
        assert message in caught.value.message


ACCEPTED: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
    ({"hostname": "h" * 255, "domainname": "d" * 255}, None),
    ({}, {"host": "new", "allow": {"setHostname": True}}),
    ({"hostname": "web1"}, {"host": "new"}),
    ({}, {"vnet": "inherit", "ip4": "inherit", "ip6": "disable"}),
    ({}, {"vnet": "new", "vnetInterfaces": ["epair0b"]}),
    ({}, {"ip4": "new", "ip4Addr": ["10.0.0.2"], "interface": "lo1"}),
    ({}, {"ip6Addr": ["fd10::2"], "interface": "lo1"}),
    ({}, {"ip4": "new"}),  # new without addresses: the jail gets no IPv4 address
    ({}, {"enforceStatfs": 0, "allow": {"mount": ["procfs"]}}),
    ({"mounts": [DEVFS_MOUNT]}, {"enforceStatfs": 1, "allow": {"mount": ["devfs"]}}),
    ({"process": {"args": ["sh"], "cwd": "/", "noNewPrivileges": True}}, None),
    ({"process": {"args": ["sh"], "cwd": "/", "rlimits": []}}, None),
    ({"linux": None}, None),
    # Empty values ask for nothing, as on Linux: generators that always write them pass.
    ({"linux": {}}, None),
    ({"process": {"args": ["sh"], "cwd": "/", "capabilities": {"bounding": []}}}, None),
    ({"process": {"args": ["sh"], "cwd": "/", "oomScoreAdj": 0}}, None),
]


@pytest.mark.parametrize(("extra", "jail"), ACCEPTED)
def test_consistent_configs_pass(extra: dict[str, Any], jail: dict[str, Any] | None) -> None:
    spec = spec_of(extra, jail)
    check_freebsd(spec)
    encode_params(jail_params(spec, "web", ROOTFS))


# -- names --------------------------------------------------------------------------------


def test_jail_name() -> None:
    assert jail_name("web") == "web"
    assert jail_name("a1b2", "pod") == "pod.a1b2"
    assert jail_name("x" * 255) == "x" * 255
    assert jail_name("0abc") == "0abc"  # not all digits


@pytest.mark.parametrize(
    ("container_id", "parent", "message"),
    [
        ("a.b", None, '"." separates a jail from its parent'),
        ("123", None, "numeric jail name as a jail id"),
        ("0", None, "numeric"),
        ("x" * 252, "pod", "longer than 255 bytes"),
    ],
)
def test_ids_that_cannot_name_a_jail(container_id: str, parent: str | None, message: str) -> None:
    with pytest.raises(InvalidIdError) as caught:
        jail_name(container_id, parent)
    assert message in str(caught.value)


def test_jail_params_refuses_a_dotted_id() -> None:
    with pytest.raises(InvalidIdError):
        jail_params(spec_of(), "my.container", ROOTFS)


# -- devfs ruleset ------------------------------------------------------------------------


def test_devfs_ruleset_prefers_the_mount_on_dev() -> None:
    other = {"destination": "/jail/dev", "type": "devfs", "source": "devfs",
             "options": ["ruleset=5"]}  # fmt: skip
    assert devfs_ruleset(spec_of({"mounts": [other, DEVFS_MOUNT]})) == 4
    assert devfs_ruleset(spec_of({"mounts": [other]})) == 5
    assert devfs_ruleset(spec_of({"mounts": [{**DEVFS_MOUNT, "options": ["ro"]}]})) is None
    tmpfs = {"destination": "/dev", "type": "tmpfs", "source": "x", "options": ["ruleset=9"]}
    assert devfs_ruleset(spec_of({"mounts": [tmpfs]})) is None
    assert devfs_ruleset(spec_of()) is None


@pytest.mark.parametrize("option", ["ruleset=four", "ruleset=65536", "ruleset=", "ruleset=-1"])
def test_devfs_ruleset_refuses_a_bad_number(option: str) -> None:
    spec = spec_of({"mounts": [{**DEVFS_MOUNT, "options": ["ro", option]}]})
    with pytest.raises(ConfigError) as caught:
        devfs_ruleset(spec)
    assert caught.value.path == "mounts[0].options[1]"
    assert "0 to 65535" in caught.value.message
