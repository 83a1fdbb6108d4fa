"""In-root resolution and the whole rootfs setup, for real, as root.

As root an escape would really write into the host's ``/etc``, so these tests check
that it does not. Mounts happen in forked children that unshare a mount namespace
(and make it rslave first), so the host's mount table is never touched; the tests
also compare it before and after. The last tests build a busybox container's root
filesystem with setup_rootfs, enter_rootfs and finish_rootfs and look at it from a
shell inside.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from corral.linux import mountinfo, paths, rootfs
from corral.linux.mountopts import check_mounts
from corral.linux.syscalls import (
    CLONE_NEWNS,
    MS_REC,
    MS_SHARED,
    NAMESPACE_FLAGS,
    Syscalls,
)
from corral.spec.model import Spec, parse_config
from support.forked import in_child

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass

BUSYBOX = "/bin/busybox"
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(sys.platform != "linux", reason="Linux mount namespaces"),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root"),
]


def host_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split(" - ")[0].split(" ", 4)[4] for line in f)


def host_cgroup_layout() -> set[str]:
    """What a container's /sys/fs/cgroup must show at least: v2's files, v1's hierarchies."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return {"cgroup.controllers", "cgroup.procs"}
    return {
        mount_point.rpartition("/")[2]
        for mount_point, _, fstype, _ in mountinfo.read()
        if fstype in ("cgroup", "cgroup2") and mount_point.startswith("/sys/fs/cgroup/")
    }


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "rootfs"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "passwd").write_text("root:x:0:0\n")
    (base / "hostetc").symlink_to("/etc")
    (base / "up").symlink_to("../../../../../../..")
    return base


@pytest.fixture
def sc() -> Syscalls:
    return Syscalls()


def open_root(root: Path) -> int:
    return os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def test_links_to_host_paths_stay_inside_the_root(sc: Syscalls, root: Path) -> None:
    name = f"corral-test-{uuid.uuid4().hex[:12]}"
    root_fd = open_root(root)
    try:
        os.close(paths.mkdir_all_in_root(sc, root_fd, f"/hostetc/{name}/sub"))
        os.close(paths.create_file_in_root(sc, root_fd, f"/up/etc/{name}.conf"))
        os.close(paths.mkdir_all_in_root(sc, root_fd, f"/up/up/../hostetc/{name}-2"))
    finally:
        os.close(root_fd)
    assert (root / "etc" / name / "sub").is_dir()
    assert (root / "etc" / f"{name}.conf").is_file()
    assert (root / "etc" / f"{name}-2").is_dir()
    for leaked in (name, f"{name}.conf", f"{name}-2"):
        assert not os.path.lexists(f"/etc/{leaked}")


def test_a_file_where_a_directory_is_expected(sc: Syscalls, root: Path) -> None:
    root_fd = open_root(root)
    try:
        with pytest.raises(NotADirectoryError) as caught:
            paths.mkdir_all_in_root(sc, root_fd, "/hostetc/passwd/x")
    finally:
        os.close(root_fd)
    assert "/hostetc/passwd: exists and is not a directory" in str(caught.value)
    assert os.path.isfile("/etc/passwd")


def test_a_mount_onto_the_fd_lands_inside_the_root(sc: Syscalls, root: Path) -> None:
    before = host_mounts()

    def body() -> str:
        root_fd = open_root(root)
        fd = paths.mkdir_all_in_root(sc, root_fd, "/hostetc/mnt")
        sc.mount("tmpfs", f"/proc/self/fd/{fd}", "tmpfs", 0, "size=16k")
        return f"{os.path.ismount(root / 'etc/mnt')} {os.path.ismount('/etc/mnt')}"

    assert in_child(body, CLONE_NEWNS) == "True False"
    assert host_mounts() == before


# -- a busybox container -------------------------------------------------------------


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    if not os.path.exists(BUSYBOX):
        pytest.skip(f"{BUSYBOX} is needed for a rootfs")
    (tmp_path / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, tmp_path / "rootfs" / "bin" / "busybox")
    (tmp_path / "rootfs" / "bin" / "sh").symlink_to("busybox")
    (tmp_path / "volume").mkdir()
    (tmp_path / "volume" / "hello").write_text("hello\n")
    return tmp_path


