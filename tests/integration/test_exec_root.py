"""``corral exec`` for real: busybox containers, through the CLI, as root.

Each test starts a container whose init sleeps, runs processes in it with ``corral
exec`` and looks at them from inside (``/proc/self/status``, ``ps``, ``/proc/self/fd``)
and from the host (``/proc/<pid>``). Where runc's behaviour is the contract, the same
exec is also run with ``runc exec`` on a container of the same bundle and compared.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from conftest import corral_command, create_detached, requires_root, wait_for_status, wait_until
from support.recvtty import ConsoleReceiver

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import Any

    from conftest import Corral

    MakeBundle = Callable[..., Path]

pytestmark = requires_root

HOSTNAME = "exectest"


def sleeping(spec: dict[str, Any]) -> None:
    spec["hostname"] = HOSTNAME


@pytest.fixture
def running(corral: Corral, make_bundle: MakeBundle, container_id: str) -> str:
    """A started container whose init sleeps; its id."""
    bundle = make_bundle(["sleep", "1000"], edit=sleeping)
    create_detached(corral, bundle, container_id)
    corral("start", container_id)
    wait_for_status(corral, container_id, "running")
    return container_id


def run_exec(corral: Corral, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return corral("exec", *args, check=False, **kwargs)


# -- exit statuses and errors ----------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "status"),
    [(["true"], 0), (["false"], 1), (["sh", "-c", "exit 3"], 3), (["sh", "-c", "kill -9 $$"], 137)],
)
def test_exit_status_is_the_programs(
    corral: Corral, running: str, command: list[str], status: int
) -> None:
    result = run_exec(corral, running, *command)
    assert result.returncode == status, result.stderr
    assert result.stderr == ""


def test_output_reaches_the_caller(corral: Corral, running: str) -> None:
    result = run_exec(corral, running, "sh", "-c", "echo out; echo err >&2")
    assert (result.stdout, result.stderr, result.returncode) == ("out\n", "err\n", 0)


def test_exec_in_a_created_container_works_as_with_runc(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    create_detached(corral, make_bundle(["sleep", "1000"]), container_id)
    result = run_exec(corral, container_id, "cat", "/proc/1/cmdline")
    assert result.returncode == 0, result.stderr
    # The init, still corral's code waiting for start: the exec ran beside it.
    assert "\x00create\x00" in result.stdout
    assert corral.state(container_id)["status"] == "created"


def test_exec_in_a_stopped_container_fails(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    create_detached(corral, make_bundle(["true"]), container_id)
    corral("start", container_id)
    wait_for_status(corral, container_id, "stopped")
    result = run_exec(corral, container_id, "true")
    assert result.returncode == 255
    assert result.stderr == "corral: exec failed: cannot exec in a stopped container\n"


def test_exec_in_a_missing_container_fails(corral: Corral) -> None:
    result = run_exec(corral, "no-such-container", "true")
    assert result.returncode == 255
    assert result.stderr == "corral: exec failed: container does not exist\n"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "process args cannot be empty"),
        (["nosuchprogram"], 'exec: "nosuchprogram": executable file not found in $PATH'),
        (["--cwd", "/nonexistent", "@", "true"], 'process.cwd "/nonexistent"'),
        (["--user", "nobody", "@", "true"], '--user "nobody"'),
        (["--cap", "CAP_NOPE", "@", "true"], 'unknown capability "CAP_NOPE"'),
    ],
)
def test_errors_exit_255_with_one_line(
    corral: Corral, running: str, args: list[str], words: str
) -> None:
    if "@" in args:
        at = args.index("@")
        argv = [*args[:at], running, *args[at + 1 :]]
    else:
        argv = [running, *args]
    result = run_exec(corral, *argv)
    assert result.returncode == 255
    assert result.stderr.startswith("corral: exec failed: ")
    assert words in result.stderr
    assert result.stderr.count("\n") == 1
    # Nothing was left running in the container.
    ps = run_exec(corral, running, "ps", "-o", "args")
    assert ps.stdout.split("\n")[1:-1] == ["sleep 1000", "ps -o args"]


def test_the_commands_own_flags_are_not_corrals(corral: Corral, running: str) -> None:
    result = run_exec(corral, running, "sh", "-c", 'printf "%s|%s" "$0" "$1"', "-e", "--tty")
    assert result.stdout == "-e|--tty"


# -- what the process is given ----------------------------------------------------------


def status_field(text: str, name: str) -> str:
    return next(
        line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(name)
    )


def test_env_cwd_user_groups_caps(corral: Corral, running: str) -> None:
    result = run_exec(
        corral,
        "--env",
        "GREETING=hello world",
        "-e",
        "TERM=dumb",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1001",
        "--additional-gids",
        "5",
        "-g",
        "7",
        "--cap",
        "CAP_SYS_ADMIN",
        running,
        "sh",
        "-c",
        'echo "$GREETING|$TERM|$PATH"; pwd; id; cat /proc/self/status',
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert lines[0] == f"hello world|dumb|{path}"  # the config's env, then --env
    assert lines[1] == "/tmp"
    assert lines[2] == "uid=1000 gid=1001 groups=5,7"
    status = result.stdout
    assert status_field(status, "Uid").split() == ["1000"] * 4
    assert status_field(status, "Groups").split() == ["5", "7"]
    # A non-root program keeps no effective capability through execve(2) (no ambient
    # set), but the bounding set shows --cap joined the config's three.
    expected = f"{0x20000420 | 1 << 21:016x}"  # + CAP_SYS_ADMIN (21)
    assert status_field(status, "CapBnd") == expected
    assert status_field(status, "CapEff") == "0" * 16
    assert status_field(status, "NoNewPrivs") == "1"  # the config's noNewPrivileges
    as_root = run_exec(corral, "--cap", "CAP_SYS_ADMIN", running, "cat", "/proc/self/status")
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert status_field(as_root.stdout, field) == expected, field
    assert status_field(as_root.stdout, "CapAmb") == "0" * 16


def test_defaults_come_from_the_config(corral: Corral, running: str) -> None:
    result = run_exec(corral, running, "sh", "-c", "id -u; pwd; ulimit -n; cat /proc/self/status")
    lines = result.stdout.splitlines()
    assert lines[:3] == ["0", "/", "1024"]  # process.user, cwd, rlimits of config.json
    assert status_field(result.stdout, "CapEff") == "0000000020000420"


def test_sees_the_containers_namespaces_hostname_mounts_and_pids(
    corral: Corral, running: str
) -> None:
    script = (
        "hostname; "
        "for ns in pid net ipc uts mnt cgroup user; do "
        '  [ "$(readlink /proc/self/ns/$ns)" = "$(readlink /proc/1/ns/$ns)" ] || echo differs $ns; '
        "done; "
        "ps -o pid,args; "
        "grep -c . /proc/self/mounts"
    )
    result = run_exec(corral, running, "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == HOSTNAME
    assert not [line for line in lines if line.startswith("differs")]
    assert lines[2].split() == ["1", "sleep", "1000"]  # the init is pid 1 in its namespace
    init_pid = corral.state(running)["pid"]
    with open(f"/proc/{init_pid}/mounts") as mounts:
        assert int(lines[-1]) == len(mounts.read().splitlines())


def test_process_file(corral: Corral, running: str, tmp_path: Path) -> None:
    process = {
        "args": ["sh", "-c", "echo $ONLY; id -u; pwd; cat /proc/$$/environ"],
        "env": ["ONLY=from-file"],
        "cwd": "/etc",
        "user": {"uid": 33, "gid": 33},
    }
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    result = run_exec(corral, "--process", str(path), running)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[:3] == ["from-file", "33", "/etc"]
    # The file's env only (runc does not merge the config's into a process.json).
    environment = lines[3].split("\0")
    assert "ONLY=from-file" in environment
    assert not [entry for entry in environment if entry.startswith(("PATH=/usr/local", "TERM="))]


def test_process_file_error_names_the_field(corral: Corral, running: str, tmp_path: Path) -> None:
    path = tmp_path / "process.json"
    path.write_text(json.dumps({"args": ["true"], "cwd": "/", "user": {"uid": -1, "gid": 0}}))
    result = run_exec(corral, "-p", str(path), running)
    assert result.returncode == 255
    assert f"{path}: user.uid: " in result.stderr


# -- detach, pid file, terminal --------------------------------------------------------


def test_detach_and_pid_file(corral: Corral, running: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "exec.pid"
    out = tmp_path / "out"
    with open(out, "w") as stdout:
        result = corral(
            "exec",
            "--detach",
            "--pid-file",
            str(pid_file),
            running,
            "sh",
            "-c",
            "echo started; exec sleep 30",
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stdout,  # a pipe would stay open as long as the process
            capture_output=False,
        )
    assert result.returncode == 0
    pid = int(pid_file.read_text())
    init_pid = corral.state(running)["pid"]
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init_pid}/ns/pid")
    assert wait_until(lambda: out.read_text() == "started\n")
    assert wait_until(lambda: _cmdline(pid) == "sleep\x0030\x00")
    # It outlived `corral exec`, and is listed in the container's pid namespace.
    ps = run_exec(corral, running, "ps", "-o", "args").stdout.splitlines()
    assert "sleep 30" in ps


def test_tty_with_a_console_socket(corral: Corral, running: str) -> None:
    directory = tempfile.mkdtemp(prefix="ex", dir="/tmp")
    try:
        socket_path = f"{directory}/console.sock"
        receiver = ConsoleReceiver(socket_path)
        result = run_exec(
            corral,
            "--tty",
            "--detach",
            "--console-socket",
            socket_path,
            running,
            "sh",
            "-c",
            "tty; ls /proc/self/fd; sleep 1",
        )
        assert result.returncode == 0, result.stderr
        master, name = receiver.result()
        try:
            assert name == "/dev/ptmx"
            data = _read_all(master)
        finally:
            os.close(master)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    lines = data.decode().splitlines()
    assert lines[0].startswith("/dev/pts/")  # a pty of the container's devpts
    assert lines[1].split() == ["0", "1", "2", "3"]  # stdio on the pty, ls's directory


def _read_all(fd: int, timeout: float = 10.0) -> bytes:
    import select

    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the slave is closed, the program ended
            break
        if not chunk:
            break
        data += chunk
    return data


def test_tty_attached_to_the_callers_terminal(corral: Corral, running: str) -> None:
    master, slave = os.openpty()
    try:
        process = subprocess.Popen(
            [
                *corral_command(),
                "--root",
                corral.root,
                "exec",
                "-t",
                running,
                "sh",
                "-c",
                "tty; exit 5",
            ],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        slave = -1
        output = _read_all(master)
        assert process.wait(timeout=20) == 5
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert b"/dev/pts/" in output


def test_tty_without_terminal_or_socket_fails(corral: Corral, running: str) -> None:
    result = run_exec(corral, "--tty", "--detach", running, "true")
    assert result.returncode == 255
    assert "cannot allocate tty if corral will detach without setting console socket" in (
        result.stderr
    )


# -- security -----------------------------------------------------------------------


def test_no_host_fd_reaches_the_process(corral: Corral, running: str) -> None:
    # The caller holds fds 3 and 4 open (inheritable): only --preserve-fds passes them.
    def listing(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "sh",
                "-c",
                'exec 3</dev/null 4</dev/null; exec "$@"',
                "sh",
                *corral_command(),
                "--root",
                corral.root,
                "exec",
                *flags,
                running,
                "ls",
                "/proc/self/fd",
            ],
            check=False,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )

    # ls's own listing of the directory is the last fd.
    none = listing()
    assert none.returncode == 0, none.stderr
    assert none.stdout.split() == ["0", "1", "2", "3"]
    one = listing("--preserve-fds", "1")
    assert one.returncode == 0, one.stderr
    assert one.stdout.split() == ["0", "1", "2", "3", "4"]


def test_preserve_fds_must_be_open(corral: Corral, running: str) -> None:
    result = run_exec(corral, "--preserve-fds", "5", running, "true")
    assert result.returncode == 255
    assert "--preserve-fds 5: fd 3 is not open" in result.stderr


def test_cwd_and_root_are_the_containers(corral: Corral, running: str) -> None:
    result = run_exec(corral, running, "sh", "-c", "readlink /proc/$$/cwd; readlink /proc/$$/root")
    assert result.stdout.splitlines() == ["/", "/"]
    init_pid = corral.state(running)["pid"]
    # From the host: its root is the init's root.
    ps = run_exec(
        corral,
        "--detach",
        running,
        "sleep",
        "5",
        capture_output=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert ps.returncode == 0
    host_pids = [p for p in _pids_in_namespace(init_pid) if _cmdline(p) == "sleep\x005\x00"]
    assert host_pids and os.readlink(f"/proc/{host_pids[0]}/root") == os.readlink(
        f"/proc/{init_pid}/root"
    )


def _pids_in_namespace(init_pid: int) -> list[int]:
    target = os.readlink(f"/proc/{init_pid}/ns/pid")
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/pid") == target:
                    found.append(int(name))
            except OSError:
                continue
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read()
    except OSError:
        return ""


SPAWN_SCRIPT = """
import sys
from corral.core.exec_container import read_container_config
from corral.core.exec_request import ExecOptions, exec_spec
from corral.core.runtime import Runtime
from corral.linux.exec import spawn_process

