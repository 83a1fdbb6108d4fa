"""linux.seccomp for real: filters loaded by libseccomp into busybox containers.

Errno answers, a custom errno, a killed process, argument conditions (one value, a
mask, two tests of one argument), podman's default profile, both places the init
loads the filter (with and without no_new_privs), and a notify listener that gets the
descriptor and the state and answers a notification itself.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import struct
import threading

import pytest

from conftest import create_detached, requires_root, wait_until

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from conftest import Corral

    RunInside = Callable[..., subprocess.CompletedProcess[str]]


def _libseccomp_missing() -> str | None:
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return "libseccomp2 is not installed"
    return None


pytestmark = [
    requires_root,
    pytest.mark.skipif(_libseccomp_missing() is not None, reason=_libseccomp_missing() or ""),
]

PODMAN_PROFILE = "/usr/share/containers/seccomp.json"
SIGSYS = 31


def with_seccomp(
    profile: dict[str, Any] | None, *, nnp: bool = True, caps: tuple[str, ...] = ()
) -> Callable[[dict[str, Any]], None]:
    """The config's edit: the profile, no_new_privs, a writable /tmp, more capabilities."""

    def edit(spec: dict[str, Any]) -> None:
        if profile is not None:
            spec["linux"]["seccomp"] = profile
        spec["process"]["noNewPrivileges"] = nnp
        spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
        for kind in ("bounding", "effective", "permitted"):
            spec["process"]["capabilities"][kind] += list(caps)

    return edit


def leftovers(root: str) -> list[str]:
    """What a failed create left in the state root (the program cache is expected)."""
    names = os.listdir(root) if os.path.exists(root) else []
    return [name for name in names if not name.startswith("seccomp-")]


def allow_but(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules)}


MKDIR = ["mkdir", "mkdirat"]


@pytest.mark.parametrize("nnp", [True, False], ids=["no_new_privs", "privileged-load"])
def test_mkdir_fails_with_eperm(run_inside: RunInside, nnp: bool) -> None:
    profile = allow_but({"names": MKDIR, "action": "SCMP_ACT_ERRNO"})
    result = run_inside(
        "mkdir /tmp/d; echo rc=$?; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status",
        edit=with_seccomp(profile, nnp=nnp),
    )
    assert "rc=1" in result.stdout
    assert "Operation not permitted" in result.stderr
    assert "Seccomp:\t2" in result.stdout  # SECCOMP_MODE_FILTER
    assert f"NoNewPrivs:\t{int(nnp)}" in result.stdout  # the filter did not set it


def test_custom_errno(run_inside: RunInside) -> None:
    profile = allow_but({"names": MKDIR, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXFULL})
    result = run_inside("mkdir /tmp/d; echo rc=$?", edit=with_seccomp(profile, nnp=False))
    assert "rc=1" in result.stdout
    assert os.strerror(errno.EXFULL) in result.stderr


def test_kill_process_exits_by_sigsys(run_inside: RunInside) -> None:
    profile = allow_but({"names": MKDIR, "action": "SCMP_ACT_KILL_PROCESS"})
    result = run_inside("echo before; exec mkdir /tmp/d", edit=with_seccomp(profile), check=False)
    assert result.returncode == 128 + SIGSYS
    assert "before" in result.stdout
    assert "after" not in result.stdout


def test_kill_thread_of_a_child(run_inside: RunInside) -> None:
    profile = allow_but({"names": MKDIR, "action": "SCMP_ACT_KILL"})
    result = run_inside("mkdir /tmp/d; echo status=$?", edit=with_seccomp(profile))
    assert f"status={128 + SIGSYS}" in result.stdout  # the shell saw mkdir die of SIGSYS


def test_argument_equal_filters_one_signal(run_inside: RunInside) -> None:
    profile = allow_but(
        {
            "names": ["kill"],
            "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}],
        }
    )
    script = (
        "sleep 30 & p=$!; kill -0 $p && echo zero-ok; kill -9 $p; echo nine=$?; "
        "kill -15 $p; echo term=$?"
    )
    result = run_inside(script, edit=with_seccomp(profile))
    assert "zero-ok" in result.stdout
    assert "nine=1" in result.stdout
    assert "term=0" in result.stdout


