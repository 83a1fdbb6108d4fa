"""Credentials, sysctls, rlimits and the OOM score applied for real, as root.

Each test forks: the child changes its own identity, reads what the kernel says in
``/proc/self/status`` (or execs ``cat`` on it, to see what survives execve) and sends
the answer back over a pipe. The test process itself is never changed.
"""

from __future__ import annotations

import os
import resource
import sys

import pytest

from corral.core.execute import exec_process
from corral.linux.capabilities import capability_mask
from corral.linux.credentials import apply_credentials
from corral.linux.rlimits import apply_rlimits
from corral.linux.syscalls import CLONE_NEWIPC, CLONE_NEWNS, MS_PRIVATE, MS_REC, Syscalls
from corral.linux.sysctl import apply_oom_score_adj, apply_sysctl
from corral.spec.model import Capabilities, Process, Rlimit, User
from support.forked import in_child

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(sys.platform != "linux", reason="Linux credentials"),
    pytest.mark.skipif(os.geteuid() != 0, reason="changing uid and capabilities needs root"),
]

NET_BIND = ["CAP_NET_BIND_SERVICE"]
BOUNDING = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def make_process(
    *,
    caps: dict[str, list[str]] | None,
    uid: int = 1000,
    gid: int = 1000,
    gids: list[int] | None = None,
    umask: int | None = None,
    cwd: str = "/",
    nnp: bool = False,
    args: list[str] | None = None,
) -> Process:
    return Process(
        args=args or ["cat", "/proc/self/status"],
        env=["PATH=/usr/bin:/bin"],
        cwd=cwd,
        terminal=False,
        user=User(uid, gid, umask, gids or []),
        rlimits=[],
        capabilities=None if caps is None else Capabilities(caps),
        no_new_privileges=nnp,
        oom_score_adj=None,
    )


def read_status() -> str:
    with open("/proc/self/status") as f:
        return f.read() + f"Cwd:\t{os.getcwd()}\n"


def fields(status: str) -> dict[str, str]:
    assert not status.startswith("ERROR"), status
    return {
        name: value.strip()
        for name, _, value in (line.partition(":") for line in status.splitlines())
    }


def mask(status: dict[str, str], name: str) -> int:
    return int(status[name], 16)


