"""User namespaces and idmapped mounts for real, as root.

The fork chain (``spawn_in_user_namespace``) runs a small ``child`` that reports what
the kernel says from inside over a pipe; the test compares it with what the host sees.
Idmapped mounts are made in forked children with a private mount namespace, so nothing
reaches the host's mount table. A kernel or filesystem without idmapped mounts makes
those tests skip with the kernel's answer.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import sys

import pytest

from corral.errors import ConfigError, CreateError
from corral.linux.idmap import (
    apply_idmapped_mount,
    attach_tree,
    open_idmapped_tree,
    prepare_idmapped_mounts,
)
from corral.linux.syscalls import CLONE_NEWNS, CLONE_NEWPID, MS_PRIVATE, MS_REC, Syscalls
from corral.linux.userns import (
    IDMapping,
    check_joined_mappings,
    namespace_mappings,
    open_user_namespace,
    spawn_in_user_namespace,
)
from corral.spec.model import Namespace, Spec, parse_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import Any, NoReturn

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(sys.platform != "linux", reason="Linux user namespaces"),
    pytest.mark.skipif(os.geteuid() != 0, reason="writing id maps for others needs root"),
    pytest.mark.skipif(
        not os.path.exists("/proc/self/ns/user"), reason="no user namespaces in this kernel"
    ),
]

MAP = [IDMapping(0, 100000, 65536)]
NEW_USER_AND_PID = [Namespace("user", ""), Namespace("pid", "")]
NS_GET_USERNS = 0xB701  # <linux/nsfs.h>: _IO(0xb7, 0x1)
PR_GET_CHILD_SUBREAPER = 37


@pytest.fixture
def sc() -> Syscalls:
    return Syscalls()


def _children() -> set[int]:
    """This process's children (every thread's), from /proc (proc(5): task/*/children)."""
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as children:
            found.update(int(pid) for pid in children.read().split())
    return found


_children_before: set[int] = set()


@pytest.fixture(autouse=True)
def _note_children() -> None:
    """Children that were there before the test (e.g. the daemon of a session fixture
    of another test directory) are not the chain's leftovers."""
    _children_before.clear()
    _children_before.update(_children())


def no_children_left() -> bool:
    """The fork chain left no process behind as our child (zombie or alive)."""
    return _children() <= _children_before


class Spawned:
    """An init started by the chain: its host pid, its report, and a way to let it go."""

    def __init__(self, pid: int, report: dict[str, Any], release_fd: int) -> None:
        self.pid = pid
        self.report = report
        self._release_fd = release_fd

    def finish(self) -> int:
        """Let the init exit; its exit status, collected with waitpid (it is our child)."""
        os.close(self._release_fd)
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)


def spawn(
    sc: Syscalls,
    body: Callable[[], dict[str, Any]],
    namespaces: list[Namespace] | None = None,
    ns_fds: dict[str, int] | None = None,
    uid_maps: list[IDMapping] | None = None,
    gid_maps: list[IDMapping] | None = None,
    **kwargs: Any,
) -> Spawned:
    """Run ``body`` as the init; it stays alive (for the host to look at) until finish()."""
    report_r, report_w = os.pipe()
    release_r, release_w = os.pipe()

    def child() -> NoReturn:
        try:
            os.close(report_r)
            os.close(release_w)
            try:
                answer = body()
            except BaseException as error:
                answer = {"error": f"{type(error).__name__}: {error}"}
            os.write(report_w, json.dumps(answer).encode())
            os.close(report_w)
            os.read(release_r, 1)
        finally:
            os._exit(0)

    try:
        pid = spawn_in_user_namespace(
            sc,
            NEW_USER_AND_PID if namespaces is None else namespaces,
            ns_fds or {},
            MAP if uid_maps is None else uid_maps,
            MAP if gid_maps is None else gid_maps,
            child,
            **kwargs,
        )
    except BaseException:
        for fd in (report_r, release_w):
            os.close(fd)
        raise
    finally:
        os.close(report_w)
        os.close(release_r)
    with os.fdopen(report_r, "rb") as report:
        data = report.read()
    return Spawned(pid, json.loads(data) if data else {"error": "no report"}, release_w)


def namespace_owner_inode(path: str) -> int:
    """The inode of the user namespace that owns the namespace at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        owner = fcntl.ioctl(fd, NS_GET_USERNS)
        try:
            return os.fstat(owner).st_ino
        finally:
            os.close(owner)
    finally:
        os.close(fd)


def inside_view() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()],
        "groups": os.getgroups(),
        "user_ns": os.stat("/proc/self/ns/user").st_ino,
        "pid_ns_owner": namespace_owner_inode("/proc/self/ns/pid"),
    }


# -- the fork chain ------------------------------------------------------------------------


def test_the_init_is_pid_1_and_root_in_its_own_user_namespace(sc: Syscalls) -> None:
    spawned = spawn(sc, inside_view)
    try:
        report = spawned.report
        assert report.get("error") is None, report
        assert report["pid"] == 1
        assert report["ids"] == [0, 0, 0, 0]
        assert report["groups"] == []  # the host's supplementary groups were dropped
        assert report["user_ns"] != os.stat("/proc/self/ns/user").st_ino
        # The pid namespace belongs to the new user namespace, not to the host's.
        assert report["pid_ns_owner"] == report["user_ns"]
        # From the host: the maps as written, and the init runs as host uid 100000.
        with open(f"/proc/{spawned.pid}/uid_map") as f:
            assert f.read().split() == ["0", "100000", "65536"]
        with open(f"/proc/{spawned.pid}/gid_map") as f:
            assert f.read().split() == ["0", "100000", "65536"]
        with open(f"/proc/{spawned.pid}/setgroups") as f:
            assert f.read().strip() == "allow"  # additionalGids stay possible
        with open(f"/proc/{spawned.pid}/status") as f:
            status = dict(line.split(":", 1) for line in f.read().splitlines())
        assert status["Uid"].split() == ["100000"] * 4
        assert status["Gid"].split() == ["100000"] * 4
        assert os.stat(f"/proc/{spawned.pid}/ns/user").st_ino == report["user_ns"]
    finally:
        assert spawned.finish() == 0  # waitpid works: the init is our child
    assert no_children_left()


def test_a_proc_mounted_inside_shows_pid_1_in_the_new_user_namespace(sc: Syscalls) -> None:
    def body() -> dict[str, Any]:
        sc.unshare(CLONE_NEWNS)
        sc.mount(None, "/", None, MS_PRIVATE | MS_REC, None)
        # Only a pid namespace owned by our user namespace lets us mount its procfs.
        sc.mount("proc", "/proc", "proc", 0, None)
        return {
            "pid1_user": os.readlink("/proc/1/ns/user"),
            "self_user": os.readlink("/proc/self/ns/user"),
            "entries": sorted(name for name in os.listdir("/proc") if name.isdigit()),
        }

    spawned = spawn(sc, body)
    try:
        report = spawned.report
        assert report.get("error") is None, report
        assert report["pid1_user"] == report["self_user"]
        assert report["self_user"] != os.readlink("/proc/self/ns/user")
        assert report["entries"] == ["1"]  # nothing else lives in its pid namespace
    finally:
        assert spawned.finish() == 0


def test_id_inside_prints_root(sc: Syscalls) -> None:
    read_fd, write_fd = os.pipe()

    def child() -> NoReturn:
        os.close(read_fd)
        os.dup2(write_fd, 1)
        os.execvp("sh", ["sh", "-c", "id -u; id -g"])

    try:
        pid = spawn_in_user_namespace(sc, NEW_USER_AND_PID, {}, MAP, MAP, child)
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd) as output:
        assert output.read().split() == ["0", "0"]
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_the_init_exit_status_reaches_the_parent_and_subreaper_is_off(sc: Syscalls) -> None:
    def child() -> NoReturn:
        os._exit(7)

    pid = spawn_in_user_namespace(sc, NEW_USER_AND_PID, {}, MAP, MAP, child)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7
    value = ctypes.c_int(-1)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0) == 0
    assert value.value == 0


def test_privileged_setup_runs_before_the_user_namespace(sc: Syscalls) -> None:
    niceness = os.getpriority(os.PRIO_PROCESS, 0)

    def raise_priority() -> None:
        # A lower nice value needs CAP_SYS_NICE in the host's user namespace.
        os.setpriority(os.PRIO_PROCESS, 0, niceness - 5)

    def body() -> dict[str, Any]:
        inherited = os.getpriority(os.PRIO_PROCESS, 0)
        try:
            os.setpriority(os.PRIO_PROCESS, 0, inherited - 1)
            raised_inside = True
        except PermissionError:
            raised_inside = False
        return {"nice": inherited, "raised_inside": raised_inside}

    spawned = spawn(sc, body, privileged_setup=raise_priority)
    try:
        assert spawned.report == {"nice": niceness - 5, "raised_inside": False}
    finally:
        spawned.finish()
    assert os.getpriority(os.PRIO_PROCESS, 0) == niceness  # only the chain changed


def test_joining_a_user_namespace_by_path(sc: Syscalls) -> None:
    other = [IDMapping(0, 200000, 1000)]
    user_fd = open_user_namespace(sc, other, other)
    try:
        path = f"/proc/self/fd/{user_fd}"
        spawned = spawn(
            sc, inside_view, [Namespace("user", path), Namespace("pid", "")], {"user": user_fd}
        )
        try:
            report = spawned.report
            assert report.get("error") is None, report
            assert report["user_ns"] == os.fstat(user_fd).st_ino
            assert report["pid_ns_owner"] == report["user_ns"]
            assert report["pid"] == 1 and report["ids"] == [0, 0, 0, 0]
        finally:
            assert spawned.finish() == 0
    finally:
        os.close(user_fd)


def user_path_spec(
    path: str, uid_maps: list[dict[str, int]], gid_maps: list[dict[str, int]]
) -> Spec:
    return parse_config(
        {
            "ociVersion": "1.2.0",
            "process": {"args": ["sh"], "cwd": "/"},
            "linux": {
                "namespaces": [{"type": "user", "path": path}, {"type": "mount"}],
                "uidMappings": uid_maps,
                "gidMappings": gid_maps,
            },
        }
    )


def test_mappings_given_with_a_path_must_be_the_namespaces_own(sc: Syscalls) -> None:
    uid_maps = [IDMapping(0, 200000, 1000), IDMapping(1000, 7, 1)]
    gid_maps = [IDMapping(0, 300000, 10)]
    user_fd = open_user_namespace(sc, uid_maps, gid_maps)
    try:
        path = f"/proc/self/fd/{user_fd}"
        assert namespace_mappings(sc, user_fd, path) == (uid_maps, gid_maps)
        same_uid = [
            {"containerID": 1000, "hostID": 7, "size": 1},  # another order: same map
            {"containerID": 0, "hostID": 200000, "size": 1000},
        ]
        same_gid = [{"containerID": 0, "hostID": 300000, "size": 10}]
        check_joined_mappings(sc, user_path_spec(path, same_uid, same_gid), user_fd)
        other_gid = [{"containerID": 0, "hostID": 300000, "size": 11}]
        with pytest.raises(ConfigError) as info:
            check_joined_mappings(sc, user_path_spec(path, same_uid, other_gid), user_fd)
        assert info.value.path == "linux.gidMappings"
        assert "(0 300000 10); give the path or the mappings, not both" in str(info.value)
    finally:
        os.close(user_fd)
    assert no_children_left()


def test_maps_the_kernel_refuses_leave_nothing_behind(sc: Syscalls) -> None:
    ran = os.pipe()
    overlapping = [IDMapping(0, 100000, 10), IDMapping(5, 200000, 10)]  # past the checks

    def child() -> NoReturn:
        os.write(ran[1], b"ran")
        os._exit(0)

    try:
        with pytest.raises(CreateError) as info:
            spawn_in_user_namespace(sc, NEW_USER_AND_PID, {}, overlapping, MAP, child)
        assert "uid_map: Invalid argument" in str(info.value)
        assert no_children_left()
    finally:
        os.close(ran[1])
    with os.fdopen(ran[0], "rb") as f:
        assert f.read() == b""


def test_an_error_in_the_first_child_is_reported(sc: Syscalls) -> None:
    not_a_namespace = os.open("/dev/null", os.O_RDONLY)
    try:
        with pytest.raises(CreateError) as info:
            spawn_in_user_namespace(
                sc,
                [Namespace("user", "/dev/null"), Namespace("pid", "")],
                {"user": not_a_namespace},
                [],
                [],
                lambda: os._exit(0),
            )
        assert str(info.value) == "joining the user namespace /dev/null: Invalid argument"
    finally:
        os.close(not_a_namespace)
    assert no_children_left()


def test_helpers_refuse_a_pid_namespace_entered_for_children(sc: Syscalls) -> None:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            sc.unshare(CLONE_NEWPID)
            try:
                open_user_namespace(sc, MAP, MAP)
                answer = "no error"
            except RuntimeError as error:
                answer = str(error)
            os.write(write_fd, answer.encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        answer = f.read()
    os.waitpid(pid, 0)
    assert "call it before entering a pid namespace for children" in answer


# -- idmapped mounts ---------------------------------------------------------------------


def in_private_mount_namespace(body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``body`` as host root in a forked child with a private mount namespace."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            sc = Syscalls()
            sc.unshare(CLONE_NEWNS)
            sc.mount(None, "/", None, MS_PRIVATE | MS_REC, None)
            answer = body()
        except OSError as error:
            skip = error.errno in (errno.EINVAL, errno.ENOSYS) and "idmapping" in str(error)
            answer = {"skip" if skip else "error": str(error)}
        except BaseException as error:
            answer = {"error": f"{type(error).__name__}: {error}"}
        finally:
            os.write(write_fd, json.dumps(answer).encode())
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        result: dict[str, Any] = json.loads(f.read())
    os.waitpid(pid, 0)
    if "skip" in result:
        pytest.skip(f"no idmapped mounts here (Linux {os.uname().release}): {result['skip']}")
    assert result.get("error") is None, result
    return result


def owner(path: str | Path) -> list[int]:
    st = os.stat(path)
    return [st.st_uid, st.st_gid]


DISK_1000_AS_ROOT = [IDMapping(1000, 0, 1)]


def make_source(directory: Path) -> Path:
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    (directory / "file").write_text("data")
    os.chown(directory, 1000, 1000)
    os.chown(directory / "file", 1000, 1000)
    return directory


def test_an_idmapped_bind_shows_uid_1000_as_root(sc: Syscalls, tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    target = tmp_path / "dst"
    target.mkdir()

    def body() -> dict[str, Any]:
        target_fd = os.open(target, os.O_PATH | os.O_CLOEXEC)
        apply_idmapped_mount(
            sc, str(source), target_fd, DISK_1000_AS_ROOT, DISK_1000_AS_ROOT, False
        )
        (target / "created").write_text("x")  # by host root, through the mount
        return {"through": owner(target / "file"), "created": owner(source / "created")}

    result = in_private_mount_namespace(body)
    assert result["through"] == [0, 0]
    assert result["created"] == [1000, 1000]  # stored on disk as the mapped id
    assert owner(source / "file") == [1000, 1000]  # the source itself is unchanged


def test_an_idmapped_tmpfs_source(sc: Syscalls, tmp_path: Path) -> None:
    source = tmp_path / "tmpfs"
    target = tmp_path / "dst"
    source.mkdir()
    target.mkdir()

    def body() -> dict[str, Any]:
        sc.mount("tmpfs", str(source), "tmpfs", 0, "mode=0755")
        (source / "file").write_text("data")
        os.chown(source / "file", 1000, 1000)
        target_fd = os.open(target, os.O_PATH | os.O_CLOEXEC)
        apply_idmapped_mount(
            sc, str(source), target_fd, DISK_1000_AS_ROOT, DISK_1000_AS_ROOT, False
        )
        return {"through": owner(target / "file")}

    assert in_private_mount_namespace(body)["through"] == [0, 0]  # tmpfs: Linux 6.3


@pytest.mark.parametrize(
    ("recursive_idmap", "submount_owner"), [(True, [0, 0]), (False, [1000, 1000])]
)
def test_ridmap_reaches_the_submounts_of_an_rbind(
    sc: Syscalls, tmp_path: Path, recursive_idmap: bool, submount_owner: list[int]
) -> None:
    source = make_source(tmp_path / "src")
    (source / "sub").mkdir()
    target = tmp_path / "dst"
    target.mkdir()

    def body() -> dict[str, Any]:
        sc.mount("tmpfs", str(source / "sub"), "tmpfs", 0, "mode=0755")
        (source / "sub" / "file").write_text("data")
        os.chown(source / "sub" / "file", 1000, 1000)
        userns_fd = open_user_namespace(sc, DISK_1000_AS_ROOT, DISK_1000_AS_ROOT)
        tree = open_idmapped_tree(
            sc, str(source), userns_fd, recursive_tree=True, recursive_idmap=recursive_idmap
        )
        os.close(userns_fd)
        target_fd = os.open(target, os.O_PATH | os.O_CLOEXEC)
        attach_tree(sc, tree, target_fd, str(target))
        return {"top": owner(target / "file"), "sub": owner(target / "sub" / "file")}

    result = in_private_mount_namespace(body)
    assert result == {"top": [0, 0], "sub": submount_owner}


def container_spec(source: str, *, user: dict[str, str], maps: bool) -> Spec:
    linux: dict[str, Any] = {"namespaces": [user, {"type": "pid"}, {"type": "mount"}]}
    if maps:
        linux["uidMappings"] = linux["gidMappings"] = [
            {"containerID": 0, "hostID": 100000, "size": 65536}
        ]
    return parse_config(
        {
            "ociVersion": "1.2.0",
            "process": {"args": ["sh"], "cwd": "/"},
            "mounts": [{"destination": "/data", "source": source, "options": ["bind", "idmap"]}],
            "linux": linux,
        }
    )


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory container root can reach: under /tmp, mode 0755 (tmp_path's parents
    are 0700 root, and host root is nobody in the container's user namespace)."""
    import shutil
    import tempfile
    from pathlib import Path

    directory = Path(tempfile.mkdtemp(prefix="corral-userns-", dir="/tmp"))
    os.chmod(directory, 0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def test_a_tree_made_by_the_parent_is_attached_inside_the_user_namespace(
    sc: Syscalls, world: Path
) -> None:
    # The parent's half (prepare_idmapped_mounts) and the init's (attach_tree), as
    # create will run them: "idmap" with no mappings takes the container's.
    for name in ("src", "dst"):
        (world / name).mkdir(mode=0o755)
        os.chmod(world / name, 0o755)
    (world / "src" / "file").write_text("data")  # owned by host root on disk
    spec = container_spec(str(world / "src"), user={"type": "user"}, maps=True)
    trees = prepare_idmapped_mounts(sc, spec, str(world))
    assert list(trees) == [0]

    def body() -> dict[str, Any]:
        sc.unshare(CLONE_NEWNS)
        sc.mount(None, "/", None, MS_PRIVATE | MS_REC, None)
        # Opened in the init's own mount namespace, as rootfs resolves destinations:
        # move_mount(2) attaches only onto a mount of the caller's namespace.
        target_fd = os.open(world / "dst", os.O_PATH | os.O_CLOEXEC)
        attach_tree(sc, trees[0], target_fd, "/data")
        (world / "dst" / "created").write_text("x")
        return {"idmapped": owner(world / "dst" / "file"), "plain": owner(world / "src" / "file")}

    try:
        spawned = spawn(sc, body)
        try:
            report = spawned.report
            if "idmapping" in str(report.get("error")):
                pytest.skip(str(report["error"]))
            assert report.get("error") is None, report
            assert report["idmapped"] == [0, 0]  # container root owns the image's files
            assert report["plain"] == [65534, 65534]  # host root is unmapped in there
            # The host, looking into the init's mount namespace, sees host uid 100000.
            assert owner(f"/proc/{spawned.pid}/root{world}/dst/file") == [100000, 100000]
        finally:
            assert spawned.finish() == 0
    finally:
        for fd in trees.values():
            os.close(fd)
    assert owner(world / "src" / "created") == [0, 0]  # container root wrote host uid 0


def test_idmap_takes_a_joined_user_namespace_from_its_path(sc: Syscalls, tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    target = tmp_path / "dst"
    target.mkdir()
    user_fd = open_user_namespace(sc, DISK_1000_AS_ROOT, DISK_1000_AS_ROOT)
    try:
        spec = container_spec(
            str(source),
            user={"type": "user", "path": f"/proc/{os.getpid()}/fd/{user_fd}"},
            maps=False,
        )
        trees = prepare_idmapped_mounts(sc, spec, str(tmp_path))
    finally:
        os.close(user_fd)

    def body() -> dict[str, Any]:
        attach_tree(sc, trees[0], os.open(target, os.O_PATH | os.O_CLOEXEC), str(target))
        return {"through": owner(target / "file")}

    try:
        assert in_private_mount_namespace(body)["through"] == [0, 0]
    finally:
        os.close(trees[0])


def test_prepare_names_the_mount_that_failed(sc: Syscalls, tmp_path: Path) -> None:
    spec = parse_config(
        {
            "ociVersion": "1.2.0",
            "process": {"args": ["sh"], "cwd": "/"},
            "mounts": [
                {"destination": "/a", "source": "/", "options": ["rbind"]},
                {
                    "destination": "/b",
                    "source": str(tmp_path / "missing"),
                    "options": ["bind", "idmap"],
                    "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                    "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                },
            ],
            "linux": {"namespaces": [{"type": "mount"}]},
        }
    )
    with pytest.raises(CreateError) as info:
        prepare_idmapped_mounts(sc, spec, str(tmp_path))
    assert str(info.value) == (
        f"mounts[1]: open_tree {tmp_path / 'missing'}: No such file or directory"
    )
    assert no_children_left()