def test_two_conditions_on_one_argument_match_either(run_inside: RunInside) -> None:
    # runc's rule: several tests of the same argument become separate rules (OR).
    profile = allow_but(
        {
            "names": ["kill"],
            "action": "SCMP_ACT_ERRNO",
            "args": [
                {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"},
            ],
        }
    )
    script = (
        "sleep 30 & p=$!; kill -0 $p && echo zero-ok; kill -9 $p; echo nine=$?; "
        "kill -15 $p; echo term=$?; kill -2 $p; echo int=$?"
    )
    result = run_inside(script, edit=with_seccomp(profile))
    assert "zero-ok" in result.stdout
    assert "nine=1" in result.stdout
    assert "term=1" in result.stdout
    assert "int=0" in result.stdout


def test_conditions_on_two_arguments_must_all_hold(run_inside: RunInside) -> None:
    # kill(pid, 9) is refused only when the pid is also above 1000000.
    profile = allow_but(
        {
            "names": ["kill"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.EXFULL,
            "args": [
                {"index": 0, "value": 1000000, "op": "SCMP_CMP_GT"},
                {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
            ],
        }
    )
    script = "sleep 30 & p=$!; kill -9 1000001; kill -9 $p; echo small=$?"
    result = run_inside(script, edit=with_seccomp(profile))
    assert os.strerror(errno.EXFULL) in result.stderr  # pid 1000001 and signal 9: refused
    assert "small=0" in result.stdout  # a small pid with signal 9: allowed


def test_masked_equal_refuses_setuid_modes(run_inside: RunInside) -> None:
    setuid = {"value": 0o4000, "valueTwo": 0o4000, "op": "SCMP_CMP_MASKED_EQ"}
    profile = allow_but(
        # chmod(path, mode) and fchmodat(dirfd, path, mode): whichever the libc uses;
        # fchmodat2 is unknown to libseccomp 2.5 and skipped, as runc does.
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, **setuid}]},
        {
            "names": ["fchmodat", "fchmodat2"],
            "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 2, **setuid}],
        },
    )
    script = "touch /tmp/f; chmod 755 /tmp/f; echo plain=$?; chmod 4755 /tmp/f; echo suid=$?"
    result = run_inside(script, edit=with_seccomp(profile))
    assert "plain=0" in result.stdout
    assert "suid=1" in result.stdout


def podman_profile(path: str = PODMAN_PROFILE) -> dict[str, Any]:
    """The profile podman writes into config.json on x86_64 for its default capabilities:
    entries filtered by their includes/excludes, the archMap turned into architectures."""
    with open(path) as f:
        source = json.load(f)
    caps = {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
        "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
        "CAP_SYS_CHROOT",
    }  # fmt: skip
    syscalls = []
    for entry in source["syscalls"]:
        includes = entry.get("includes") or {}
        excludes = entry.get("excludes") or {}
        if includes.get("arches") and "amd64" not in includes["arches"]:
            continue
        if includes.get("caps") and not set(includes["caps"]) <= caps:
            continue
        if excludes.get("caps") and set(excludes["caps"]) & caps:
            continue
        if includes.get("minKernel") or excludes.get("arches"):
            continue
        kept = {key: entry[key] for key in ("names", "action", "args", "errnoRet") if key in entry}
        syscalls.append(kept)
    return {
        "defaultAction": source["defaultAction"],
        "defaultErrnoRet": source.get("defaultErrnoRet"),
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    }