def cap_last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def test_user_groups_capabilities_umask_cwd_and_no_new_privs() -> None:
    process = make_process(
        caps={
            "bounding": BOUNDING,
            "effective": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "inheritable": NET_BIND,
            "ambient": NET_BIND,
        },
        uid=1000,
        gid=1001,
        gids=[5, 6],
        umask=0o027,
        cwd="/usr",
        nnp=True,
    )

    def body() -> str:
        apply_credentials(Syscalls(), process)
        return read_status()

    status = fields(in_child(body))
    assert status["Uid"].split() == ["1000"] * 4
    assert status["Gid"].split() == ["1001"] * 4
    assert status["Groups"].split() == ["5", "6"]
    assert mask(status, "CapBnd") == capability_mask(BOUNDING)
    assert mask(status, "CapEff") == capability_mask(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"])
    assert mask(status, "CapPrm") == capability_mask(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"])
    assert mask(status, "CapInh") == capability_mask(NET_BIND)
    assert mask(status, "CapAmb") == capability_mask(NET_BIND)
    assert status["NoNewPrivs"] == "1"
    assert status["Umask"] == "0027"
    assert status["Cwd"] == "/usr"


def test_what_a_non_root_program_keeps_through_exec() -> None:
    # Only ambient capabilities survive execve(2) for a non-root program without file
    # capabilities (capabilities(7), "Transformation of capabilities during execve()").
    process = make_process(
        caps={
            "bounding": BOUNDING,
            "effective": BOUNDING,
            "permitted": BOUNDING,
            "inheritable": NET_BIND,
            "ambient": NET_BIND,
        }
    )

    def body() -> str:
        apply_credentials(Syscalls(), process)
        exec_process(process, preserve_fds=0)

    status = fields(in_child(body))
    assert mask(status, "CapEff") == capability_mask(NET_BIND)
    assert mask(status, "CapPrm") == capability_mask(NET_BIND)
    assert mask(status, "CapAmb") == capability_mask(NET_BIND)
    assert mask(status, "CapBnd") == capability_mask(BOUNDING)
    assert status["Uid"].split() == ["1000"] * 4
    assert status["Groups"] == ""


def test_no_capabilities_object_leaves_even_root_with_none() -> None:
    process = make_process(caps=None, uid=0, gid=0)

    def body() -> str:
        apply_credentials(Syscalls(), process)
        exec_process(process, preserve_fds=0)

    status = fields(in_child(body))
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert mask(status, name) == 0, name
    assert status["Uid"].split() == ["0"] * 4


def test_root_with_the_default_set_keeps_exactly_the_bounding_set() -> None:
    default = [
        "CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_DAC_OVERRIDE",
        "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETFCAP", "CAP_SETPCAP", "CAP_SYS_CHROOT",
    ]  # fmt: skip
    sets = {"bounding": default, "effective": default, "permitted": default}
    process = make_process(caps=sets, uid=0, gid=0)

    def body() -> str:
        apply_credentials(Syscalls(), process)
        exec_process(process, preserve_fds=0)

    status = fields(in_child(body))
    assert mask(status, "CapBnd") == capability_mask(default)
    assert mask(status, "CapEff") == capability_mask(default)
    assert mask(status, "CapInh") == 0


def test_missing_cwd() -> None:
    process = make_process(caps=None, cwd="/nope")

    def body() -> str:
        apply_credentials(Syscalls(), process)
        return "applied"

    assert in_child(body) == 'ERROR: process.cwd "/nope": No such file or directory'


def test_cwd_is_entered_as_the_user(tmp_path: os.PathLike[str]) -> None:
    private = os.path.join(tmp_path, "private")
    os.mkdir(private, 0o700)  # root's; uid 1000 without CAP_DAC_* may not enter
    os.chmod(tmp_path, 0o755)
    parent = os.path.dirname(os.fspath(tmp_path))
    while parent != "/":
        os.chmod(parent, os.stat(parent).st_mode | 0o111)
        parent = os.path.dirname(parent)
    process = make_process(caps=None, cwd=private)

    def body() -> str:
        apply_credentials(Syscalls(), process)
        return "applied"

    assert in_child(body) == f'ERROR: process.cwd "{private}": Permission denied'


def test_cwd_through_a_leaked_fd_is_refused(tmp_path: os.PathLike[str]) -> None:
    # CVE-2024-21626: a host directory fd left open lets cwd be /proc/self/fd/N, a
    # directory outside the container's root.
    root = os.path.join(tmp_path, "root")
    os.makedirs(os.path.join(root, "proc"))

    def body() -> str:
        sc = Syscalls()
        sc.unshare(CLONE_NEWNS)
        sc.mount(None, "/", None, MS_REC | MS_PRIVATE, None)
        sc.mount("proc", os.path.join(root, "proc"), "proc", 0, None)
        leaked = os.open(os.fspath(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
        os.chroot(root)
        os.chdir("/")
        apply_credentials(sc, make_process(caps=None, uid=0, gid=0, cwd=f"/proc/self/fd/{leaked}"))
        return "applied"

    answer = in_child(body)
    assert answer.startswith("ERROR: process.cwd"), answer
    assert answer.endswith("is not inside the container's root")


def test_sysctl_in_a_new_ipc_namespace() -> None:
    with open("/proc/sys/kernel/shmmni") as f:
        host_value = f.read().strip()
    wanted = "1234" if host_value != "1234" else "2345"

    def body() -> str:
        Syscalls().unshare(CLONE_NEWIPC)
        apply_sysctl({"kernel.shmmni": wanted})
        with open("/proc/sys/kernel/shmmni") as f:
            return f.read().strip()

    assert in_child(body) == wanted
    with open("/proc/sys/kernel/shmmni") as f:
        assert f.read().strip() == host_value


def has_sys_resource() -> bool:
    with open("/proc/self/status") as f:
        return bool(mask(fields(f.read()), "CapEff") & capability_mask(["CAP_SYS_RESOURCE"]))


needs_sys_resource = pytest.mark.skipif(
    not has_sys_resource(), reason="this root has no CAP_SYS_RESOURCE (a restricted sandbox)"
)


@needs_sys_resource
def test_oom_score_adj_can_be_lowered_by_root() -> None:
    def body() -> str:
        apply_oom_score_adj(-321)
        with open("/proc/self/oom_score_adj") as f:
            return f.read().strip()

    assert in_child(body) == "-321"


@needs_sys_resource
def test_rlimit_hard_limit_can_be_raised_before_credentials_drop() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with open("/proc/sys/fs/nr_open") as f:
        ceiling = int(f.read())
    if hard == resource.RLIM_INFINITY or hard >= ceiling:
        pytest.skip(f"the hard limit {hard} cannot be raised further")
    target = hard + 1

    def body() -> str:
        sc = Syscalls()
        apply_rlimits(sc, [Rlimit("RLIMIT_NOFILE", 64, target)])
        apply_credentials(sc, make_process(caps=None))
        return repr(resource.getrlimit(resource.RLIMIT_NOFILE))

    assert in_child(body) == repr((64, target))


def test_oom_score_adj_raised_before_the_credentials_change_stays() -> None:
    # Raising needs no CAP_SYS_RESOURCE. It must happen before the uid changes: setuid
    # makes the process non-dumpable, and its /proc files then belong to root (proc(5)).
    def body() -> str:
        apply_oom_score_adj(567)
        apply_credentials(Syscalls(), make_process(caps=None))
        with open("/proc/self/oom_score_adj") as f:
            return f.read().strip()

    assert in_child(body) == "567"


def test_rlimits_lowered_survive_the_credentials_change() -> None:
    def body() -> str:
        sc = Syscalls()
        apply_rlimits(sc, [Rlimit("RLIMIT_NOFILE", 64, 128), Rlimit("RLIMIT_NPROC", 50, 60)])
        apply_credentials(sc, make_process(caps=None))
        return repr(
            resource.getrlimit(resource.RLIMIT_NOFILE) + resource.getrlimit(resource.RLIMIT_NPROC)
        )

    assert in_child(body) == repr((64, 128, 50, 60))


def test_bounding_drops_cover_every_capability_the_kernel_has() -> None:
    if cap_last_cap() > 40:
        pytest.skip("the kernel knows capabilities newer than corral's table")
    process = make_process(caps={"bounding": ["CAP_KILL"]}, uid=0, gid=0)

    def body() -> str:
        apply_credentials(Syscalls(), process)
        return read_status()

    assert mask(fields(in_child(body)), "CapBnd") == capability_mask(["CAP_KILL"])


def test_privileged_config_gets_what_the_runtime_holds() -> None:
    # A "privileged" config lists every capability; whatever the runtime itself lacks
    # is left out with a warning instead of failing capset(2) (the spec's SHOULD NOT).
    from corral.linux.capabilities import CAPABILITIES

    every = [name for name, number in CAPABILITIES.items() if number <= cap_last_cap()]
    sets = dict.fromkeys(("bounding", "effective", "permitted", "inheritable"), every)
    with open("/proc/self/status") as f:
        held = mask(fields(f.read()), "CapPrm")
    process = make_process(caps=sets, uid=0, gid=0)

    def body() -> str:
        warnings: list[str] = []
        apply_credentials(Syscalls(), process, warn=warnings.append)
        return read_status() + f"Warnings:\t{len(warnings)}\n"

    status = fields(in_child(body))
    assert mask(status, "CapEff") == held
    assert mask(status, "CapPrm") == held
    assert mask(status, "CapInh") == capability_mask(every) & mask(status, "CapBnd")
    missing = bin(capability_mask(every) & ~held).count("1")
    assert int(status["Warnings"]) == missing  # one line per capability
