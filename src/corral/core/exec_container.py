"""``exec``, the platform-neutral half: checks, the process record, attaching.

:func:`exec_in_container` loads the container's record and checks its status with
runc's rules and words: a ``created`` or ``running`` container takes new processes, a
``paused`` one only with ``--ignore-paused``, a ``stopped`` one never ("cannot exec
in a stopped container"). It reads the container's ``config.json`` from the bundle
(the base of the command-line form, and what a process.json inherits), builds the
process (:mod:`corral.core.exec_request`), and hands it to the backend's
``corral.<platform>.exec.spawn_process``, which returns a child set up inside the
container and waiting for ``release()`` to exec (or ``abort()``).

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
    from typing import Any, Protocol

    from corral.core.exec_request import ExecOptions
    from corral.core.runtime import Runtime
    from corral.core.state import Record

    class Spawned(Protocol):
        """What a backend's ``spawn_process`` returns."""

        pid: int

        def release(self) -> None: ...

        def abort(self) -> None: ...


WNOHANG = 1


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
    record = runtime.store.load(container_id)
    check_exec_status(runtime.status(record), options.ignore_paused)
    spec = exec_spec(options, read_container_config(record))
    assert spec.process is not None
    terminal = spec.process.terminal
    check_exec_console(terminal, options.console_socket, detach=options.detach)
    cgroup_paths = parse_cgroup_flags(options.cgroups)
    import importlib

    platform = importlib.import_module(f"corral.{runtime.backend.platform}.exec")

    def spawn(console_socket: str | None) -> Spawned:
        spawned: Spawned = platform.spawn_process(
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


def _start(spawned: Spawned, pid_file: str) -> None:
    """Let the program run, then write the pid file (killing it if that fails)."""
    spawned.release()
    if pid_file:
        from corral.core.runtime import write_pid_file

        try:
            write_pid_file(pid_file, spawned.pid)
        except BaseException:
            _kill_if_alive(spawned.pid)
            raise


def _attached(spawned: Spawned, pid_file: str) -> int:
    from corral.core.run import _forward_signals, _restore, _wait

    previous: dict[int, object] = {}
    try:
        previous = _forward_signals(spawned.pid)
        _start(spawned, pid_file)
    except BaseException:
        _restore(previous)
        spawned.abort()
        raise
    try:
        return _wait(spawned.pid)
    finally:
        _restore(previous)


def _attached_with_terminal(spawn: Any, pid_file: str) -> int:
    from corral.core.run import run_with_terminal

    started: list[Spawned] = []
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