@pytest.mark.skipif(not os.path.exists(PODMAN_PROFILE), reason="golang-github-containers-common")
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the profile is built for x86_64")
@pytest.mark.parametrize("nnp", [True, False], ids=["no_new_privs", "privileged-load"])
def test_podman_default_profile_runs_a_shell(run_inside: RunInside, nnp: bool) -> None:
    script = (
        "echo hello; ls / > /dev/null && echo listed; mkdir /tmp/d && echo made; "
        "sleep 0.01 & wait; echo waited; grep '^Seccomp:' /proc/self/status; "
        "hostname corral-seccomp; echo host=$?"
    )
    # The profile is the one for podman's default capabilities; the container gets
    # CAP_SYS_ADMIN on top, so sethostname is refused by the filter, not the kernel.
    edit = with_seccomp(podman_profile(), nnp=nnp, caps=("CAP_SYS_ADMIN",))
    result = run_inside(script, edit=edit)
    for word in ("hello", "listed", "made", "waited", "Seccomp:\t2", "host=1"):
        assert word in result.stdout
    assert "Operation not permitted" in result.stderr
    # The control: the same container without the profile may set its hostname.
    control = run_inside(script, edit=with_seccomp(None, caps=("CAP_SYS_ADMIN",)))
    assert "host=0" in control.stdout


def test_unsupported_flag_names_the_field(
    corral: Corral, make_bundle: Callable[..., Path], container_id: str
) -> None:
    from corral.linux import seccomp

    if "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" in seccomp.supported_flags(seccomp.library()):
        pytest.skip("this libseccomp supports every flag")
    profile = allow_but()
    profile["flags"] = ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    bundle = make_bundle(["true"], edit=with_seccomp(profile))
    result = corral("run", "--bundle", str(bundle), container_id, check=False)
    assert result.returncode != 0
    assert "linux.seccomp.flags[1]" in result.stderr
    assert leftovers(corral.root) == []


def test_supported_flags_load(run_inside: RunInside) -> None:
    from corral.linux import seccomp

    profile = allow_but({"names": MKDIR, "action": "SCMP_ACT_ERRNO"})
    profile["flags"] = seccomp.supported_flags(seccomp.library())
    result = run_inside("mkdir /tmp/d; echo rc=$?", edit=with_seccomp(profile))
    assert "rc=1" in result.stdout


# -- SCMP_ACT_NOTIFY ------------------------------------------------------------------------

SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif)
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp)
NOTIF_SIZE = 80  # u64 id, u32 pid, u32 flags, struct seccomp_data (64)


class Agent(threading.Thread):
    """A seccomp agent: receives the descriptor and state on a unix socket, then
    answers ``answers`` notifications with -EXFULL, recording their syscall numbers."""

    def __init__(self, path: str, answers: int = 1) -> None:
        super().__init__(daemon=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.server.settimeout(20)
        self.answers = answers
        self.message: dict[str, Any] = {}
        self.fd_count = 0
        self.syscalls: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            connection, _ = self.server.accept()
            with connection:
                fds: list[int] = []
                chunks = []
                while True:
                    data, ancillary, _, _ = connection.recvmsg(65536, socket.CMSG_SPACE(64))
                    for level, kind, payload in ancillary:
                        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                            fds += struct.unpack(f"{len(payload) // 4}i", payload)
                    if not data:
                        break
                    chunks.append(data)
            self.message = json.loads(b"".join(chunks))
            self.fd_count = len(fds)
            self._answer(fds[0])
        except BaseException as error:  # reported by the test
            self.error = error
        finally:
            self.server.close()

    def _answer(self, fd: int) -> None:
        import fcntl
        import select

        try:
            for _ in range(self.answers):
                ready, _, _ = select.select([fd], [], [], 20)
                assert ready, "no notification came"
                notif = bytearray(NOTIF_SIZE)
                fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, notif)
                notif_id, _pid, _flags, nr = struct.unpack_from("=QIIi", notif)
                self.syscalls.append(nr)
                # struct seccomp_notif_resp: u64 id, s64 val, s32 error, u32 flags
                response = bytearray(struct.pack("=QqiI", notif_id, 0, -errno.EXFULL, 0))
                fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, response)
        finally:
            os.close(fd)


