"""User namespace mappings (the kernel's rules as ConfigErrors) and the first child's
sequence of namespace calls, recorded by a fake; no root needed."""

from __future__ import annotations

import errno
import os

import pytest

from corral.errors import ConfigError, CreateError
from corral.linux.syscalls import CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWUTS, Syscalls
from corral.linux.userns import (
    MAX_MAP_LINES,
    IDMapping,
    UserNamespacePlan,
    check_map,
    check_user_namespace,
    enter_user_namespace,
    map_lines,
    namespaces_for_init,
    parse_map_file,
    parse_mappings,
    plan_user_namespace,
    user_mappings,
    write_id_maps,
)
from corral.spec.model import Namespace, Spec, parse_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def make_spec(
    *,
    user: dict[str, Any] | None = None,
    uid_maps: Any = None,
    gid_maps: Any = None,
    process_user: dict[str, Any] | None = None,
) -> Spec:
    namespaces: list[dict[str, Any]] = [{"type": "pid"}, {"type": "mount"}]
    if user is not None:
        namespaces.append(user)
    linux: dict[str, Any] = {"namespaces": namespaces}
    if uid_maps is not None:
        linux["uidMappings"] = uid_maps
    if gid_maps is not None:
        linux["gidMappings"] = gid_maps
    document = {
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "process": {
            "args": ["sh"],
            "cwd": "/",
            "user": process_user or {"uid": 0, "gid": 0},
        },
        "linux": linux,
    }
    return parse_config(document)


def error_of(spec: Spec) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        check_user_namespace(spec)
    return info.value


# -- parse_mappings / check_map -------------------------------------------------------------


