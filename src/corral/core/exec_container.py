"""``exec``, the platform-neutral half: checks, the process record, attaching.

:func:`exec_in_container` loads the container's record and checks its status with
runc's rules and words: a ``created`` or ``running`` container takes new processes, a
``paused`` one only with ``--ignore-paused``, a ``stopped`` one never ("cannot exec
in a stopped container"). It reads the container's ``config.json`` from the bundle
(the base of the command-line form, and what a process.json inherits), builds the
process (:mod:`corral.core.exec_request`), and hands it to the backend's
``corral.<platform>.exec.spawn_process``, which returns a :class:`WaitingProcess`: a
child set up inside the container, waiting for ``release()`` to exec (or ``abort()``).

Then, as ``runc exec`` does:

* ``--detach``: release, write ``--pid-file``, return 0; the process keeps the
  runtime's stdio (or, with ``--tty``, the terminal whose master went to
  ``--console-socket``);
* attached: signals the runtime receives are forwarded to the process (it is in a
  session of its own, so a terminal's Ctrl-C reaches ``corral exec`` only); the
  status is the process's exit status, or 128 + the signal that killed it;
* attached with ``--tty``: the caller's terminal is proxied to the process's pty
  through a console socket of the runtime's own, by the same code as ``run``
  (:func:`corral.core.run.run_with_terminal`).

The pid file is written once the program runs, as runc writes it; if that fails the
process is killed.
"""

from __future__ import annotations

from corral.errors import IllegalStateError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from corral.core.exec_request import ExecOptions
    from corral.core.runtime import Runtime
    from corral.core.state import Record


WNOHANG = 1


class WaitingProcess:
    """A child a backend set up inside the container, waiting to exec its program.

    The backend's child reports over ``sync_fd`` (:mod:`corral.core.handshake`) and
    waits for :data:`~corral.core.handshake.COMMITTED` on ``commit_fd``; it keeps
    ``sync_fd`` (close-on-exec) until execve(2), so end of file there means the program
    runs, and a line means the exec failed.
    """

    __slots__ = ("_commit_fd", "_sync_fd", "pid")

    def __init__(self, pid: int, sync_fd: int, commit_fd: int) -> None:
        self.pid = pid
        self._sync_fd = sync_fd
        self._commit_fd = commit_fd

    def release(self) -> None:
        """Let the child exec its program; raise CreateError if the exec failed."""
        from corral.core import fastos, handshake
        from corral.core.procinfo import kill_and_reap
        from corral.errors import CreateError

        try:
            fastos.write(self._commit_fd, handshake.COMMITTED)
            answer = handshake.read_answer(self._sync_fd)  # {} at EOF: execve closed it
        finally:
            self._close()
        if answer:
            kill_and_reap(self.pid)
            raise CreateError(str(answer.get("error") or "the process failed to start"))

    def abort(self) -> None:
        """Kill the child before it ran anything of the user's, and reap it."""
        from corral.core.procinfo import kill_and_reap

        self._close()
        kill_and_reap(self.pid)

    def _close(self) -> None:
        from corral.core import fastos

        for fd in (self._commit_fd, self._sync_fd):
            if fd >= 0:
                fastos.close(fd)
        self._commit_fd = self._sync_fd = -1


def connect_exec_console(terminal: bool, console_socket: str | None) -> int:
    """With a terminal, the console socket connected now, in the runtime's namespaces:
    its path is the host's, out of the child's reach once it is in the container (or
    jail). -1 without a terminal. Both backends' ``spawn_process`` call it."""
    if not terminal:
        return -1
    if not console_socket:
        raise UsageError("--tty needs a console socket to send the terminal to")
    from corral.core.console import connect_console

    return connect_console(console_socket)


def serve_until_ready(
    pid: int, sync_fd: int, commit_fd: int, handlers: Mapping[str, Callable[[], object]]
) -> WaitingProcess:
    """The backend's forked child ``pid``, its requests served (:mod:`corral.core.
    handshake`) until it reports ready: a :class:`WaitingProcess`. If it reports an
    error or exits instead, CreateError with its message, and it is killed and reaped.
    Both backends' ``spawn_process`` end with it."""
    from corral.core import handshake
    from corral.errors import CreateError

    spawned = WaitingProcess(pid, sync_fd, commit_fd)
    try:
        answer = handshake.serve_requests(sync_fd, commit_fd, handlers)
        if answer.get("ready") is not True:
            raise CreateError(str(answer.get("error") or "the process exited during its set-up"))
    except BaseException:
        spawned.abort()
        raise
    return spawned


def check_exec_status(status: str, ignore_paused: bool) -> None:
    """Refuse a status that takes no new process, in runc's words (pure)."""
    if status in ("created", "running") or (status == "paused" and ignore_paused):
        return
    if status == "paused":
        raise IllegalStateError(
            "cannot exec in a paused container (use --ignore-paused to override)"
        )
    raise IllegalStateError(f"cannot exec in a {status} container")


