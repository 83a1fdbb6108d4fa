"""linux.resources.devices: parsing, the effective rules, the v1 plan, and the v2
attach sequence against a recording fake of bpf(2)."""

from __future__ import annotations

import errno
import os
import stat
import struct
from typing import Any

import pytest

from corral.errors import ConfigError
from corral.linux.cgroups.devices import (
    BPF_CGROUP_DEVICE,
    BPF_F_ALLOW_MULTI,
    BPF_F_REPLACE,
    BPF_PROG_ATTACH,
    BPF_PROG_DETACH,
    BPF_PROG_GET_FD_BY_ID,
    BPF_PROG_LOAD,
    BPF_PROG_QUERY,
    BPF_PROG_TYPE_CGROUP_DEVICE,
    STANDARD_RULES,
    DeviceRule,
    apply_v2_devices,
    device_program_for,
    device_state,
    effective_rules,
    parse_device_rules,
    parse_devices_list,
    plan_v1_devices,
)
from corral.spec.model import Spec, parse_config
from support.bpf_interp import decide

DENY_ALL = {"allow": False, "access": "rwm"}


def make_spec(rules: list[Any] | None = None, devices: list[Any] | None = None) -> Spec:
    linux: dict[str, Any] = {"namespaces": [{"type": "mount"}]}
    if rules is not None:
        linux["resources"] = {"devices": rules}
    if devices is not None:
        linux["devices"] = devices
    return parse_config({"ociVersion": "1.2.0", "linux": linux})


def allowed(spec: Spec, kind: str, major: int, minor: int, access: str) -> bool:
    return decide(device_program_for(effective_rules(spec)), kind, major, minor, access)


# -- parsing --------------------------------------------------------------------------------


def test_parse_defaults_and_normalises() -> None:
    rules = parse_device_rules(
        {"devices": [{"allow": False}, {"allow": True, "type": "c", "major": 10, "access": "wmr"}]}
    )
    assert rules == [DeviceRule(False, "a"), DeviceRule(True, "c", 10, -1, "rwm")]
    assert rules[1].where == "linux.resources.devices[1]"
    assert rules[1].cgroup_string() == "c 10:* rwm"
    assert parse_device_rules(None) == [] == parse_device_rules({})


@pytest.mark.parametrize(
    ("entry", "path", "message"),
    [
        ({"allow": True, "access": "rx"}, "linux.resources.devices[2].access", "r, w and m"),
        ({"allow": True, "access": ""}, "linux.resources.devices[2].access", "r, w and m"),
        ({"allow": True, "type": "u"}, "linux.resources.devices[2].type", "a, b or c"),
        ({"allow": True, "major": -1}, "linux.resources.devices[2].major", ""),
        ({"allow": True, "minor": 1 << 32}, "linux.resources.devices[2].minor", ""),
        ({"allow": "yes"}, "linux.resources.devices[2].allow", "boolean"),
        ({"access": "r"}, "linux.resources.devices[2].allow", "missing"),
        ("c 1:3 r", "linux.resources.devices[2]", "object"),
    ],
)
def test_parse_errors_name_the_field(entry: Any, path: str, message: str) -> None:
    resources = {"devices": [DENY_ALL, {"allow": True, "type": "c", "major": 1}, entry]}
    with pytest.raises(ConfigError) as caught:
        parse_device_rules(resources)
    assert caught.value.path == path
    assert message in caught.value.message


def test_parse_error_under_another_prefix() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_device_rules({"devices": [{"allow": True, "access": "q"}]}, where="resources")
    assert caught.value.path == "resources.devices[0].access"


# -- the effective rules -----------------------------------------------------------------