def config(**changes: Any) -> dict[str, Any]:
    """Close to the config ``runc spec`` writes, plus a read-only volume."""
    document: dict[str, Any] = {
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "process": {"args": ["sh"], "cwd": "/"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/data", "source": "volume", "options": ["rbind", "ro", "nosuid"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in
                           ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": ["/proc/kcore", "/proc/timer_list", "/sys/firmware", "/nothere"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }  # fmt: skip
    document["linux"].update(changes.pop("linux", {}))
    document.update(changes)
    return document


SCRIPT = r"""
echo "null=$(stat -c '%F %t:%T %a' /dev/null)"
echo "data=$(cat /data/hello)"
touch /data/new 2>/dev/null && echo "data_rw=yes" || echo "data_rw=no"
{ echo x > /proc/sys/kernel/domainname; } 2>/dev/null && echo "sys_rw=yes" || echo "sys_rw=no"
echo "firmware=$(ls -A /sys/firmware | wc -l)"
echo "fd=$(readlink /dev/fd)"
echo "ptmx=$(readlink /dev/ptmx)"
echo "pid=$$"
echo "root_ro=$(touch /rootfile 2>/dev/null && echo no || echo yes)"
echo "cgroup=$(ls /sys/fs/cgroup | tr '\n' ' ')"
echo "cgroup_ro=$(mkdir /sys/fs/cgroup/x 2>/dev/null && echo no || echo yes)"
echo "mounts=$(grep -c . /proc/self/mountinfo)"
"""


def run_container(bundle: Path, spec: Spec, *, no_pivot: bool = False) -> dict[str, str]:
    """setup_rootfs, enter_rootfs, finish_rootfs in new namespaces, then run SCRIPT."""
    check_mounts(spec, str(bundle))
    assert spec.linux is not None
    flags = 0
    for ns in spec.linux.namespaces:
        flags |= NAMESPACE_FLAGS[ns.type]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.dup2(write_fd, 1)
            sc = Syscalls()
            sc.unshare(flags)
            init = os.fork()  # the first child in the pid namespace is its pid 1
            if init:
                _, status = os.waitpid(init, 0)
                os._exit(os.waitstatus_to_exitcode(status))
            rootfs.setup_rootfs(sc, spec, str(bundle / "rootfs"), str(bundle))
            rootfs.enter_rootfs(sc, str(bundle / "rootfs"), no_pivot=no_pivot)
            rootfs.finish_rootfs(sc, spec)
            os.execv("/bin/sh", ["sh", "-c", SCRIPT])
        except BaseException as error:
            os.write(1, f"error={error}\n".encode())
        finally:
            os._exit(1)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        output = f.read()
    os.waitpid(pid, 0)
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@pytest.mark.parametrize("no_pivot", [False, True])
def test_busybox_container_rootfs(bundle: Path, no_pivot: bool) -> None:
    before = host_mounts()
    seen = run_container(bundle, parse_config(config()), no_pivot=no_pivot)
    assert "error" not in seen, seen["error"]
    assert seen["null"] == "character special file 1:3 666"
    assert seen["data"] == "hello"
    assert seen["data_rw"] == "no"
    assert seen["sys_rw"] == "no"  # readonlyPaths
    assert seen["firmware"] == "0"  # maskedPaths: an empty tmpfs
    assert seen["fd"] == "/proc/self/fd" and seen["ptmx"] == "pts/ptmx"
    assert seen["pid"] == "1"
    assert seen["root_ro"] == "no"
    assert set(seen["cgroup"].split()) >= host_cgroup_layout()
    assert seen["cgroup_ro"] == "yes"
    assert not (bundle / "volume" / "new").exists()
    assert host_mounts() == before  # nothing leaked to the host


def test_cgroups_without_a_cgroup_namespace_are_bound(bundle: Path) -> None:
    namespaces = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]
    seen = run_container(bundle, parse_config(config(linux={"namespaces": namespaces})))
    assert "error" not in seen, seen["error"]
    assert set(seen["cgroup"].split()) >= host_cgroup_layout()
    assert seen["cgroup_ro"] == "yes"


def test_read_only_root_and_shared_propagation(bundle: Path) -> None:
    spec = parse_config(
        config(root={"path": "rootfs", "readonly": True}, linux={"rootfsPropagation": "shared"})
    )
    seen = run_container(bundle, spec)
    assert "error" not in seen, seen["error"]
    assert seen["root_ro"] == "yes"


def test_pivot_works_when_the_rootfs_sits_on_a_shared_mount(bundle: Path, sc: Syscalls) -> None:
    """The parent mount of the rootfs must be made private, or pivot_root says EINVAL."""
    store = bundle / "store"
    store.mkdir()
    spec = parse_config(config(linux={"rootfsPropagation": "rshared"}))

    def body() -> str:
        sc.mount("tmpfs", str(store), "tmpfs", 0, None)
        shutil.copytree(bundle / "rootfs", store / "rootfs", symlinks=True)
        shutil.copytree(bundle / "volume", store / "volume")
        sc.mount(None, "/", None, MS_SHARED | MS_REC, None)  # like a systemd host
        seen = run_container(store, spec)
        return seen.get("error", "") or seen["pid"]

    output = in_child(body, CLONE_NEWNS)
    assert output == "1"


def test_proc_on_a_symlink_is_refused(bundle: Path) -> None:
    (bundle / "rootfs" / "elsewhere").mkdir()
    (bundle / "rootfs" / "proc").symlink_to("elsewhere")
    seen = run_container(bundle, parse_config(config()))
    assert "real directory" in seen.get("error", "")
    assert not os.path.ismount(bundle / "rootfs" / "elsewhere")
