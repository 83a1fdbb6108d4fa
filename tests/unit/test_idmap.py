"""Idmapped mounts: the config rules (pure) and the system calls made, recorded by a fake."""

from __future__ import annotations

import errno
import os

import pytest

from corral.errors import ConfigError
from corral.linux.idmap import (
    AT_EMPTY_PATH,
    AT_FDCWD,
    AT_RECURSIVE,
    MOVE_MOUNT_F_EMPTY_PATH,
    MOVE_MOUNT_T_EMPTY_PATH,
    OPEN_TREE_CLOEXEC,
    OPEN_TREE_CLONE,
    attach_tree,
    check_idmapped_mounts,
    idmapped_mounts,
    open_idmapped_tree,
)
from corral.linux.syscalls import Syscalls
from corral.linux.userns import IDMapping
from corral.spec.model import Spec, parse_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]
DISK = [{"containerID": 1000, "hostID": 0, "size": 1}]


def make_spec(mounts: list[dict[str, Any]], *, user: dict[str, Any] | None = None) -> Spec:
    linux: dict[str, Any] = {"namespaces": [{"type": "mount"}]}
    if user is not None:
        linux["namespaces"].append(user)
        if not user.get("path"):
            linux["uidMappings"] = MAP
            linux["gidMappings"] = MAP
    document = {
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "process": {"args": ["sh"], "cwd": "/"},
        "mounts": mounts,
        "linux": linux,
    }
    return parse_config(document)


def bind(options: list[str], **extra: Any) -> dict[str, Any]:
    return {"destination": "/data", "source": "/srv/data", "options": options, **extra}


def error_of(spec: Spec) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        check_idmapped_mounts(spec)
    return info.value


# -- the rules ---------------------------------------------------------------------------------


def test_plain_mounts_are_not_idmapped() -> None:
    spec = make_spec([bind(["rbind", "ro"]), {"destination": "/proc", "type": "proc"}])
    assert idmapped_mounts(spec, "/bundle") == []


def test_an_idmapped_bind_with_its_own_mappings() -> None:
    spec = make_spec(
        [
            {"destination": "/proc", "type": "proc"},
            bind(["bind", "idmap"], uidMappings=DISK, gidMappings=MAP),
        ]
    )
    [entry] = idmapped_mounts(spec, "/bundle")
    assert entry.index == 1
    assert entry.source == "/srv/data"
    assert (entry.recursive_tree, entry.recursive_idmap) == (False, False)
    assert entry.uid_mappings == [IDMapping(1000, 0, 1)]
    assert entry.gid_mappings == [IDMapping(0, 100000, 65536)]
    assert entry.userns_path == ""


def test_a_relative_source_is_read_from_the_bundle() -> None:
    mount = bind(["bind", "idmap"], uidMappings=DISK, gidMappings=DISK, source="data")
    [entry] = idmapped_mounts(make_spec([mount]), "/bundle")
    assert entry.source == "/bundle/data"


@pytest.mark.parametrize(
    ("options", "tree", "idmap"),
    [
        (["rbind", "ridmap"], True, True),
        (["rbind", "idmap"], True, False),
        (["bind", "ridmap"], False, True),
        (["ridmap", "rbind", "idmap"], True, False),  # the later option wins
        (["bind"], False, False),  # no option, mappings given: idmap (runc)
        (["rbind", "bind"], True, False),  # MS_REC stays set, as in mountopts
    ],
)
def test_recursion_of_the_tree_and_of_the_idmapping(
    options: list[str], tree: bool, idmap: bool
) -> None:
    [entry] = idmapped_mounts(make_spec([bind(options, uidMappings=DISK, gidMappings=DISK)]), "/b")
    assert (entry.recursive_tree, entry.recursive_idmap) == (tree, idmap)


def test_idmap_without_mappings_takes_the_containers_new_user_namespace_mapping() -> None:
    [entry] = idmapped_mounts(make_spec([bind(["rbind", "idmap"])], user={"type": "user"}), "/b")
    assert entry.uid_mappings == entry.gid_mappings == [IDMapping(0, 100000, 65536)]
    assert entry.userns_path == ""


def test_idmap_without_mappings_takes_a_joined_user_namespace() -> None:
    user = {"type": "user", "path": "/proc/7/ns/user"}
    [entry] = idmapped_mounts(make_spec([bind(["bind", "idmap"])], user=user), "/b")
    assert entry.userns_path == "/proc/7/ns/user"
    assert entry.uid_mappings == entry.gid_mappings == []


def test_idmap_without_mappings_or_user_namespace_is_an_error() -> None:
    error = error_of(make_spec([bind(["nosuid", "bind", "idmap"])]))
    assert error.path == "mounts[0].options[2]"
    assert '"idmap" needs mounts[0].uidMappings and gidMappings' in str(error)


