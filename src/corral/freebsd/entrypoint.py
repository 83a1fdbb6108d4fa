"""The jailed process, from ``fork()`` to ``execve()``.

``create`` forks this child after the jail exists. It attaches to the jail
(``jail_attach(2)``: it is then chrooted into the jail's root and bound by the jail's
rules), makes the terminal if the config wants one, sets limits, user and directory,
reports ready over the sync pipe (:mod:`corral.core.handshake`), and waits on the
exec fifo for ``start``; then it runs the ``startContainer`` hooks inside the jail and
execs the program. It keeps ``create``'s stdio unless it has a terminal.

What it needs from outside the jail (the state directory for the fifo, the console
socket) is opened *before* ``jail_attach``, since the jail's root hides the host's paths.
"""

from __future__ import annotations

import os

from corral.core import handshake
from corral.freebsd.process import P_PID, PROC_PDEATHSIG_CTL, apply_process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from corral.backend import CreateRequest
    from corral.freebsd.syscalls import FreeBSDSyscalls
    from corral.spec.hooks import Hook

SIGKILL = 9


class EntrypointFds:
    """The descriptors the entrypoint inherits from ``create``."""

    __slots__ = ("commit", "console", "state_dir", "sync")

    def __init__(self, *, sync: int, commit: int, state_dir: int, console: int) -> None:
        self.sync = sync
        self.commit = commit
        self.state_dir = state_dir
        self.console = console  # a connected console socket, or -1


def run_entrypoint(
    sc: FreeBSDSyscalls,
    request: CreateRequest,
    jid: int,
    fds: EntrypointFds,
    start_hooks: list[Hook],
    state: dict[str, object],
) -> NoReturn:
    sync_fd = fds.sync
    try:
        from corral.core.execute import exec_process, resolve_executable
        from corral.core.fifo import signal_start

        process = request.spec.process
        assert process is not None
        # Until create has recorded us, die with it (procctl(2), PROC_PDEATHSIG_CTL).
        sc.procctl(P_PID, 0, PROC_PDEATHSIG_CTL, SIGKILL)
        os.setsid()
        sc.jail_attach(jid)
        if process.terminal:
            _take_terminal(fds.console, request)
        apply_process(sc, process)
        executable = resolve_executable(process)
        handshake.send_ready(sync_fd)
        handshake.await_commit(
            sync_fd, fds.commit, lambda: sc.procctl(P_PID, 0, PROC_PDEATHSIG_CTL, 0)
        )
        sync_fd = -1  # from here on, errors go to the container's stderr
        signal_start(fds.state_dir, request.fifo_name)
        os.close(fds.state_dir)
        if start_hooks:
            from corral.core.hooks import run_hooks

            run_hooks(start_hooks, {**state, "status": "running"}, kind="startContainer")
        exec_process(process, preserve_fds=request.preserve_fds, executable=executable)
    except BaseException as error:  # everything must reach the parent
        handshake.report_error(sync_fd, error)
    os._exit(1)


def _take_terminal(console_fd: int, request: CreateRequest) -> None:
    """A pty made inside the jail: its master goes to the console socket, its slave
    becomes this session's controlling terminal and stdio."""
    from corral.core import console

    master, slave, name = console.open_pty()
    size = request.spec.raw.get("process", {}).get("consoleSize")
    if isinstance(size, dict):
        console.set_window_size(master, int(size.get("height", 0)), int(size.get("width", 0)))
    console.send_console_fd(console_fd, master, name)
    os.close(master)
    os.close(console_fd)
    console.make_controlling_terminal(slave)