def check_exec_console(terminal: bool, console_socket: str, *, detach: bool) -> None:
    """runc's rules for ``--tty``, ``--detach`` and ``--console-socket`` (pure)."""
    if detach and terminal and not console_socket:
        raise UsageError("cannot allocate tty if corral will detach without setting console socket")
    if (not detach or not terminal) and console_socket:
        raise UsageError("cannot use console socket if corral will not detach or allocate tty")


def exec_in_container(runtime: Runtime, container_id: str, options: ExecOptions) -> int:
    """Run the process ``options`` describe in the container; its exit status when
    attached, 0 when detached. Raises CorralError before the program runs."""
    from corral.core.exec_request import exec_spec, parse_cgroup_flags
    from corral.core.ids import validate_id

    validate_id(container_id)
    # Before the warm-up thread may hold a descriptor of its own: one at fd 3 would pass
    # for the caller's.
    check_preserved_fds(options.preserve_fds)
    runtime.backend.warm_up()  # the exec'd process's cgroup migration, begun early
    record = runtime.store.load(container_id)
    check_exec_status(runtime.status(record), options.ignore_paused)
    spec = exec_spec(options, read_container_config(record))
    assert spec.process is not None
    terminal = spec.process.terminal
    check_exec_console(terminal, options.console_socket, detach=options.detach)
    cgroup_paths = parse_cgroup_flags(options.cgroups)
    import importlib

    platform = importlib.import_module(f"corral.{runtime.backend.platform}.exec")

    def spawn(console_socket: str | None) -> WaitingProcess:
        spawned: WaitingProcess = platform.spawn_process(
            record,
            spec,
            console_socket=console_socket,
            preserve_fds=options.preserve_fds,
            cgroup_paths=cgroup_paths,
        )
        return spawned

    if terminal and not options.detach:
        return _attached_with_terminal(spawn, options.pid_file)
    spawned = spawn(options.console_socket or None)
    if options.detach:
        _start(spawned, options.pid_file)
        return 0
    return _attached(spawned, options.pid_file)


def check_preserved_fds(count: int) -> None:
    """``--preserve-fds N``: fds 3 .. 3+N-1 must be open, as runc checks; else one of
    corral's own descriptors could land there and be passed to the container."""
    import os

    for fd in range(3, 3 + count):
        try:
            os.fstat(fd)
        except OSError as error:
            raise UsageError(
                f"--preserve-fds {count}: fd {fd} is not open ({error.strerror})"
            ) from None


def read_container_config(record: Record) -> dict[str, Any]:
    """The container's ``config.json``, decoded (runc reads it from the bundle too)."""
    from corral.core import jsonio
    from corral.errors import BundleError

    path = f"{record.bundle}/config.json"
    try:
        with open(path, "rb") as file:
            document = jsonio.loads(file.read())
    except OSError as error:
        raise BundleError(f"{path}: {error.strerror}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise BundleError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise BundleError(f"{path}: not a JSON object")
    return document


def _start(spawned: WaitingProcess, pid_file: str) -> None:
    """Let the program run, then write the pid file (killing it if that fails)."""
    spawned.release()
    if pid_file:
        from corral.core.runtime import write_pid_file

        try:
            write_pid_file(pid_file, spawned.pid)
        except BaseException:
            _kill_if_alive(spawned.pid)
            raise


def _attached(spawned: WaitingProcess, pid_file: str) -> int:
    from corral.core.attached import forward_signals, restore_signals, wait_exit_status

    previous: dict[int, object] = {}
    try:
        previous = forward_signals(spawned.pid)
        _start(spawned, pid_file)
    except BaseException:
        restore_signals(previous)
        spawned.abort()
        raise
    try:
        return wait_exit_status(spawned.pid)
    finally:
        restore_signals(previous)


def _attached_with_terminal(spawn: Any, pid_file: str) -> int:
    from corral.core.run import run_with_terminal

    started: list[WaitingProcess] = []
    released: list[bool] = []

    def create(socket_path: str) -> int:
        started.append(spawn(socket_path))
        return started[0].pid

    def start() -> None:
        released.append(True)
        _start(started[0], pid_file)

    def finish() -> None:
        # run_with_terminal reaps the process when it ends; one still here (an error
        # before that) must not be left running unattached.
        if started and not released:
            started[0].abort()
        elif started:
            _kill_if_alive(started[0].pid)

    import os

    from corral.core.run import host_terminal

    try:
        host = host_terminal()
    except UsageError:
        raise UsageError(
            "--tty: corral exec has no terminal to attach (stdio is none and there is no "
            "/dev/tty); use --detach with --console-socket"
        ) from None
    try:
        return run_with_terminal(create, start, finish, host=host)
    finally:
        os.close(host)


def _kill_if_alive(pid: int) -> None:
    """SIGKILL and reap our child ``pid`` unless it was reaped already (then the pid
    may belong to someone else and must not be signalled)."""
    from corral.core import fastos

    try:
        found, _ = fastos.waitpid(pid, WNOHANG)
    except ChildProcessError:
        return
    if found == 0:
        from corral.core.procinfo import kill_and_reap

        kill_and_reap(pid)