@pytest.mark.parametrize(
    ("extra", "path", "message"),
    [
        ({"uidMappings": DISK}, "mounts[0].gidMappings", "required with uidMappings"),
        ({"gidMappings": DISK}, "mounts[0].uidMappings", "required with gidMappings"),
        (
            {
                "uidMappings": DISK,
                "gidMappings": [*DISK, {"containerID": 1000, "hostID": 9, "size": 1}],
            },
            "mounts[0].gidMappings[1]",
            "container ids 1000-1000 overlap mounts[0].gidMappings[0]",
        ),
        (
            {"uidMappings": [{"containerID": 0, "hostID": 0, "size": 0}], "gidMappings": DISK},
            "mounts[0].uidMappings[0].size",
            "must be at least 1",
        ),
    ],
)
def test_mapping_errors_name_the_field(extra: dict[str, Any], path: str, message: str) -> None:
    error = error_of(make_spec([bind(["bind", "idmap"], **extra)]))
    assert error.path == path
    assert message in str(error)


def test_only_bind_mounts_can_be_idmapped() -> None:
    tmpfs = {"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["ridmap"]}
    error = error_of(make_spec([tmpfs], user={"type": "user"}))
    assert str(error) == (
        'config.json: mounts[0].options[0]: "ridmap": only bind mounts can be idmapped '
        '("bind" or "rbind")'
    )
    no_option = {"destination": "/t", "type": "tmpfs", "uidMappings": DISK, "gidMappings": DISK}
    assert error_of(make_spec([no_option])).path == "mounts[0].uidMappings"


def test_a_remount_cannot_be_idmapped() -> None:
    error = error_of(
        make_spec([bind(["bind", "remount", "idmap"], uidMappings=DISK, gidMappings=DISK)])
    )
    assert "an existing mount cannot be idmapped (remount)" in str(error)


def test_an_idmapped_bind_needs_a_source() -> None:
    mount = {
        "destination": "/d",
        "options": ["bind", "idmap"],
        "uidMappings": DISK,
        "gidMappings": DISK,
    }
    assert error_of(make_spec([mount])).path == "mounts[0].source"


# -- the calls -------------------------------------------------------------------------------


class RecordingSyscalls(Syscalls):
    """Records open_tree, mount_setattr and move_mount; ``open_tree`` returns a real fd
    (of /dev/null) so the code under test can close it."""

    def __init__(self, fail: dict[str, int] | None = None) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.fail = fail or {}
        self.opened: list[int] = []

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail:
            err = self.fail[name]
            raise OSError(err, f"{name}: {os.strerror(err)}")

    def open_tree(self, dirfd: int, path: str, flags: int) -> int:
        self.calls.append(("open_tree", dirfd, path, flags))
        self._maybe_fail("open_tree")
        fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        self.opened.append(fd)
        return fd

    def mount_setattr_idmap(self, dirfd: int, path: str, flags: int, userns_fd: int) -> None:
        self.calls.append(("mount_setattr_idmap", dirfd, path, flags, userns_fd))
        self._maybe_fail("mount_setattr_idmap")

    def move_mount(
        self, from_dirfd: int, from_path: str, to_dirfd: int, to_path: str, flags: int
    ) -> None:
        self.calls.append(("move_mount", from_dirfd, from_path, to_dirfd, to_path, flags))
        self._maybe_fail("move_mount")


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    ("tree", "idmap", "tree_flags", "setattr_flags"),
    [
        (False, False, 0, AT_EMPTY_PATH),
        (True, False, AT_RECURSIVE, AT_EMPTY_PATH),
        (True, True, AT_RECURSIVE, AT_EMPTY_PATH | AT_RECURSIVE),
    ],
)
def test_open_idmapped_tree_calls(
    tree: bool, idmap: bool, tree_flags: int, setattr_flags: int
) -> None:
    sc = RecordingSyscalls()
    fd = open_idmapped_tree(sc, "/srv/data", 42, recursive_tree=tree, recursive_idmap=idmap)
    try:
        assert sc.calls == [
            ("open_tree", AT_FDCWD, "/srv/data", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | tree_flags),
            ("mount_setattr_idmap", fd, "", setattr_flags, 42),
        ]
    finally:
        os.close(fd)


def test_a_filesystem_without_idmapping_is_named_and_the_tree_closed() -> None:
    sc = RecordingSyscalls({"mount_setattr_idmap": errno.EINVAL})
    with pytest.raises(OSError) as info:
        open_idmapped_tree(sc, "/srv/data", 42, recursive_tree=False, recursive_idmap=False)
    assert info.value.errno == errno.EINVAL
    assert "idmapping /srv/data: Invalid argument (the filesystem of /srv/data does not" in str(
        info.value
    )
    assert not is_open(sc.opened[0])


def test_open_tree_errors_name_the_source() -> None:
    sc = RecordingSyscalls({"open_tree": errno.ENOENT})
    with pytest.raises(OSError, match="open_tree /srv/x: No such file or directory"):
        open_idmapped_tree(sc, "/srv/x", 42, recursive_tree=False, recursive_idmap=False)
    assert [call[0] for call in sc.calls] == ["open_tree"]


def test_attach_tree_moves_the_detached_mount_onto_the_target_fd() -> None:
    sc = RecordingSyscalls()
    attach_tree(sc, 7, 9, "/data")
    assert sc.calls == [
        ("move_mount", 7, "", 9, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
    ]
    failing = RecordingSyscalls({"move_mount": errno.EPERM})
    with pytest.raises(OSError, match="move_mount /data: Operation not permitted"):
        attach_tree(failing, 7, 9, "/data")
