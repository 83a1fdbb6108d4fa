"""``corral exec`` on FreeBSD: a new process in the container's jail.

As runj's ``exec`` does, the runtime forks a child that attaches to the jail with
``jail_attach(2)`` (recorded as ``extra["jid"]`` by ``create``): from then on it is
chrooted into the jail's root, sees only the jail's processes and is bound by its
rules and its rctl(8) limits, which are per jail. The child, before the attach, dies
with the runtime (``procctl(PROC_PDEATHSIG_CTL)``), takes a session of its own and
connects nothing itself: the console socket is connected by the parent, as the host's
path is out of reach inside the jail. After the attach it makes the terminal (a pty
made inside the jail, its master sent to the socket), gives itself the process's
limits, user, groups, cwd, umask and no_new_privs (:func:`corral.freebsd.process.
apply_process`, the entrypoint's code), finds the program in the container's
``PATH``, reports ready and waits for :meth:`~corral.core.exec_container.
WaitingProcess.release` to exec it (every fd above stdio and the preserved ones
close-on-exec, :mod:`corral.core.execute`).

The Linux-only process fields (capabilities, AppArmor, SELinux, oomScoreAdj,
scheduler...) are refused naming the field, as ``create`` refuses them, and so is
``--cgroup``: FreeBSD has no cgroups.
"""

from __future__ import annotations

import os

from corral.core import handshake
from corral.core.exec_container import WaitingProcess, connect_exec_console, serve_until_ready
from corral.errors import ConfigError, CreateError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from corral.core.state import Record
    from corral.freebsd.syscalls import FreeBSDSyscalls
    from corral.spec.model import Spec

SIGKILL = 9


def check_exec_process(spec: Spec, cgroup_paths: dict[str, str]) -> None:
    """What a jailed process cannot be given, refused before anything is started."""
    from corral.freebsd.params import LINUX_PROCESS_FIELDS
    from corral.freebsd.process import check_process

    if cgroup_paths:
        raise UsageError("--cgroup: FreeBSD has no cgroups")
    raw = spec.raw.get("process") or {}
    for key in LINUX_PROCESS_FIELDS:
        if raw.get(key) not in (None, False, "", 0, [], {}):
            raise ConfigError(f"process.{key}", "a Linux process setting on a FreeBSD host")
    check_process(spec)


def spawn_process(
    record: Record,
    spec: Spec,
    *,
    console_socket: str | None,
    preserve_fds: int,
    cgroup_paths: dict[str, str],
    sc: FreeBSDSyscalls | None = None,
) -> WaitingProcess:
    """Start the process attached to the container's jail; it waits for ``release``."""
    check_exec_process(spec, cgroup_paths)
    jid = record.extra.get("jid")
    if not isinstance(jid, int) or isinstance(jid, bool):
        raise CreateError(f"container {record.id} has no jail id in its record")
    if sc is None:
        from corral.freebsd.syscalls import FreeBSDSyscalls

        sc = FreeBSDSyscalls()
    assert spec.process is not None
    console_fd = -1
    sync_r = sync_w = commit_r = commit_w = -1
    try:
        # The parent connects: the socket's host path is out of reach inside the jail.
        console_fd = connect_exec_console(spec.process.terminal, console_socket)
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        commit_r, commit_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(sync_r)
            os.close(commit_w)
            _jailed_child(sc, spec, jid, sync_w, commit_r, console_fd, preserve_fds)
    except BaseException:
        for fd in (sync_r, commit_w):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in (console_fd, sync_w, commit_r):
            if fd >= 0:
                os.close(fd)
    return serve_until_ready(pid, sync_r, commit_w, {})


def _jailed_child(
    sc: FreeBSDSyscalls,
    spec: Spec,
    jid: int,
    sync_fd: int,
    commit_fd: int,
    console_fd: int,
    preserve_fds: int,
) -> NoReturn:
    from corral.freebsd.process import P_PID, PROC_PDEATHSIG_CTL

    try:
        from corral.core.execute import exec_process, resolve_executable
        from corral.freebsd.process import apply_process

        process = spec.process
        assert process is not None
        sc.procctl(P_PID, 0, PROC_PDEATHSIG_CTL, SIGKILL)
        os.setsid()
        sc.jail_attach(jid)
        if console_fd >= 0:
            _take_terminal(spec, console_fd)
        apply_process(sc, process)
        executable = resolve_executable(process)
        handshake.await_release(sync_fd, commit_fd)
        sc.procctl(P_PID, 0, PROC_PDEATHSIG_CTL, 0)
        # sync_fd is close-on-exec: its end of file tells the runtime the exec happened.
        exec_process(process, preserve_fds=preserve_fds, executable=executable)
    except BaseException as error:
        handshake.report_error(sync_fd, error)
    os._exit(1)


def _take_terminal(spec: Spec, console_fd: int) -> None:
    """A pty made inside the jail: the master to the console socket, the slave this
    session's controlling terminal and stdio."""
    from corral.core import console

    raw_size = (spec.raw.get("process") or {}).get("consoleSize")
    size = None
    if isinstance(raw_size, dict) and raw_size.get("height") and raw_size.get("width"):
        size = (int(raw_size["height"]), int(raw_size["width"]))
    master, slave, name = console.open_pty()
    console.hand_over_pty(console_fd, master, slave, name, size)
