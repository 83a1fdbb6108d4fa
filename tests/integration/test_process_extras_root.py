"""linux.devices, personality, scheduling, memory policy, time namespace and LSM labels,
applied for real, as root, without the CLI.

Each test that changes a process does it in a forked child, which reports what the
kernel says over a pipe (often after execve(2) of busybox, to show the setting
survives it); the test process is never changed. Device nodes are made in a
temporary rootfs; the bind of a host node happens in a child's own mount namespace.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from corral.errors import ConfigError, CreateError
from corral.linux import lsm, mempolicy, personality, scheduling, timens
from corral.linux.devices import create_config_devices
from corral.linux.syscalls import CLONE_NEWNS, Syscalls
from corral.spec.model import Spec, parse_config
from support.forked import in_child

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass

BUSYBOX = "/bin/busybox"
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(sys.platform != "linux", reason="Linux process settings"),
    pytest.mark.skipif(os.geteuid() != 0, reason="mknod, real-time policies and setns need root"),
]


def run_busybox(*args: str) -> None:
    if not os.path.exists(BUSYBOX):
        raise RuntimeError(f"{BUSYBOX} is needed")
    os.execv(BUSYBOX, ["busybox", *args])


def make_spec(process: dict[str, Any] | None = None, **linux: Any) -> Spec:
    section: dict[str, Any] = {"namespaces": [{"type": "mount"}]}
    section.update(linux)
    return parse_config(
        {
            "ociVersion": "1.2.0",
            "process": {"args": ["sh"], "cwd": "/", **(process or {})},
            "linux": section,
        }
    )


def host_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split(" - ")[0].split(" ", 4)[4] for line in f)


# -- linux.devices -------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "rootfs" / "dev").mkdir(parents=True)
    return tmp_path / "rootfs"


def create(root: Path, spec: Spec, *, in_userns: bool = False) -> None:
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        create_config_devices(Syscalls(), root_fd, spec, in_userns=in_userns)
    finally:
        os.close(root_fd)


def test_nodes_are_made_with_their_numbers_modes_and_owners(root: Path) -> None:
    spec = make_spec(
        devices=[
            {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640,
             "uid": 1000, "gid": 1001},
            {"path": "/dev/loopx", "type": "b", "major": 7, "minor": 0, "fileMode": 0o600},
            {"path": "/opt/zero", "type": "u", "major": 1, "minor": 5},
            {"path": "/run/fifo", "type": "p", "fileMode": 0o620},
            {"path": "/dev/suid", "type": "c", "major": 1, "minor": 7,
             "fileMode": 0o4755, "uid": 1000},
        ]
    )  # fmt: skip
    create(root, spec)

    def node(path: str) -> tuple[str, int, int, int, int]:
        st = os.lstat(root / path)
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else "p"
        return kind, st.st_rdev, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid

    assert node("dev/mynull") == ("c", os.makedev(1, 3), 0o640, 1000, 1001)
    assert node("dev/loopx") == ("b", os.makedev(7, 0), 0o600, 0, 0)
    assert node("opt/zero") == ("c", os.makedev(1, 5), 0o666, 0, 0)
    assert node("run/fifo") == ("p", 0, 0o620, 0, 0)
    # chown would clear set-user-ID: it comes before the chmod
    assert node("dev/suid") == ("c", os.makedev(1, 7), 0o4755, 1000, 0)
    with open(root / "opt" / "zero", "rb") as f:
        assert f.read(4) == b"\0\0\0\0"


def test_an_existing_node_must_be_the_requested_one(root: Path) -> None:
    os.mknod(root / "dev" / "mynull", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    same = make_spec(devices=[{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3}])
    create(root, same)
    assert stat.S_IMODE(os.lstat(root / "dev" / "mynull").st_mode) == 0o600  # left alone
    other = make_spec(devices=[{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 5}])
    with pytest.raises(CreateError) as info:
        create(root, other)
    assert str(info.value) == (
        "linux.devices[0]: /dev/mynull exists and is not the requested character device 1:5 "
        "(it is a character device 1:3)"
    )


def test_in_a_user_namespace_the_host_node_is_bound(root: Path) -> None:
    before = host_mounts()
    spec = make_spec(devices=[{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}])

    def body() -> str:
        create(root, spec, in_userns=True)
        st = os.stat(root / "dev" / "null")
        with open(root / "dev" / "null", "w") as f:
            f.write("discarded")
        return f"{stat.S_ISCHR(st.st_mode)} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"

    assert in_child(body, CLONE_NEWNS) == "True 1:3"
    # The mount died with the child's namespace; what stays is the empty file under it.
    left = os.lstat(root / "dev" / "null")
    assert stat.S_ISREG(left.st_mode) and left.st_size == 0
    assert host_mounts() == before


# -- linux.personality ---------------------------------------------------------------


def test_linux32_survives_execve() -> None:
    machine = {"x86_64": "i686", "aarch64": "armv8l"}.get(os.uname().machine)
    if machine is None:
        pytest.skip(f"no 32-bit name known for {os.uname().machine}")
    sc = Syscalls()

    def body() -> None:
        personality.apply_personality(sc, make_spec(personality={"domain": "LINUX32"}))
        run_busybox("uname", "-m")

    assert in_child(body).strip() == machine

    def back() -> str:
        personality.apply_personality(sc, make_spec(personality={"domain": "LINUX32"}))
        personality.apply_personality(sc, make_spec(personality={"domain": "LINUX"}))
        return os.uname().machine

    assert in_child(back) == os.uname().machine


# -- process.scheduler, ioPriority, execCPUAffinity ------------------------------------


def stat_fields(text: str) -> list[str]:
    """/proc/<pid>/stat split after the command name (which may hold spaces)."""
    return text.rpartition(")")[2].split()


def test_fifo_policy_and_priority_survive_execve() -> None:
    spec = make_spec({"scheduler": {"policy": "SCHED_FIFO", "priority": 10}})

    def body() -> None:
        scheduling.apply_scheduler(Syscalls(), spec)
        run_busybox("cat", "/proc/self/stat")

    fields = stat_fields(in_child(body))
    # proc(5): field 40 is rt_priority, 41 policy; the list starts at field 3
    assert (fields[40 - 3], fields[41 - 3]) == ("10", str(os.SCHED_FIFO))


def test_batch_with_nice() -> None:
    spec = make_spec({"scheduler": {"policy": "SCHED_BATCH", "nice": -3}})

    def body() -> str:
        scheduling.apply_scheduler(Syscalls(), spec)
        return f"{os.sched_getscheduler(0)} {os.getpriority(os.PRIO_PROCESS, 0)}"

    assert in_child(body) == f"{os.SCHED_BATCH} -3"


def test_deadline_reservation() -> None:
    spec = make_spec(
        {"scheduler": {"policy": "SCHED_DEADLINE", "runtime": 1_000_000,
                       "deadline": 10_000_000, "period": 10_000_000}}
    )  # fmt: skip

    def body() -> str:
        scheduling.apply_scheduler(Syscalls(), spec)
        return str(os.sched_getscheduler(0))

    output = in_child(body)
    if output.startswith("ERROR"):
        pytest.skip(f"this host refuses SCHED_DEADLINE: {output}")
    assert output == "6"


def test_io_priority() -> None:
    sc = Syscalls()

    def body() -> str:
        values = []
        for klass, level in (("IOPRIO_CLASS_BE", 6), ("IOPRIO_CLASS_IDLE", 0),
                             ("IOPRIO_CLASS_RT", 2)):  # fmt: skip
            spec = make_spec({"ioPriority": {"class": klass, "priority": level}})
            scheduling.apply_io_priority(sc, spec)
            values.append(str(sc.ioprio_get(scheduling.IOPRIO_WHO_PROCESS, 0)))
        return " ".join(values)

    assert in_child(body) == f"{2 << 13 | 6} {3 << 13} {1 << 13 | 2}"


def test_cpu_affinity() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    first, last = cpus[0], cpus[-1]
    spec = make_spec({"execCPUAffinity": {"initial": f"{first}-{last}", "final": str(last)}})

    def body() -> str:
        scheduling.apply_initial_cpu_affinity(Syscalls(), spec)
        initial = os.sched_getaffinity(0)
        scheduling.apply_final_cpu_affinity(Syscalls(), spec)
        return f"{sorted(initial)} {sorted(os.sched_getaffinity(0))}"

    assert in_child(body) == f"{cpus} {[last]}"
    absent = make_spec({"execCPUAffinity": {"final": "4000"}})
    output = in_child(lambda: scheduling.apply_final_cpu_affinity(Syscalls(), absent))
    assert output.startswith("ERROR: process.execCPUAffinity.final: sched_setaffinity 4000:")
    assert "none of these CPUs is online and allowed here" in output


# -- linux.memoryPolicy ----------------------------------------------------------------


def online_nodes() -> set[int]:
    try:
        with open("/sys/devices/system/node/online") as f:
            return scheduling.parse_id_list(f.read().strip(), "", limit=1023)
    except OSError:
        pytest.skip("no NUMA nodes on this host")


def test_bind_policy_survives_execve() -> None:
    node = min(online_nodes())
    spec = make_spec(memoryPolicy={"mode": "MPOL_BIND", "nodes": str(node)})

    def body() -> None:
        mempolicy.apply_memory_policy(Syscalls(), spec)
        run_busybox("head", "-n", "1", "/proc/self/numa_maps")

    # numa_maps shows the task's policy for mappings without one of their own
    assert f" bind:{node} " in in_child(body)


def test_an_offline_node_is_explained() -> None:
    missing = max(online_nodes()) + 1
    spec = make_spec(memoryPolicy={"mode": "MPOL_INTERLEAVE", "nodes": str(missing)})
    output = in_child(lambda: mempolicy.apply_memory_policy(Syscalls(), spec))
    assert output.startswith(f'ERROR: linux.memoryPolicy: node {missing} of "{missing}" is not')


# -- the time namespace --------------------------------------------------------------


def time_spec(offsets: dict[str, Any]) -> Spec:
    return make_spec(namespaces=[{"type": "mount"}, {"type": "time"}], timeOffsets=offsets)


def test_offsets_apply_to_the_init_and_what_it_runs() -> None:
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("no time namespaces in this kernel")
    day = 86400
    spec = time_spec({"monotonic": {"secs": day}, "boottime": {"secs": 2 * day}})
    host_ns = os.readlink("/proc/self/ns/time")
    with open("/proc/uptime") as f:
        host_uptime = float(f.read().split()[0])
    before = time.clock_gettime(time.CLOCK_MONOTONIC)

    def body() -> None:
        timens.enter_time_namespace(Syscalls(), spec)
        shift = time.clock_gettime(time.CLOCK_MONOTONIC) - before
        here, children = (
            os.readlink("/proc/self/ns/time"),
            os.readlink("/proc/self/ns/time_for_children"),
        )
        os.write(1, f"{round(shift / day)} {here == children} {here != host_ns}\n".encode())
        run_busybox("cat", "/proc/uptime")  # boottime, as the exec'd program sees it

    first, uptime = in_child(body).splitlines()
    assert first == "1 True True"
    assert round((float(uptime.split()[0]) - host_uptime) / day) == 2
    assert os.readlink("/proc/self/ns/time") == host_ns


def test_an_offset_below_zero_is_explained() -> None:
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("no time namespaces in this kernel")
    spec = time_spec({"monotonic": {"secs": -(10**9)}})
    output = in_child(lambda: timens.enter_time_namespace(Syscalls(), spec))
    assert output.startswith("ERROR: linux.timeOffsets: writing /proc/self/timens_offsets: ")
    assert "would take a clock below 0" in output


def test_a_threaded_init_cannot_enter() -> None:
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("no time namespaces in this kernel")
    import threading

    def body() -> None:
        stop = threading.Event()
        threading.Thread(target=stop.wait, daemon=True).start()
        try:
            timens.enter_time_namespace(Syscalls(), time_spec({}))
        finally:
            stop.set()

    assert "must be single-threaded" in in_child(body)


def in_user_namespace_child(spec: Spec, *, parent_writes: bool) -> str:
    """A child in a new user namespace (root in it, non-dumpable, as corral's init is)
    enters the time namespace; the offsets are written by this process or by itself."""
    from corral.linux.syscalls import CLONE_NEWUSER, PR_SET_DUMPABLE

    to_parent_r, to_parent_w = os.pipe()
    to_child_r, to_child_w = os.pipe()
    before = time.clock_gettime(time.CLOCK_MONOTONIC)

    def ask_parent() -> None:
        os.write(to_parent_w, b"o")
        if os.read(to_child_r, 1) != b"k":
            raise RuntimeError("the parent could not write the offsets")

    def body() -> str:
        sc = Syscalls()
        sc.unshare(CLONE_NEWUSER)
        ask_parent()  # the maps
        sc.setresgid(0, 0, 0)
        sc.setresuid(0, 0, 0)
        sc.prctl(PR_SET_DUMPABLE, 0)
        timens.enter_time_namespace(sc, spec, write_offsets=ask_parent if parent_writes else None)
        return str(round(time.clock_gettime(time.CLOCK_MONOTONIC) - before))

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            output = body()
        except BaseException as error:
            output = f"ERROR: {error}"
        os.write(write_fd, output.encode())
        os._exit(0)
    # Only the child keeps these ends: if it fails early, the reads below see EOF.
    for fd in (write_fd, to_parent_w, to_child_r):
        os.close(fd)
    try:
        assert os.read(to_parent_r, 1) == b"o"
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write("0 100000 65536\n")
        os.write(to_child_w, b"k")
        if parent_writes:
            assert os.read(to_parent_r, 1) == b"o"
            timens.write_time_offsets(spec, pid)
            os.write(to_child_w, b"k")
        with os.fdopen(read_fd) as f:
            return f.read()
    finally:
        os.close(to_parent_r)
        os.close(to_child_w)
        os.waitpid(pid, 0)


def test_in_a_user_namespace_the_parent_writes_the_offsets() -> None:
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("no time namespaces in this kernel")
    spec = make_spec(
        namespaces=[{"type": "mount"}, {"type": "user"}, {"type": "time"}],
        timeOffsets={"monotonic": {"secs": 3600}},
    )
    assert in_user_namespace_child(spec, parent_writes=True) == "3600"
    refused = in_user_namespace_child(spec, parent_writes=False)
    assert refused == (
        "ERROR: linux.timeOffsets: opening /proc/self/timens_offsets: Permission denied "
        "(a non-dumpable process in a user namespace: the parent must write it)"
    )


# -- AppArmor and SELinux on a host without them -------------------------------------


def test_labels_on_a_host_without_the_lsm() -> None:
    host = lsm.probe_host_lsm()
    if host.apparmor or host.selinux:
        pytest.skip("this host has an LSM enabled")
    spec = make_spec({"apparmorProfile": "acme", "selinuxLabel": "a:b:c:s0"})
    with pytest.raises(ConfigError, match=r"process\.apparmorProfile: AppArmor is not enabled"):
        lsm.check_lsm_host(spec)
    # Past the check, the write itself fails: the real /proc passes the procfs test.
    output = in_child(lambda: lsm.apply_apparmor_profile(Syscalls(), spec))
    assert output == (
        "ERROR: process.apparmorProfile: writing /proc/thread-self/attr/exec: Invalid argument "
        "(is AppArmor enabled on this host, and the name valid?)"
    )
    output = in_child(lambda: lsm.apply_selinux_label(Syscalls(), spec))
    assert output.startswith("ERROR: process.selinuxLabel: writing /proc/thread-self/attr/exec")