def test_notify_listener_answers_the_syscall(
    corral: Corral, make_bundle: Callable[..., Path], container_id: str, tmp_path: Path
) -> None:
    from corral.linux import seccomp

    if seccomp.library().api_level() < seccomp.NOTIFY_API_LEVEL:
        pytest.skip("seccomp notify needs libseccomp >= 2.5 and Linux >= 5.7")
    listener = str(tmp_path / "agent.sock")
    agent = Agent(listener)
    agent.start()
    profile = allow_but({"names": MKDIR, "action": "SCMP_ACT_NOTIFY"})
    profile["listenerPath"] = listener
    profile["listenerMetadata"] = "MKDIR=refuse"
    bundle = make_bundle(
        ["sh", "-c", "mkdir /tmp/n; echo rc=$?; test -d /tmp/n || echo absent; sleep 30"],
        edit=with_seccomp(profile),
    )
    out = create_detached(corral, bundle, container_id)
    pid = corral.state(container_id)["pid"]
    corral("start", container_id)
    agent.join(30)
    assert agent.error is None, agent.error
    message = agent.message
    assert message["fds"] == ["seccompFd"]
    assert agent.fd_count == 1
    assert message["metadata"] == "MKDIR=refuse"
    assert message["pid"] == pid
    assert message["state"]["id"] == container_id
    assert message["state"]["status"] == "creating"
    assert message["state"]["pid"] == pid
    assert message["state"]["bundle"] == str(bundle)
    assert len(agent.syscalls) == 1
    assert wait_until(lambda: "absent" in out.read_text(), 10), out.read_text()
    err = out.parent / f"{out.name}.err"
    assert "rc=1" in out.read_text()
    assert os.strerror(errno.EXFULL) in err.read_text()
    # The container's program does not hold the listener (it could answer itself).
    links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert "anon_inode:seccomp notify" not in links


def test_notify_without_a_listener_fails_create(
    corral: Corral, make_bundle: Callable[..., Path], container_id: str, tmp_path: Path
) -> None:
    from corral.linux import seccomp

    if seccomp.library().api_level() < seccomp.NOTIFY_API_LEVEL:
        pytest.skip("seccomp notify needs libseccomp >= 2.5 and Linux >= 5.7")
    profile = allow_but({"names": MKDIR, "action": "SCMP_ACT_NOTIFY"})
    profile["listenerPath"] = str(tmp_path / "nobody-listens.sock")
    bundle = make_bundle(["true"], edit=with_seccomp(profile))
    result = corral("run", "--bundle", str(bundle), container_id, check=False)
    assert result.returncode != 0
    assert f'linux.seccomp.listenerPath "{tmp_path}/nobody-listens.sock"' in result.stderr
    assert leftovers(corral.root) == []


def test_compiled_program_is_cached_in_the_state_root(
    corral: Corral, make_bundle: Callable[..., Path], container_id: str
) -> None:
    profile = allow_but({"names": MKDIR, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXFULL})
    bundle = make_bundle(["sh", "-c", "mkdir /tmp/d"], edit=with_seccomp(profile))
    result = corral("run", "--bundle", str(bundle), container_id, check=False)
    assert os.strerror(errno.EXFULL) in result.stderr
    (cached,) = [name for name in os.listdir(corral.root) if name.startswith("seccomp-")]
    # A second container loads the cached program: corrupt its instructions' return
    # values (RET ERRNO|EXFULL -> RET ERRNO|EROFS) and the new errno shows.
    path = os.path.join(corral.root, cached)
    with open(path, "rb") as f:
        program = f.read()
    old = struct.pack("<I", 0x00050000 | errno.EXFULL)
    assert old in program
    with open(path, "wb") as f:
        f.write(program.replace(old, struct.pack("<I", 0x00050000 | errno.EROFS)))
    result = corral("run", "--bundle", str(bundle), container_id + "b", check=False)
    assert os.strerror(errno.EROFS) in result.stderr
    assert cached not in corral("list").stdout  # a file, never taken for a container
