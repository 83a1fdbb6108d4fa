"""The rootfs executor against a recording fake Syscalls, on a temporary directory.

The fake records mount(2) and friends instead of doing them, and resolves each
``/proc/self/fd/N`` target to the file it names at call time, so the tests can check
where a mount would have landed, with which flags, in which order. Path resolution
(openat2, mkdirat) is real: it needs no privilege.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from corral.linux import devices, rootfs
from corral.linux.mountopts import MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY
from corral.linux.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_MOVE,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_UNBINDABLE,
    Syscalls,
)
from corral.spec.model import Spec, parse_config

Call = tuple[Any, ...]


class RecordingSyscalls(Syscalls):
    """Records mounts, mknods, pivots; delegates openat2 to the real call."""

    def __init__(self, fail: dict[tuple[str, str], int] | None = None) -> None:
        self.real = Syscalls()
        self.calls: list[Call] = []
        # (call name, resolved target or fstype) -> errno to fail with
        self.fail = fail or {}

    @staticmethod
    def where(path: str) -> str:
        """A /proc/self/fd/N path as the file it names, as the kernel would see it."""
        if path.startswith("/proc/self/fd/"):
            fd, _, rest = path[len("/proc/self/fd/") :].partition("/")
            base = os.readlink(f"/proc/self/fd/{fd}")
            return f"{base}/{rest}" if rest else base
        return path

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        where = self.where(target)
        self.calls.append(("mount", source and self.where(source), where, fstype, flags, data))
        for key in (("mount", where), ("mount", fstype or "")):
            if key in self.fail:
                err = self.fail[key]
                raise OSError(err, f"mount {target}: {os.strerror(err)}")

    def mount_setattr(
        self, dirfd: int, path: str, flags: int, attr_set: int, attr_clr: int
    ) -> None:
        self.calls.append(("mount_setattr", self.where(f"/proc/self/fd/{dirfd}"), flags,
                           attr_set, attr_clr))  # fmt: skip

    def mknod(self, path: str, mode: int, device: int) -> None:
        where = self.where(path)
        self.calls.append(("mknod", where, mode, device))
        if ("mknod", "*") in self.fail:
            raise PermissionError(errno.EPERM, "mknod: Operation not permitted")
        # a regular file stands in for the node
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))

    def pivot_root(self, new_root: str, put_old: str) -> None:
        self.calls.append(("pivot_root", new_root, put_old))

    def umount2(self, target: str, flags: int) -> None:
        self.calls.append(("umount2", target, flags))

    def chroot(self, path: str) -> None:
        self.calls.append(("chroot", path))

    def openat2(self, dirfd: int, path: str, flags: int, mode: int, resolve: int) -> int:
        return self.real.openat2(dirfd, path, flags, mode, resolve)

    def mounts(self) -> list[Call]:
        return [call for call in self.calls if call[0] == "mount"]


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "rootfs" / "bin").mkdir(parents=True)
    (tmp_path / "volume").mkdir()
    (tmp_path / "volume.conf").write_text("x")
    return tmp_path


def make_spec(mounts: list[dict[str, Any]], **linux: Any) -> Spec:
    config: dict[str, Any] = {
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "mounts": mounts,
        "linux": {"namespaces": [{"type": "mount"}], **linux},
    }
    return parse_config(config)


def setup(bundle: Path, spec: Spec, sc: RecordingSyscalls | None = None) -> RecordingSyscalls:
    sc = sc or RecordingSyscalls()
    rootfs.setup_rootfs(sc, spec, str(bundle / "rootfs"), str(bundle))
    return sc


def test_root_propagation_then_rootfs_bind_then_mounts_in_order(bundle: Path) -> None:
    spec = make_spec(
        [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nodev"]},
        ]
    )
    sc = setup(bundle, spec)
    root = str(bundle / "rootfs")
    assert sc.mounts()[:5] == [
        ("mount", None, "/", None, MS_SLAVE | MS_REC, None),
        ("mount", root, root, None, MS_BIND | MS_REC, None),
        ("mount", "proc", f"{root}/proc", "proc", 0, None),
        ("mount", "tmpfs", f"{root}/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME,
         "mode=755,size=65536k"),
        ("mount", "shm", f"{root}/dev/shm", "tmpfs", MS_NODEV, None),
    ]  # fmt: skip
    assert (bundle / "rootfs/proc").is_dir()
    assert (bundle / "rootfs/dev/shm").is_dir()


def test_bind_mount_is_remounted_for_its_flags(bundle: Path) -> None:
    spec = make_spec(
        [{"destination": "/data", "source": "volume", "options": ["rbind", "ro", "nosuid"]}]
    )
    sc = setup(bundle, spec)
    data = str(bundle / "rootfs/data")
    assert sc.mounts()[2:4] == [
        ("mount", str(bundle / "volume"), data, None, MS_BIND | MS_REC, None),
        ("mount", None, data, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID, None),
    ]


def test_bind_without_flags_is_one_call(bundle: Path) -> None:
    sc = setup(
        bundle, make_spec([{"destination": "/data", "source": "volume", "options": ["bind"]}])
    )
    data_calls = [c for c in sc.mounts() if c[2].endswith("/data")]
    assert data_calls == [("mount", str(bundle / "volume"), data_calls[0][2], None, MS_BIND, None)]


def test_a_file_bind_gets_an_empty_file_to_mount_onto(bundle: Path) -> None:
    spec = make_spec(
        [{"destination": "/etc/app.conf", "source": "volume.conf", "options": ["bind", "ro"]}]
    )
    sc = setup(bundle, spec)
    target = bundle / "rootfs/etc/app.conf"
    assert target.is_file()
    assert target.read_text() == ""
    assert sc.mounts()[2][1:3] == (str(bundle / "volume.conf"), str(target))


def test_propagation_and_recursive_options_act_on_the_new_mount(bundle: Path) -> None:
    spec = make_spec(
        [
            {
                "destination": "/data",
                "source": str(bundle / "volume"),
                "options": ["rbind", "rshared", "rro", "rnosuid"],
            }
        ]
    )
    sc = setup(bundle, spec)
    data = str(bundle / "rootfs/data")
    after = sc.calls[sc.calls.index(("mount", str(bundle / "volume"), data, None,
                                     MS_BIND | MS_REC, None)) + 1 :]  # fmt: skip
    assert after[:2] == [
        ("mount", None, data, None, MS_SHARED | MS_REC, None),
        ("mount_setattr", data, rootfs.AT_EMPTY_PATH | rootfs.AT_RECURSIVE,
         MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0),
    ]  # fmt: skip


def test_destination_symlinks_cannot_leave_the_rootfs(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (bundle / "rootfs/escape").symlink_to(str(outside))  # absolute host path
    (bundle / "rootfs/up").symlink_to("../../../../..")
    spec = make_spec(
        [
            {"destination": "/escape/tmp", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/up/run", "type": "tmpfs", "source": "tmpfs"},
        ]
    )
    # The link's target does not exist inside the rootfs: refused, nothing created.
    with pytest.raises(NotADirectoryError) as caught:
        setup(bundle, spec)
    assert "mounts[0]: /escape: is a symbolic link" in str(caught.value)
    assert not (outside / "tmp").exists()
    # Once it does, the link leads there, inside the rootfs.
    root = str(bundle / "rootfs")
    os.makedirs(f"{root}{outside}")
    sc = setup(bundle, spec)
    targets = [call[2] for call in sc.mounts()[2:]]
    assert targets == [f"{root}{outside}/tmp", f"{root}/run"]
    assert not (outside / "tmp").exists()


def test_proc_must_not_be_mounted_through_a_symlink(bundle: Path) -> None:
    (bundle / "rootfs/elsewhere").mkdir()
    (bundle / "rootfs/proc").symlink_to("elsewhere")
    spec = make_spec([{"destination": "/proc", "type": "proc", "source": "proc"}])
    sc = RecordingSyscalls()
    with pytest.raises(OSError) as caught:
        setup(bundle, spec, sc)
    assert caught.value.errno == errno.ELOOP
    assert "mounts[0]" in str(caught.value) and "real directory" in str(caught.value)
    assert all(call[3] != "proc" for call in sc.mounts())


def test_errors_name_the_mount_and_its_destination(bundle: Path) -> None:
    spec = make_spec(
        [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"},
        ]
    )
    sc = RecordingSyscalls(fail={("mount", "mqueue"): errno.EPERM})
    with pytest.raises(PermissionError) as caught:
        setup(bundle, spec, sc)
    assert str(caught.value.strerror) == (
        "mounts[1]: mount mqueue on /dev/mqueue: Operation not permitted"
    )


def test_sysfs_refused_falls_back_to_a_bind_of_the_hosts(bundle: Path) -> None:
    spec = make_spec(
        [{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]}]
    )
    sc = setup(bundle, spec, RecordingSyscalls(fail={("mount", "sysfs"): errno.EPERM}))
    sys_dir = str(bundle / "rootfs/sys")
    assert sc.mounts()[2:5] == [
        ("mount", "sysfs", sys_dir, "sysfs", MS_RDONLY, None),
        ("mount", "/sys", sys_dir, None, MS_BIND | MS_REC, None),
        ("mount", None, sys_dir, None,
         MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
    ]  # fmt: skip


def test_default_devices_and_links(bundle: Path) -> None:
    spec = make_spec([{"destination": "/dev/pts", "type": "devpts", "source": "devpts"}])
    sc = setup(bundle, spec)
    dev = str(bundle / "rootfs/dev")
    made = [(call[1], call[2], call[3]) for call in sc.calls if call[0] == "mknod"]
    assert made == [
        (f"{dev}/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
        for name, major, minor in devices.DEFAULT_DEVICES
    ]
    links = {name: os.readlink(f"{dev}/{name}") for name in os.listdir(dev)
             if os.path.islink(f"{dev}/{name}")}  # fmt: skip
    expected = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}  # fmt: skip
    if os.path.exists("/proc/kcore"):
        expected["core"] = "/proc/kcore"
    assert links == expected


def test_without_mknod_the_host_devices_are_bound(bundle: Path) -> None:
    sc = setup(bundle, make_spec([]), RecordingSyscalls(fail={("mknod", "*"): errno.EPERM}))
    dev = str(bundle / "rootfs/dev")
    assert [call[0] for call in sc.calls if call[0] == "mknod"] == ["mknod"]  # tried once
    binds = [call for call in sc.mounts() if call[2].startswith(dev)]
    assert binds == [
        ("mount", f"/dev/{name}", f"{dev}/{name}", None, MS_BIND, None)
        for name, _, _ in devices.DEFAULT_DEVICES
    ]
    assert all(os.path.isfile(call[2]) for call in binds)


def test_devices_the_config_provides_are_left_alone(bundle: Path) -> None:
    spec = make_spec(
        [{"destination": "/dev/null", "source": "volume.conf", "options": ["bind"]}],
        devices=[{"path": "/dev/tty", "type": "c", "major": 5, "minor": 0}],
    )
    assert [name for name, _, _ in devices.default_devices(spec)] == [
        "zero", "full", "random", "urandom",
    ]  # fmt: skip
    bind_dev = make_spec([{"destination": "/dev", "source": "/dev", "options": ["rbind"]}])
    assert devices.default_devices(bind_dev) == []
    sc = setup(bundle, bind_dev)
    assert not any(call[0] == "mknod" for call in sc.calls)
    assert not (bundle / "rootfs/dev/fd").is_symlink()


def test_an_image_file_in_place_of_a_device_is_replaced(bundle: Path) -> None:
    (bundle / "rootfs/dev").mkdir()
    (bundle / "rootfs/dev/null").write_text("not a device")
    sc = setup(bundle, make_spec([]))
    nulls = [call for call in sc.calls if call[0] == "mknod" and call[1].endswith("/null")]
    assert len(nulls) == 2  # EEXIST, removed, made again
    assert (bundle / "rootfs/dev/null").read_text() == ""


def test_dev_symlinks_plan() -> None:
    assert ("ptmx", "pts/ptmx") not in devices.dev_symlinks(False, False)
    assert devices.dev_symlinks(True, True)[-2:] == [("ptmx", "pts/ptmx"), ("core", "/proc/kcore")]


@pytest.mark.parametrize(
    ("propagation", "before", "after"),
    [
        ("", MS_SLAVE | MS_REC, None),
        ("rslave", MS_SLAVE | MS_REC, MS_SLAVE | MS_REC),
        ("rprivate", MS_PRIVATE | MS_REC, MS_PRIVATE | MS_REC),
        ("rshared", MS_SHARED | MS_REC, MS_SHARED | MS_REC),
        ("shared", MS_SHARED, MS_SHARED),
        ("unbindable", MS_PRIVATE, MS_UNBINDABLE),  # unbindable would refuse the binds
        ("runbindable", MS_PRIVATE | MS_REC, MS_UNBINDABLE | MS_REC),
    ],
)
def test_rootfs_propagation(
    bundle: Path, tmp_path: Path, propagation: str, before: int, after: int | None
) -> None:
    spec = make_spec([], rootfsPropagation=propagation)
    sc = setup(bundle, spec)
    assert sc.calls[0] == ("mount", None, "/", None, before, None)
    if before & MS_SHARED or not before & MS_REC:
        # the mount holding the rootfs stops being shared, or pivot_root fails
        assert sc.calls[1][4] == MS_PRIVATE
        assert str(bundle).startswith(sc.calls[1][2])
    else:
        assert sc.calls[1][4] == MS_BIND | MS_REC
    finish = RecordingSyscalls()
    rootfs.finish_rootfs(finish, spec, root=str(tmp_path))
    expected = [] if after is None else [("mount", None, str(tmp_path), None, after, None)]
    assert finish.calls == expected


def test_enter_rootfs_pivots_and_detaches_the_old_root(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(bundle)
    sc = RecordingSyscalls()
    rootfs.enter_rootfs(sc, str(bundle / "rootfs"), no_pivot=False)
    assert sc.calls == [
        ("pivot_root", ".", "."),
        ("mount", None, ".", None, MS_SLAVE | MS_REC, None),
        ("umount2", ".", MNT_DETACH),
    ]
    assert os.getcwd() == "/"


def test_enter_rootfs_without_pivot_moves_and_chroots(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(bundle)
    sc = RecordingSyscalls()
    root = str(bundle / "rootfs")
    rootfs.enter_rootfs(sc, root, no_pivot=True)
    assert sc.calls == [("mount", root, "/", None, MS_MOVE, None), ("chroot", ".")]


def test_finish_masks_and_makes_read_only(tmp_path: Path) -> None:
    (tmp_path / "proc/sys").mkdir(parents=True)
    (tmp_path / "proc/acpi").mkdir()
    (tmp_path / "proc/kcore").write_text("")
    spec = parse_config(
        {
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs", "readonly": True},
            "linux": {
                "maskedPaths": ["/proc/kcore", "/proc/acpi", "/proc/missing"],
                "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
            },
        }
    )
    sc = RecordingSyscalls()
    rootfs.finish_rootfs(sc, spec, root=str(tmp_path))
    kept = rootfs.mount_flags_of(str(tmp_path))
    proc_sys, root = str(tmp_path / "proc/sys"), str(tmp_path)
    assert sc.calls == [
        ("mount", proc_sys, proc_sys, None, MS_BIND | MS_REC, None),
        ("mount", None, proc_sys, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept, None),
        ("mount", "/dev/null", str(tmp_path / "proc/kcore"), None, MS_BIND, None),
        ("mount", "tmpfs", str(tmp_path / "proc/acpi"), "tmpfs",
         MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
        ("mount", None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept, None),
    ]  # fmt: skip


def test_cgroup_v1_helpers() -> None:
    assert rootfs._controllers("rw,cpuacct,cpu") == "cpu,cpuacct"
    assert rootfs._controllers("rw,xattr,name=systemd") == "name=systemd"
    # the process's own cgroup under a hierarchy mounted from its root, or from a subtree
    assert rootfs._cgroup_dir("/sys/fs/cgroup/memory", "/", "/a/b") == "/sys/fs/cgroup/memory/a/b"
    assert rootfs._cgroup_dir("/sys/fs/cgroup/memory", "/a", "/a/b") == "/sys/fs/cgroup/memory/b"
    assert rootfs._cgroup_dir("/sys/fs/cgroup/memory", "/x", "/a/b") == "/sys/fs/cgroup/memory"
    assert rootfs._cgroup_dir("/sys/fs/cgroup/memory", "/", "/") == "/sys/fs/cgroup/memory"