root, container_id = sys.argv[1:3]
record = Runtime(root).store.load(container_id)
spec = exec_spec(ExecOptions(args=["true"]), read_container_config(record))
spawned = spawn_process(record, spec, console_socket=None, preserve_fds=0, cgroup_paths={})
print(spawned.pid, flush=True)
sys.stdin.readline()
spawned.abort()
"""


def test_the_joining_runtime_is_not_dumpable(corral: Corral, running: str) -> None:
    """While it sets up inside the container, the runtime's child runs the host's
    Python: the container must not reach its /proc/<pid>/exe (CVE-2019-5736)."""
    helper = subprocess.Popen(
        [sys.executable, "-c", SPAWN_SCRIPT, corral.root, running],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert helper.stdout is not None and helper.stdin is not None
        host_pid = int(helper.stdout.readline())
        with open(f"/proc/{host_pid}/status") as status:
            inner = status_field(status.read(), "NSpid").split()[-1]
        script = (
            f"cat /proc/{inner}/comm; "
            f"readlink /proc/{inner}/exe || echo denied; "
            f"readlink /proc/{inner}/fd/0 || echo denied; "
            f"cat /proc/{inner}/environ || echo denied; "
            "readlink /proc/1/exe"
        )
        result = run_exec(corral, running, "sh", "-c", script)
        helper.stdin.write("\n")
        helper.stdin.flush()
    finally:
        helper.wait(timeout=20)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("python"), result  # the runtime's child, alive, visible
    assert lines[1:4] == ["denied", "denied", "denied"], result
    assert lines[4] == "/bin/busybox"  # the same reach works on a dumpable process


# -- user namespaces, seccomp -----------------------------------------------------------


@pytest.fixture
def userns_bundle() -> Iterator[Path]:
    """A bundle any uid can search (the container's root is uid 100000 on the host)."""
    from pathlib import Path

    from corral.cli.demo import build_bundle
    from corral.spec.default import default_spec

    directory = Path(tempfile.mkdtemp(prefix="corral-exec-userns-", dir="/tmp"))
    directory.chmod(0o755)
    build_bundle(str(directory), ["true"])
    spec = default_spec(["sleep", "1000"])
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    (directory / "config.json").write_text(json.dumps(spec))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_exec_in_a_user_namespace(corral: Corral, userns_bundle: Path) -> None:
    name = f"u-{uuid.uuid4().hex[:8]}"
    create_detached(corral, userns_bundle, name)
    corral("start", name)
    result = run_exec(
        corral,
        "-u",
        "1000:1000",
        name,
        "sh",
        "-c",
        "id; cat /proc/self/uid_map",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "uid=1000 gid=1000"
    assert lines[1].split() == ["0", "100000", "65536"]
    # Detached, seen from the host: uid 1000 in the container is 101000 outside.
    pid_file = userns_bundle / "exec.pid"
    corral(
        "exec",
        "-d",
        "--pid-file",
        str(pid_file),
        "-u",
        "1000",
        name,
        "sleep",
        "20",
        stdin=subprocess.DEVNULL,
        # Not pipes: the detached sleep keeps the runtime's stdio, so capturing would wait
        # for its exit, and the checks below would look at a dead process (reaped at once
        # where the orphan's new parent reaps, as the VM's init does: no /proc/<pid>).
        capture_output=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pid = int(pid_file.read_text())
    with open(f"/proc/{pid}/status") as status:
        assert status_field(status.read(), "Uid").split() == ["101000"] * 4
    init_pid = corral.state(name)["pid"]
    assert os.readlink(f"/proc/{pid}/ns/user") == os.readlink(f"/proc/{init_pid}/ns/user")


def test_seccomp_applies_to_the_exec(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
        }

    create_detached(corral, make_bundle(["sleep", "1000"], edit=edit), container_id)
    corral("start", container_id)
    result = run_exec(
        corral, container_id, "sh", "-c", "mkdir /tmp/d; echo $?; grep Seccomp: /proc/self/status"
    )
    assert result.stdout.split() == ["1", "Seccomp:", "2"]
    assert "Operation not permitted" in result.stderr


# -- the same exec with runc ----------------------------------------------------------------


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_same_view_as_runc_exec(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    bundle = make_bundle(["sleep", "1000"], edit=sleeping)
    script = (
        "id; pwd; echo $FOO; hostname; grep -E '^(Cap|NoNewPrivs|Groups)' /proc/self/status; "
        "ls /proc/$$/fd; ulimit -n"
    )
    flags = ["--env", "FOO=bar", "--cwd", "/tmp", "-u", "7:8", "-g", "9", "--cap", "CAP_CHOWN"]
    create_detached(corral, bundle, container_id)
    corral("start", container_id)
    ours = run_exec(corral, *flags, container_id, "sh", "-c", script)
    runc_root = str(tmp_path / "runc")
    runc = ["runc", "--root", runc_root]
    name = f"r-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [*runc, "run", "-d", "--bundle", str(bundle), name],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        theirs = subprocess.run(
            [*runc, "exec", *flags, name, "sh", "-c", script],
            check=False,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
        stopped = subprocess.run(
            [*runc, "exec", name, "sh", "-c", "exit 3"],
            check=False,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
    finally:
        subprocess.run([*runc, "delete", "-f", name], check=False, capture_output=True)
    assert theirs.returncode == 0, theirs.stderr
    assert ours.stdout == theirs.stdout
    assert stopped.returncode == run_exec(corral, container_id, "sh", "-c", "exit 3").returncode


# -- cgroups, pause ---------------------------------------------------------------------------


def cgroup_record(corral: Corral, container_id: str) -> dict[str, Any]:
    with open(f"{corral.root}/{container_id}/state.json") as f:
        record: dict[str, Any] = json.load(f)["extra"].get("cgroup") or {}
    if not record:
        pytest.skip("the container has no cgroup on this host")
    return record


def own_cgroups(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return sorted(f.read().splitlines())


def detached(corral: Corral, *args: str) -> int:
    """``corral exec --detach --pid-file`` of ``args``; the host pid."""
    pid_file = f"{corral.root}/../exec-{uuid.uuid4().hex[:8]}.pid"
    corral(
        "exec",
        "--detach",
        "--pid-file",
        pid_file,
        *args,
        stdin=subprocess.DEVNULL,
        capture_output=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with open(pid_file) as f:
        return int(f.read())


def test_the_process_is_in_the_containers_cgroup(corral: Corral, running: str) -> None:
    cgroup_record(corral, running)
    pid = detached(corral, running, "sleep", "20")
    assert own_cgroups(pid) == own_cgroups(corral.state(running)["pid"])
    # And from inside, through the container's cgroup namespace, it is at its root.
    inside = run_exec(corral, running, "cat", "/proc/self/cgroup").stdout.splitlines()
    assert inside and all(line.endswith(":/") for line in inside)


def test_cgroup_flag_joins_an_existing_sub_cgroup(corral: Corral, running: str) -> None:
    record = cgroup_record(corral, running)
    v1 = record.get("v1Paths") or {}
    if "pids" in v1:
        flag, directory, hierarchy = "pids:sub", f"{v1['pids']}/sub", "pids"
    else:
        flag, directory, hierarchy = "sub", f"{record['unifiedPath']}/sub", ""
    missing = run_exec(corral, "--cgroup", flag, running, "true")
    assert missing.returncode == 255
    assert f"--cgroup: joining {directory}: No such file or directory" in missing.stderr
    os.mkdir(directory)
    try:
        pid = detached(corral, "--cgroup", flag, running, "sleep", "20")
        lines = dict(line.split(":", 2)[1:] for line in own_cgroups(pid))
        init = dict(line.split(":", 2)[1:] for line in own_cgroups(corral.state(running)["pid"]))
        assert lines[hierarchy] == init[hierarchy] + "/sub"
        others = {key: value for key, value in lines.items() if key != hierarchy}
        assert others == {key: value for key, value in init.items() if key != hierarchy}
        os.kill(pid, 9)
        assert wait_until(lambda: not os.path.exists(f"/proc/{pid}/cgroup"))
    finally:
        wait_until(lambda: _rmdir(directory))


def _rmdir(path: str) -> bool:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def test_paused_container_needs_ignore_paused(corral: Corral, running: str) -> None:
    cgroup_record(corral, running)
    corral("pause", running)
    try:
        refused = run_exec(corral, running, "true")
        assert refused.returncode == 255
        assert refused.stderr == (
            "corral: exec failed: cannot exec in a paused container "
            "(use --ignore-paused to override)\n"
        )
        # With it, the process joins the frozen cgroup and waits there for resume.
        waiting = subprocess.Popen(
            [*corral_command(), "--root", corral.root, "exec", "--ignore-paused", running, "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)
        assert waiting.poll() is None
    finally:
        corral("resume", running)
    assert waiting.wait(timeout=20) == 0


def test_exec_cpu_affinity_final_is_the_programs(
    corral: Corral, running: str, tmp_path: Path
) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    last = max(os.sched_getaffinity(0))
    process = {
        "args": ["grep", "Cpus_allowed_list", "/proc/self/status"],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "execCPUAffinity": {"initial": f"0-{last}", "final": str(last)},
    }
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    result = run_exec(corral, "-p", str(path), running)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Cpus_allowed_list:", str(last)]