def test_parse_mappings_reads_entries() -> None:
    maps = parse_mappings(
        [{"containerID": 0, "hostID": 1000, "size": 1}, {"containerID": 1, "hostID": 5, "size": 9}],
        "linux.uidMappings",
    )
    assert maps == [IDMapping(0, 1000, 1), IDMapping(1, 5, 9)]
    assert parse_mappings(None, "linux.uidMappings") == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"containerID": 0}, "linux.uidMappings: expected an array, got an object"),
        ([{"hostID": 1, "size": 1}], "linux.uidMappings[0].containerID: required field is missing"),
        ([{"containerID": 0, "hostID": -1, "size": 1}], "linux.uidMappings[0].hostID: -1 is below"),
        (
            [{"containerID": 0, "hostID": 1, "size": 0}],
            "linux.uidMappings[0].size: must be at least 1",
        ),
        (
            [{"containerID": "0", "hostID": 1, "size": 1}],
            'containerID: expected an integer, got "0"',
        ),
        (
            [{"containerID": 4294967290, "hostID": 0, "size": 6}],
            "linux.uidMappings[0].containerID: ids 4294967290-4294967295 reach 4294967295",
        ),
        (
            [{"containerID": 0, "hostID": 4294967295, "size": 1}],
            "linux.uidMappings[0].hostID: ids 4294967295-4294967295",
        ),
    ],
)
def test_parse_mappings_errors_name_the_field(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_mappings(value, "linux.uidMappings")
    assert message in str(info.value)


def test_the_whole_id_space_but_the_invalid_id_is_accepted() -> None:
    # The map of the initial user namespace: "0 0 4294967295".
    maps = parse_mappings([{"containerID": 0, "hostID": 0, "size": 4294967295}], "m")
    check_map(maps, "m")
    assert map_lines(maps) == "0 0 4294967295\n"


@pytest.mark.parametrize(
    ("second", "side"),
    [(IDMapping(9, 500, 5), "container ids 9-13"), (IDMapping(50, 104, 2), "host ids 104-105")],
)
def test_overlapping_ranges_are_refused(second: IDMapping, side: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_map([IDMapping(0, 100, 10), second], "linux.gidMappings")
    assert str(info.value) == (
        f"config.json: linux.gidMappings[1]: {side} overlap linux.gidMappings[0]"
    )


def test_adjacent_ranges_do_not_overlap() -> None:
    check_map([IDMapping(0, 100, 10), IDMapping(10, 110, 10)], "m")


def test_at_most_340_lines() -> None:
    lines = [IDMapping(i, 1000 + i, 1) for i in range(MAX_MAP_LINES)]
    check_map(lines, "m")
    with pytest.raises(ConfigError, match="341 entries; the kernel takes at most 340"):
        check_map([*lines, IDMapping(400, 2000, 1)], "m")


def test_a_map_longer_than_a_page_is_refused() -> None:
    # 200 lines of 33 characters: under 340 lines but over one page of text.
    lines = [IDMapping(4000000000 + i, 4000000000 + i, 1) for i in range(200)]
    with pytest.raises(ConfigError) as info:
        check_map(lines, "linux.uidMappings")
    assert "bytes as text; the kernel takes less than" in str(info.value)


def test_map_lines_and_the_kernels_format_round_trip() -> None:
    maps = [IDMapping(0, 100000, 65536), IDMapping(65536, 7, 1)]
    assert map_lines(maps) == "0 100000 65536\n65536 7 1\n"
    kernel_text = "         0     100000      65536\n     65536          7          1\n"
    assert parse_map_file(kernel_text) == maps


# -- check_user_namespace ------------------------------------------------------------------


def test_a_complete_user_namespace_passes() -> None:
    spec = make_spec(
        user={"type": "user"},
        uid_maps=MAP,
        gid_maps=MAP,
        process_user={"uid": 1000, "gid": 1000, "additionalGids": [5, 65535]},
    )
    check_user_namespace(spec)
    assert user_mappings(spec) == ([IDMapping(0, 100000, 65536)], [IDMapping(0, 100000, 65536)])


def test_no_user_namespace_and_no_mappings_passes() -> None:
    check_user_namespace(make_spec())
    check_user_namespace(make_spec(uid_maps=[], gid_maps=[]))  # empty asks for nothing


def test_mappings_need_a_user_namespace() -> None:
    error = error_of(make_spec(gid_maps=MAP))
    assert error.path == "linux.gidMappings"
    assert 'needs a user namespace (linux.namespaces has no "user")' in str(error)


@pytest.mark.parametrize(
    ("uid_maps", "gid_maps", "path"),
    [
        (None, None, "linux.uidMappings"),
        (MAP, None, "linux.gidMappings"),
        (None, MAP, "linux.uidMappings"),
    ],
)
def test_a_new_user_namespace_needs_both_maps(uid_maps: Any, gid_maps: Any, path: str) -> None:
    error = error_of(make_spec(user={"type": "user"}, uid_maps=uid_maps, gid_maps=gid_maps))
    assert error.path == path
    assert "required to create a user namespace" in str(error)


def test_a_joined_user_namespace_needs_no_mappings_and_may_have_them() -> None:
    joined = {"type": "user", "path": "/proc/1/ns/user"}
    check_user_namespace(make_spec(user=joined))
    # Compared with the namespace's own maps at create time (check_joined_mappings).
    check_user_namespace(make_spec(user=joined, uid_maps=MAP, gid_maps=MAP))


def test_container_root_must_be_mapped() -> None:
    no_root = [{"containerID": 1, "hostID": 100001, "size": 100}]
    error = error_of(make_spec(user={"type": "user"}, uid_maps=MAP, gid_maps=no_root))
    assert str(error) == "config.json: linux.gidMappings: container gid 0 (root) is not mapped"


@pytest.mark.parametrize(
    ("process_user", "path", "value"),
    [
        ({"uid": 65536, "gid": 0}, "process.user.uid", 65536),
        ({"uid": 0, "gid": 70000}, "process.user.gid", 70000),
        (
            {"uid": 0, "gid": 0, "additionalGids": [1, 99999]},
            "process.user.additionalGids[1]",
            99999,
        ),
    ],
)
def test_the_process_ids_must_be_mapped(
    process_user: dict[str, Any], path: str, value: int
) -> None:
    spec = make_spec(user={"type": "user"}, uid_maps=MAP, gid_maps=MAP, process_user=process_user)
    error = error_of(spec)
    assert error.path == path
    assert f"{value} is not mapped by linux." in str(error)


def test_bad_entries_are_reported_by_check_user_namespace() -> None:
    overlapping = [*MAP, {"containerID": 10, "hostID": 1, "size": 1}]
    error = error_of(make_spec(user={"type": "user"}, uid_maps=overlapping, gid_maps=MAP))
    assert error.path == "linux.uidMappings[1]"


# -- namespaces and the plan ----------------------------------------------------------------


def test_namespaces_for_init_are_the_new_ones_but_user_and_pid() -> None:
    namespaces = [
        Namespace("pid", ""),
        Namespace("user", ""),
        Namespace("network", "/run/netns/a"),
        Namespace("mount", ""),
        Namespace("uts", ""),
    ]
    assert [ns.type for ns in namespaces_for_init(namespaces)] == ["mount", "uts"]


def test_plan_joins_paths_and_creates_the_pid_namespace() -> None:
    namespaces = [
        Namespace("network", "/run/netns/a"),
        Namespace("user", ""),
        Namespace("pid", ""),
        Namespace("uts", "/proc/9/ns/uts"),
    ]
    plan = plan_user_namespace(namespaces, {"network": 11, "uts": 12})
    assert plan.joins == [("network", 11, "/run/netns/a"), ("uts", 12, "/proc/9/ns/uts")]
    assert plan.user_fd is None
    assert plan.children_flags == CLONE_NEWPID


def test_plan_with_joined_user_and_pid_namespaces() -> None:
    namespaces = [Namespace("user", "/proc/9/ns/user"), Namespace("pid", "/proc/9/ns/pid")]
    plan = plan_user_namespace(namespaces, {"user": 20, "pid": 21})
    assert plan.joins == [("pid", 21, "/proc/9/ns/pid")]
    assert (plan.user_fd, plan.user_path, plan.children_flags) == (20, "/proc/9/ns/user", 0)


def test_plan_needs_a_user_namespace() -> None:
    with pytest.raises(ValueError, match="needs a user namespace"):
        plan_user_namespace([Namespace("pid", "")], {})


# -- the first child's calls, recorded ------------------------------------------------------


class RecordingSyscalls(Syscalls):
    """Records the namespace and credential calls; ``fail`` maps a call (with the first
    argument, for setns) to errnos raised in turn."""

    def __init__(self, fail: dict[tuple[object, ...], list[int]] | None = None) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.fail = fail or {}

    def _record(self, *call: object) -> None:
        self.calls.append(call)
        errors = self.fail.get(call[:2]) or self.fail.get(call[:1])
        if errors:
            err = errors.pop(0)
            raise OSError(err, os.strerror(err))

    def setns(self, fd: int, nstype: int, what: str = "") -> None:
        self._record("setns", fd, nstype)

    def unshare(self, flags: int) -> None:
        self._record("unshare", flags)

    def setgroups(self, gids: list[int]) -> None:
        self._record("setgroups", tuple(gids))

    def setresgid(self, rgid: int, egid: int, sgid: int) -> None:
        self._record("setresgid", rgid, egid, sgid)

    def setresuid(self, ruid: int, euid: int, suid: int) -> None:
        self._record("setresuid", ruid, euid, suid)


def run_enter(sc: RecordingSyscalls, plan: UserNamespacePlan) -> None:
    enter_user_namespace(sc, plan, lambda: sc.calls.append(("maps written",)))


BECOME_ROOT: list[tuple[object, ...]] = [
    ("setgroups", ()),
    ("setresgid", 0, 0, 0),
    ("setresuid", 0, 0, 0),
]


def test_new_user_namespace_order() -> None:
    sc = RecordingSyscalls()
    run_enter(sc, UserNamespacePlan([("network", 11, "/n")], None, "", CLONE_NEWPID))
    assert sc.calls == [
        ("setns", 11, CLONE_NEWNET),
        ("unshare", CLONE_NEWUSER),
        ("maps written",),
        *BECOME_ROOT,
        ("unshare", CLONE_NEWPID),
    ]


def test_joined_user_namespace_is_entered_with_setns_and_no_maps() -> None:
    sc = RecordingSyscalls()
    run_enter(sc, UserNamespacePlan([], 20, "/proc/9/ns/user", 0))
    assert sc.calls == [("setns", 20, CLONE_NEWUSER), *BECOME_ROOT]


def test_a_join_refused_outside_is_tried_again_inside_the_user_namespace() -> None:
    sc = RecordingSyscalls({("setns", 12): [errno.EPERM]})
    plan = UserNamespacePlan([("uts", 12, "/u"), ("network", 11, "/n")], 20, "/user", CLONE_NEWPID)
    run_enter(sc, plan)
    assert sc.calls == [
        ("setns", 12, CLONE_NEWUTS),
        ("setns", 11, CLONE_NEWNET),
        ("setns", 20, CLONE_NEWUSER),
        *BECOME_ROOT,
        ("setns", 12, CLONE_NEWUTS),
        ("unshare", CLONE_NEWPID),
    ]


def test_a_join_refused_twice_fails_naming_the_namespace() -> None:
    sc = RecordingSyscalls({("setns", 12): [errno.EPERM, errno.EPERM]})
    with pytest.raises(CreateError, match="joining the uts namespace /u: Operation not permitted"):
        run_enter(sc, UserNamespacePlan([("uts", 12, "/u")], 20, "/user", 0))


def test_unmapped_root_is_named() -> None:
    sc = RecordingSyscalls({("setresuid",): [errno.EINVAL]})
    with pytest.raises(CreateError) as info:
        run_enter(sc, UserNamespacePlan([], 20, "/user", 0))
    assert (
        str(info.value)
        == "becoming root in the user namespace /user: container root (0) is not mapped"
    )


def test_setgroups_denied_in_a_joined_namespace_is_ignored() -> None:
    sc = RecordingSyscalls({("setgroups",): [errno.EPERM]})
    run_enter(sc, UserNamespacePlan([], 20, "/user", 0))
    assert sc.calls[-1] == ("setresuid", 0, 0, 0)


def test_user_namespace_limit_is_explained() -> None:
    sc = RecordingSyscalls({("unshare", CLONE_NEWUSER): [errno.ENOSPC]})
    with pytest.raises(CreateError, match=r"creating the user namespace: .*max_user_namespaces"):
        run_enter(sc, UserNamespacePlan([], None, "", CLONE_NEWPID))
    assert ("maps written",) not in sc.calls


def test_write_id_maps_names_the_file() -> None:
    with pytest.raises(OSError, match=r"writing /proc/999999999/gid_map: No such file"):
        write_id_maps(999999999, [IDMapping(0, 1, 1)], [IDMapping(0, 1, 1)])
