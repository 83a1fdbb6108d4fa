"""linux.devices: the checked entries, and their creation in a temporary rootfs.

Without root only FIFOs can really be made, so the fake's mknodat makes FIFOs for
real and refuses character and block devices with ``EPERM``, which is what a user
namespace does: those go to the bind path, whose mounts are recorded (with each
``/proc/self/fd/N`` shown as the file it names). Path resolution is real.
Creating real device nodes is tested as root in tests/integration.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from corral.errors import ConfigError, CreateError
from corral.linux.devices import (
    DEFAULT_FILE_MODE,
    check_devices,
    config_devices,
    create_config_devices,
    default_devices,
    in_user_namespace,
)
from corral.linux.syscalls import MS_BIND, Syscalls
from corral.spec.model import Spec, parse_config

UID, GID = os.getuid(), os.getgid()


def make_spec(devices: Any, mounts: list[dict[str, Any]] | None = None, **linux: Any) -> Spec:
    section: dict[str, Any] = {"namespaces": [{"type": "mount"}], "devices": devices}
    section.update(linux)
    return parse_config({"ociVersion": "1.2.0", "mounts": mounts or [], "linux": section})


def fifo(path: str, **extra: Any) -> dict[str, Any]:
    return {"type": "p", "path": path, "uid": UID, "gid": GID, **extra}


class RecordingSyscalls(Syscalls):
    def __init__(self) -> None:
        self.real = Syscalls()
        self.calls: list[tuple[Any, ...]] = []

    @staticmethod
    def where(path: str) -> str:
        if path.startswith("/proc/self/fd/"):
            return os.readlink(path)
        return path

    def mknodat(self, dirfd: int, name: str, mode: int, device: int) -> None:
        self.calls.append(("mknodat", os.readlink(f"/proc/self/fd/{dirfd}"), name, mode, device))
        if not stat.S_ISFIFO(mode):
            raise PermissionError(errno.EPERM, f"mknod {name}: Operation not permitted")
        self.real.mknodat(dirfd, name, mode, device)

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        self.calls.append(("mount", source and self.where(source), self.where(target), flags))

    def openat2(self, dirfd: int, path: str, flags: int, mode: int, resolve: int) -> int:
        return self.real.openat2(dirfd, path, flags, mode, resolve)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "rootfs" / "dev").mkdir(parents=True)
    return tmp_path / "rootfs"


def create(root: Path, spec: Spec, *, in_userns: bool = False) -> RecordingSyscalls:
    sc = RecordingSyscalls()
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        create_config_devices(sc, root_fd, spec, in_userns=in_userns)
    finally:
        os.close(root_fd)
    return sc


# -- the entries ---------------------------------------------------------------------


def test_the_spec_example() -> None:
    devices = config_devices(
        make_spec(
            [
                {
                    "path": "/dev/fuse",
                    "type": "c",
                    "major": 10,
                    "minor": 229,
                    "fileMode": 438,
                    "uid": 0,
                    "gid": 0,
                },
                {
                    "path": "/dev/sda",
                    "type": "b",
                    "major": 8,
                    "minor": 0,
                    "fileMode": 432,
                    "uid": 0,
                    "gid": 0,
                },
            ]
        )
    )
    fuse, sda = devices
    assert (fuse.path, fuse.file_type, fuse.rdev, fuse.mode) == (
        "/dev/fuse", stat.S_IFCHR, os.makedev(10, 229), 0o666
    )  # fmt: skip
    assert (sda.path, sda.file_type, sda.rdev, sda.mode) == (
        "/dev/sda", stat.S_IFBLK, os.makedev(8, 0), 0o660
    )  # fmt: skip
    assert fuse.describe() == "character device 10:229"
    assert sda.describe() == "block device 8:0"


def test_defaults_and_other_types() -> None:
    u, p = config_devices(
        make_spec(
            [
                {"path": "/opt//x/../zero", "type": "u", "major": 1, "minor": 5},
                {"path": "/run/pipe", "type": "p"},
            ]
        )
    )
    assert (u.path, u.file_type, u.mode, u.uid, u.gid) == (
        "/opt/zero", stat.S_IFCHR, DEFAULT_FILE_MODE, 0, 0
    )  # fmt: skip
    assert (p.file_type, p.rdev, p.describe()) == (stat.S_IFIFO, 0, "FIFO")
    assert config_devices(make_spec([])) == []


def test_file_type_bits_in_file_mode_must_agree() -> None:
    (device,) = config_devices(
        make_spec(
            [
                {
                    "path": "/dev/a",
                    "type": "c",
                    "major": 1,
                    "minor": 3,
                    "fileMode": stat.S_IFCHR | 0o4640,
                }
            ]
        )
    )
    assert device.mode == 0o4640
    with pytest.raises(ConfigError) as info:
        check_devices(
            make_spec(
                [
                    {
                        "path": "/dev/a",
                        "type": "c",
                        "major": 1,
                        "minor": 3,
                        "fileMode": stat.S_IFBLK | 0o666,
                    }
                ]
            )
        )
    assert info.value.path == "linux.devices[0].fileMode"
    assert "says a block device, not a character device" in str(info.value)


@pytest.mark.parametrize(
    ("entry", "path", "message"),
    [
        ({"path": "/dev/x", "type": "x", "major": 1, "minor": 1}, "type",
         'unknown device type "x" (c, b, u or p)'),
        ({"path": "/dev/x", "major": 1, "minor": 1}, "type", "required field is missing"),
        ({"type": "c", "major": 1, "minor": 1}, "path", "required field is missing"),
        ({"path": "dev/x", "type": "c", "major": 1, "minor": 1}, "path",
         '"dev/x" is not an absolute path'),
        ({"path": "/..", "type": "p"}, "path", "names the root"),
        ({"path": "/dev/x", "type": "c", "minor": 1}, "major", "required field is missing"),
        ({"path": "/dev/x", "type": "b", "major": 1}, "minor", "required field is missing"),
        ({"path": "/dev/x", "type": "c", "major": 4096, "minor": 1}, "major",
         "above the maximum 4095"),
        ({"path": "/dev/x", "type": "c", "major": 1, "minor": 1 << 20}, "minor",
         "above the maximum 1048575"),
        ({"path": "/dev/x", "type": "c", "major": -1, "minor": 1}, "major", "below the minimum 0"),
        ({"path": "/dev/x", "type": "c", "major": 1, "minor": 1, "fileMode": 0o1000000},
         "fileMode", "bits beyond the permissions"),
        ({"path": "/dev/x", "type": "c", "major": 1, "minor": 1, "uid": 2**32 - 1}, "uid",
         "above the maximum"),
        ({"path": "/dev/x", "type": "c", "major": 1, "minor": 1, "gid": "0"}, "gid",
         "expected an integer"),
    ],
)  # fmt: skip
def test_entry_errors_name_the_field(entry: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_devices(make_spec([fifo("/dev/ok"), entry]))
    assert info.value.path == f"linux.devices[1].{path}"
    assert message in str(info.value)


def test_a_path_given_twice_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        check_devices(make_spec([fifo("/dev/a"), fifo("/dev/b"), fifo("//dev/./a")]))
    assert info.value.path == "linux.devices[2].path"
    assert "/dev/a is also linux.devices[0]" in str(info.value)


def test_the_same_numbers_twice_are_allowed() -> None:
    """config-linux.md: SHOULD NOT, not MUST NOT (aliases of one device exist)."""
    same = {"type": "c", "major": 10, "minor": 229}
    assert len(config_devices(make_spec([{"path": "/dev/a", **same},
                                         {"path": "/dev/b", **same}]))) == 2  # fmt: skip


def test_devices_array_must_hold_objects() -> None:
    with pytest.raises(ConfigError) as info:
        check_devices(make_spec(["/dev/fuse"]))
    assert info.value.path == "linux.devices[0]"


def test_a_configured_device_replaces_the_default_one() -> None:
    spec = make_spec([{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}])
    assert "null" not in [name for name, _, _ in default_devices(spec)]


# -- creation ------------------------------------------------------------------------


def test_fifos_are_made_in_their_parent_with_mode_and_owner(root: Path) -> None:
    sc = create(root, make_spec([fifo("/run/deep/pipe", fileMode=0o620)]))
    st = os.lstat(root / "run" / "deep" / "pipe")
    assert stat.S_ISFIFO(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o620  # exact, whatever the umask
    assert (st.st_uid, st.st_gid) == (UID, GID)
    assert sc.calls == [("mknodat", str(root / "run" / "deep"), "pipe", stat.S_IFIFO | 0o620, 0)]


def test_a_matching_file_is_left_alone(root: Path) -> None:
    os.mkfifo(root / "dev" / "pipe", 0o600)
    sc = create(root, make_spec([fifo("/dev/pipe", fileMode=0o666)]))
    assert stat.S_IMODE(os.lstat(root / "dev" / "pipe").st_mode) == 0o600
    assert [call[0] for call in sc.calls] == ["mknodat"]


def test_a_different_file_at_the_path_is_an_error(root: Path) -> None:
    (root / "dev" / "pipe").write_text("not a fifo")
    with pytest.raises(CreateError) as info:
        create(root, make_spec([fifo("/dev/pipe")]))
    assert str(info.value) == (
        "linux.devices[0]: /dev/pipe exists and is not the requested FIFO (it is a regular file)"
    )


def test_a_parent_that_is_a_file_is_an_error(root: Path) -> None:
    (root / "run").write_text("")
    with pytest.raises(CreateError, match=r"^linux\.devices\[0\]: /run/pipe: .*not a directory"):
        create(root, make_spec([fifo("/run/pipe")]))


def test_symlinks_in_the_image_stay_inside_the_root(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    # An absolute link: read inside the root, it names rootfs/<outside>, not the host's.
    (root / "run").symlink_to(outside)
    with pytest.raises(CreateError, match="symbolic link to a missing directory"):
        create(root, make_spec([fifo("/run/pipe")]))
    assert list(outside.iterdir()) == []
    inside = root / str(outside).lstrip("/")
    inside.mkdir(parents=True)
    create(root, make_spec([fifo("/run/pipe")]))
    assert stat.S_ISFIFO(os.lstat(inside / "pipe").st_mode)
    assert list(outside.iterdir()) == []


def test_in_a_user_namespace_the_host_node_is_bound(root: Path) -> None:
    spec = make_spec([{"path": "/dev/null", "type": "c", "major": 1, "minor": 3,
                       "fileMode": 0o600}, fifo("/dev/pipe")])  # fmt: skip
    sc = create(root, spec, in_userns=True)
    target = root / "dev" / "null"
    assert target.is_file() and target.stat().st_size == 0
    assert sc.calls == [
        ("mount", "/dev/null", str(target), MS_BIND),
        ("mknodat", str(root / "dev"), "pipe", stat.S_IFIFO | 0o666, 0),
    ]


def test_after_eperm_every_device_is_bound(root: Path) -> None:
    """mknod refused once (no CAP_MKNOD): binds from then on, as for the default devices."""
    spec = make_spec([{"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
                      {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5}])  # fmt: skip
    sc = create(root, spec)
    assert sc.calls == [
        ("mknodat", str(root / "dev"), "null", stat.S_IFCHR | 0o666, os.makedev(1, 3)),
        ("mount", "/dev/null", str(root / "dev" / "null"), MS_BIND),
        ("mount", "/dev/zero", str(root / "dev" / "zero"), MS_BIND),
    ]


def test_binding_needs_the_same_device_on_the_host(root: Path) -> None:
    wrong = make_spec([{"path": "/dev/null", "type": "c", "major": 1, "minor": 5}])
    with pytest.raises(CreateError) as info:
        create(root, wrong, in_userns=True)
    expected = "the host's /dev/null to bind is a character device 1:3, not the requested"
    assert f"{expected} character device 1:5" in str(info.value)
    assert not (root / "dev" / "null").exists()
    missing = make_spec([{"path": "/dev/corral-no-such", "type": "c", "major": 10, "minor": 1}])
    with pytest.raises(CreateError, match="the host has no /dev/corral-no-such to bind"):
        create(root, missing, in_userns=True)


def test_nothing_is_made_when_dev_is_the_hosts(root: Path) -> None:
    bind_dev = [{"destination": "/dev", "source": "/dev", "type": "none", "options": ["rbind"]}]
    sc = create(root, make_spec([fifo("/dev/pipe")], mounts=bind_dev))
    assert sc.calls == []
    assert not (root / "dev" / "pipe").exists()


def test_user_namespace_detection(tmp_path: Path) -> None:
    uid_map = tmp_path / "uid_map"
    uid_map.write_text("         0          0 4294967295\n")
    assert not in_user_namespace(make_spec([]), uid_map=str(uid_map))
    assert in_user_namespace(
        make_spec([], namespaces=[{"type": "mount"}, {"type": "user"}]), uid_map=str(uid_map)
    )
    uid_map.write_text("         0       1000          1\n")
    assert in_user_namespace(make_spec([]), uid_map=str(uid_map))
    assert not in_user_namespace(make_spec([]), uid_map=str(tmp_path / "missing"))