def test_effective_rules_order() -> None:
    spec = make_spec(
        [DENY_ALL, {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"}],
        [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
         {"path": "/dev/p", "type": "p"}],
    )  # fmt: skip
    rules = effective_rules(spec)
    assert rules[0] == DeviceRule(False, "a")
    assert rules[1] == DeviceRule(True, "c", 10, 229, "rwm")
    assert rules[1].where == "linux.devices[0]"  # the FIFO needs no rule
    assert rules[2:4] == [DeviceRule(False, "a"), DeviceRule(True, "b", 8, 0, "r")]
    assert rules[4:] == list(STANDARD_RULES)


def test_no_rules_at_all_gives_the_standard_devices_only() -> None:
    spec = make_spec()
    assert allowed(spec, "c", 1, 3, "rw")  # /dev/null
    assert allowed(spec, "c", 136, 7, "rw")  # a pty
    assert allowed(spec, "c", 5, 2, "rw")  # ptmx
    assert not allowed(spec, "c", 1, 1, "r")  # /dev/mem
    assert allowed(spec, "c", 1, 1, "m")  # mknod is allowed, use is not
    assert not allowed(spec, "b", 8, 0, "r")


def test_a_leading_deny_all_keeps_the_standard_devices() -> None:
    # what `runc spec`, containerd and Docker write
    spec = make_spec([DENY_ALL])
    assert allowed(spec, "c", 1, 3, "rw") and allowed(spec, "c", 1, 9, "r")
    assert not allowed(spec, "c", 4, 1, "rw")


def test_config_devices_are_usable_but_a_rule_can_narrow_them() -> None:
    fuse = {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}
    assert allowed(make_spec(None, [fuse]), "c", 10, 229, "rw")
    # Docker's --device /dev/sda:/dev/xvdc:r: a node, and an "r" rule after a deny-all
    sda = {"path": "/dev/xvdc", "type": "b", "major": 8, "minor": 0}
    spec = make_spec([DENY_ALL, {"allow": True, "type": "b", "major": 8, "minor": 0,
                                 "access": "r"}], [sda])  # fmt: skip
    assert allowed(spec, "b", 8, 0, "r")
    assert not allowed(spec, "b", 8, 0, "w")
    assert not allowed(spec, "b", 8, 0, "rw")


def test_allow_all_then_deny_one() -> None:
    spec = make_spec(
        [{"allow": True, "access": "rwm"},
         {"allow": False, "type": "b", "major": 8, "access": "w"}]
    )  # fmt: skip
    assert allowed(spec, "b", 7, 0, "rw")
    assert allowed(spec, "b", 8, 1, "r")
    assert not allowed(spec, "b", 8, 1, "rw")
    assert device_state(effective_rules(spec)).default_allow


def test_update_resources_replace_the_config_rules_only_when_they_have_devices() -> None:
    spec = make_spec([DENY_ALL, {"allow": True, "type": "c", "major": 4, "access": "rw"}])
    assert len(effective_rules(spec, {"memory": {"limit": 1}})) == len(effective_rules(spec))
    rules = effective_rules(spec, {"devices": [{"allow": True, "type": "c", "major": 7}]})
    assert DeviceRule(True, "c", 4, -1, "rw") not in rules
    assert DeviceRule(True, "c", 7, -1, "rwm") in rules
    with pytest.raises(ConfigError) as caught:
        effective_rules(spec, {"devices": [{"allow": 1}]}, where="r")
    assert caught.value.path == "r.devices[0].allow"


def test_a_partial_all_type_rule_means_both_types_not_a_reset() -> None:
    # the v1 file API would read "a 10:* r" as "allow everything"
    spec = make_spec([DENY_ALL, {"allow": True, "major": 10, "access": "r"}])
    assert allowed(spec, "c", 10, 1, "r") and allowed(spec, "b", 10, 1, "r")
    assert not allowed(spec, "c", 10, 1, "w")
    assert not allowed(spec, "c", 11, 1, "r")


def test_punching_a_hole_in_a_wildcard_is_refused_naming_the_rule() -> None:
    spec = make_spec(
        [DENY_ALL,
         {"allow": True, "type": "c", "major": 4, "access": "rw"},
         {"allow": False, "type": "c", "major": 4, "minor": 1, "access": "w"}]
    )  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        effective_rules_state(spec)
    assert caught.value.path == "linux.resources.devices[2]"
    assert "c 4:* w is allowed (linux.resources.devices[1])" in caught.value.message


def test_a_wildcard_deny_blocking_a_standard_device_names_the_config_rule() -> None:
    spec = make_spec(
        [{"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "access": "rw"}]
    )
    with pytest.raises(ConfigError) as caught:
        effective_rules_state(spec)
    assert caught.value.path == "linux.resources.devices[1]"
    assert "cannot allow c 1:3 rwm" in caught.value.message


def test_removing_a_wider_exception_keeps_narrower_ones_as_v1_does() -> None:
    spec = make_spec(
        [DENY_ALL,
         {"allow": True, "type": "c", "major": 4, "minor": 1, "access": "rw"},
         {"allow": False, "type": "c", "major": 4, "access": "rw"}]
    )  # fmt: skip
    assert allowed(spec, "c", 4, 1, "rw")
    assert not allowed(spec, "c", 4, 2, "r")


def effective_rules_state(spec: Spec) -> object:
    return device_state(effective_rules(spec))


# -- v1 -------------------------------------------------------------------------------------


def test_plan_v1_from_scratch() -> None:
    rules = [DeviceRule(False, "a"), DeviceRule(True, "c", 1, 3, "rwm"),
             DeviceRule(True, "b", 8, -1, "r"), DeviceRule(True, "c", 1, 3, "m")]  # fmt: skip
    assert plan_v1_devices(rules) == [
        ("devices.deny", "a *:* rwm"),
        ("devices.allow", "b 8:* r"),
        ("devices.allow", "c 1:3 rwm"),
    ]
    allow_all = [DeviceRule(True, "a"), DeviceRule(False, "c", 1, 1, "rw")]
    assert plan_v1_devices(allow_all) == [
        ("devices.allow", "a *:* rwm"),
        ("devices.deny", "c 1:1 rw"),
    ]


def test_plan_v1_update_writes_only_the_difference() -> None:
    current = "c 1:3 rwm\nc 1:5 rw\nb 8:* r\n"
    rules = [DeviceRule(False, "a"), DeviceRule(True, "c", 1, 3, "rwm"),
             DeviceRule(True, "c", 1, 5, "r"), DeviceRule(True, "c", 4, 1, "rw")]  # fmt: skip
    assert plan_v1_devices(rules, current) == [
        ("devices.deny", "b 8:* r"),  # removals first
        ("devices.deny", "c 1:5 w"),
        ("devices.allow", "c 4:1 rw"),
    ]
    assert plan_v1_devices(rules, "c 1:3 rwm\nc 1:5 r\nc 4:1 rw\n") == []


def test_plan_v1_update_from_allow_all_or_to_allow_all_resets() -> None:
    rules = [DeviceRule(False, "a"), DeviceRule(True, "c", 1, 3, "rwm")]
    assert plan_v1_devices(rules, "a *:* rwm\n")[0] == ("devices.deny", "a *:* rwm")
    assert plan_v1_devices([DeviceRule(True, "a")], "c 1:3 rwm\n") == [
        ("devices.allow", "a *:* rwm")
    ]


def test_parse_devices_list() -> None:
    state = parse_devices_list("c 1:3 rwm\nc 136:* rw\nb *:* m\n")
    assert state is not None and not state.default_allow
    assert state.exceptions == {("c", 1, 3): 7, ("c", 136, -1): 6, ("b", -1, -1): 1}
    assert parse_devices_list("a *:* rwm\n") is None
    with pytest.raises(ValueError, match="unexpected"):
        parse_devices_list("x 1:3 r\n")


# -- v2: the bpf(2) sequence ---------------------------------------------------------------


class FakeBPF:
    """Records bpf(2) calls; BPF_PROG_QUERY answers with ``attached``."""

    def __init__(self, attached: list[int], flags: int = BPF_F_ALLOW_MULTI,
                 replace_errno: int = 0) -> None:  # fmt: skip
        self.attached = attached
        self.flags = flags
        self.replace_errno = replace_errno
        self.calls: list[tuple[Any, ...]] = []
        self.fds: list[int] = []

    def _fd(self) -> int:
        fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        self.fds.append(fd)
        return fd

    def bpf(self, command: int, attr: bytearray, pointers: Any, what: str) -> int:
        if command == BPF_PROG_LOAD:
            prog_type, count = struct.unpack_from("=II", attr, 0)
            program = dict(pointers)[8]
            self.calls.append(("load", prog_type, count, bytes(program)))
            return self._fd()
        if command == BPF_PROG_QUERY:
            target, attach_type = struct.unpack_from("=II", attr, 0)
            assert stat.S_ISDIR(os.fstat(target).st_mode)  # the cgroup's directory fd
            ids = dict(pointers)[16]
            struct.pack_into("=I", attr, 12, self.flags)
            struct.pack_into("=I", attr, 24, len(self.attached))
            struct.pack_into(f"={len(self.attached)}I", ids, 0, *self.attached)
            self.calls.append(("query", attach_type))
            return 0
        if command == BPF_PROG_GET_FD_BY_ID:
            self.calls.append(("get_fd", struct.unpack_from("=I", attr, 0)[0]))
            return self._fd()
        if command == BPF_PROG_ATTACH:
            target, prog_fd, attach_type, flags, replace = struct.unpack_from("=IIIII", attr, 0)
            assert stat.S_ISDIR(os.fstat(target).st_mode)
            assert prog_fd == self.fds[0]  # the loaded program
            if flags & BPF_F_REPLACE:
                assert replace == self.fds[1]  # the fd of the old program's id
            self.calls.append(("attach", attach_type, flags))
            if flags & BPF_F_REPLACE and self.replace_errno:
                raise OSError(self.replace_errno, "replace")
            return 0
        if command == BPF_PROG_DETACH:
            _, old_fd, attach_type = struct.unpack_from("=III", attr, 0)
            assert old_fd in self.fds[1:]
            self.calls.append(("detach", attach_type))
            return 0
        raise AssertionError(command)


@pytest.fixture
def cgroup_dir(tmp_path: Any) -> str:
    return str(tmp_path)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_first_attach_loads_queries_and_attaches_multi(cgroup_dir: str) -> None:
    fake = FakeBPF([])
    rules = [DeviceRule(False, "a"), *STANDARD_RULES]
    before = open_fds()
    apply_v2_devices(cgroup_dir, rules, fake)  # type: ignore[arg-type]
    assert [call[0] for call in fake.calls] == ["load", "query", "attach"]
    load = fake.calls[0]
    assert load[1] == BPF_PROG_TYPE_CGROUP_DEVICE
    assert load[3] == device_program_for(rules) and load[2] == len(load[3]) // 8
    assert fake.calls[1] == ("query", BPF_CGROUP_DEVICE)
    assert fake.calls[2] == ("attach", BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
    assert open_fds() == before


def test_one_old_program_is_replaced_atomically(cgroup_dir: str) -> None:
    fake = FakeBPF([41])
    apply_v2_devices(cgroup_dir, [DeviceRule(False, "a")], fake)  # type: ignore[arg-type]
    assert [call[0] for call in fake.calls] == ["load", "query", "get_fd", "attach"]
    assert fake.calls[2] == ("get_fd", 41)
    assert fake.calls[3][2] == BPF_F_ALLOW_MULTI | BPF_F_REPLACE


def test_without_replace_the_old_programs_are_detached_after_the_attach(
    cgroup_dir: str,
) -> None:
    fake = FakeBPF([41], replace_errno=errno.EINVAL)  # a kernel before 5.6
    before = open_fds()
    apply_v2_devices(cgroup_dir, [DeviceRule(False, "a")], fake)  # type: ignore[arg-type]
    kinds = [call[0] for call in fake.calls]
    assert kinds == ["load", "query", "get_fd", "attach", "attach", "detach"]
    assert fake.calls[4][2] == BPF_F_ALLOW_MULTI
    assert open_fds() == before
    fake = FakeBPF([41, 42, 43])
    apply_v2_devices(cgroup_dir, [DeviceRule(False, "a")], fake)  # type: ignore[arg-type]
    kinds = [call[0] for call in fake.calls]
    assert kinds == ["load", "query", "get_fd", "get_fd", "get_fd", "attach"] + ["detach"] * 3


def test_an_old_single_program_attached_without_multi_is_overridden(cgroup_dir: str) -> None:
    fake = FakeBPF([9], flags=0)
    apply_v2_devices(cgroup_dir, [DeviceRule(False, "a")], fake)  # type: ignore[arg-type]
    assert fake.calls[-1] == ("attach", BPF_CGROUP_DEVICE, 0)


def test_attach_failure_closes_every_fd(cgroup_dir: str) -> None:
    class Failing(FakeBPF):
        def bpf(self, command: int, attr: bytearray, pointers: Any, what: str) -> int:
            if command == BPF_PROG_ATTACH:
                raise OSError(errno.EPERM, "attach device program: Operation not permitted")
            return super().bpf(command, attr, pointers, what)

    before = open_fds()
    with pytest.raises(OSError, match="attach"):
        apply_v2_devices(cgroup_dir, [DeviceRule(False, "a")], Failing([3, 4]))  # type: ignore[arg-type]
    assert open_fds() == before
