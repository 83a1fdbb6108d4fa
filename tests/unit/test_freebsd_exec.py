"""``corral exec`` on FreeBSD, run on any host against the recording syscall fake.

The fork, the handshake, the credentials and the execve are real (the process runs as
the test's own user, so no privilege is needed); ``jail_attach`` and ``procctl`` go to
the fake, which here also writes the attached jid to a file so the test can see what
the forked child did.
"""

from __future__ import annotations

import os

import pytest
from freebsd_fake import RecordingFreeBSDSyscalls

from corral.core.exec_request import ExecOptions, exec_spec
from corral.core.state import Record
from corral.errors import ConfigError, CreateError, UsageError
from corral.freebsd.exec import spawn_process
from corral.freebsd.syscalls import JAIL_CREATE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any


class AttachReporting(RecordingFreeBSDSyscalls):
    """The fake, telling a file which jail the child attached to, and when."""

    def __init__(self, report: Path) -> None:
        super().__init__(first_jid=7)
        self.report = report
        self.jail_set([("name", "c1"), ("persist", True)], JAIL_CREATE)  # jid 7

    def jail_attach(self, jid: int) -> None:
        super().jail_attach(jid)
        with open(self.report, "a") as f:
            f.write(f"attach {jid} {os.getpid()}\n")


def record(jid: object = 7) -> Record:
    return Record(
        id="c1",
        bundle="/nonexistent",
        rootfs="/nonexistent/rootfs",
        oci_version="1.2.0",
        created="now",
        pid=1,
        extra={"jid": jid},
    )


def config(tmp_path: Path, **process: Any) -> dict[str, Any]:
    base = {
        "args": ["true"],
        "cwd": str(tmp_path),
        "env": ["PATH=/usr/bin:/bin"],
        "user": {"uid": os.getuid(), "gid": os.getgid(), "additionalGids": os.getgroups()},
    }
    base.update(process)
    return {"ociVersion": "1.2.0", "process": base}


def wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_the_process_attaches_then_runs(tmp_path: Path) -> None:
    report = tmp_path / "attach"
    out = tmp_path / "out"
    options = ExecOptions(args=["sh", "-c", f'echo "$X $(pwd)" > {out}; exit 7'], env=["X=hi"])
    spec = exec_spec(options, config(tmp_path))
    waiting = spawn_process(
        record(),
        spec,
        console_socket=None,
        preserve_fds=0,
        cgroup_paths={},
        sc=AttachReporting(report),
    )
    # Set up and waiting: attached already, the program not run yet.
    assert report.read_text() == f"attach 7 {waiting.pid}\n"
    assert not out.exists()
    waiting.release()
    assert wait(waiting.pid) == 7
    assert out.read_text() == f"hi {tmp_path}\n"


def test_a_missing_program_fails_before_release_and_leaves_nothing(tmp_path: Path) -> None:
    spec = exec_spec(ExecOptions(args=["no-such-program"]), config(tmp_path))
    with pytest.raises(CreateError, match='exec: "no-such-program": executable file not found'):
        spawn_process(
            record(),
            spec,
            console_socket=None,
            preserve_fds=0,
            cgroup_paths={},
            sc=AttachReporting(tmp_path / "attach"),
        )
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # the child was reaped


def test_abort_kills_the_waiting_child(tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = exec_spec(ExecOptions(args=["sh", "-c", f"touch {out}"]), config(tmp_path))
    waiting = spawn_process(
        record(),
        spec,
        console_socket=None,
        preserve_fds=0,
        cgroup_paths={},
        sc=AttachReporting(tmp_path / "attach"),
    )
    waiting.abort()
    with pytest.raises(ChildProcessError):
        os.waitpid(waiting.pid, 0)
    assert not out.exists()


@pytest.mark.parametrize(
    ("process", "field"),
    [
        ({"capabilities": {"bounding": ["CAP_KILL"]}}, "process.capabilities"),
        ({"oomScoreAdj": 10}, "process.oomScoreAdj"),
        ({"apparmorProfile": "x"}, "process.apparmorProfile"),
    ],
)
def test_linux_fields_are_refused(tmp_path: Path, process: dict[str, Any], field: str) -> None:
    spec = exec_spec(ExecOptions(args=["true"]), config(tmp_path, **process))
    sc = AttachReporting(tmp_path / "attach")
    with pytest.raises(ConfigError) as caught:
        spawn_process(record(), spec, console_socket=None, preserve_fds=0, cgroup_paths={}, sc=sc)
    assert caught.value.path == field
    assert sc.methods() == ["jail_set"]  # the fixture's: nothing else was tried


def test_a_jail_gone_meanwhile_fails_the_exec(tmp_path: Path) -> None:
    spec = exec_spec(ExecOptions(args=["true"]), config(tmp_path))
    sc = AttachReporting(tmp_path / "attach")
    with pytest.raises(CreateError, match="jail_attach 9: Invalid argument"):
        spawn_process(record(9), spec, console_socket=None, preserve_fds=0, cgroup_paths={}, sc=sc)


def test_cap_flag_is_refused_on_freebsd(tmp_path: Path) -> None:
    spec = exec_spec(ExecOptions(args=["true"], caps=["CAP_KILL"]), config(tmp_path))
    with pytest.raises(ConfigError, match=r"process\.capabilities: a Linux process setting"):
        spawn_process(record(), spec, console_socket=None, preserve_fds=0, cgroup_paths={})


def test_cgroup_flag_and_missing_jid(tmp_path: Path) -> None:
    spec = exec_spec(ExecOptions(args=["true"]), config(tmp_path))
    with pytest.raises(UsageError, match="FreeBSD has no cgroups"):
        spawn_process(record(), spec, console_socket=None, preserve_fds=0, cgroup_paths={"": "x"})
    with pytest.raises(CreateError, match="no jail id"):
        spawn_process(record(None), spec, console_socket=None, preserve_fds=0, cgroup_paths={})


def test_bad_rlimit_names_the_field(tmp_path: Path) -> None:
    rlimits = [{"type": "RLIMIT_RTTIME", "soft": 1, "hard": 1}]
    spec = exec_spec(ExecOptions(args=["true"]), config(tmp_path, rlimits=rlimits))
    with pytest.raises(ConfigError) as caught:
        spawn_process(record(), spec, console_socket=None, preserve_fds=0, cgroup_paths={})
    assert caught.value.path == "process.rlimits[0].type"
