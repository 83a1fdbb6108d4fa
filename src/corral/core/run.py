"""``run``: create, start, wait and delete, with the caller attached.

The runtime forks the init itself, so the init is this process's child and its exit
status comes from ``waitpid``. Signals sent to ``corral run`` (Ctrl-C in a terminal,
``kill`` from a supervisor) are forwarded to the container's init, as runc does: the
init is in a session of its own, so the terminal does not signal it directly.
The exit status is the program's, or 128 + the signal number that killed it.

With ``process.terminal`` and no ``--console-socket``, ``run`` hands the caller's
terminal to the container, as runc does (:func:`run_with_terminal`): it listens on a
console socket of its own (in a fresh 0700 directory), creates the container with it,
receives the pty master, and then, until the program ends:

* the caller's terminal is in raw mode, so every key (Ctrl-C included) reaches the
  container's terminal, whose line discipline does the editing and the signals. Output
  processing (OPOST) stays on, as runc leaves it: the container's pty gets ONLCR
  cleared instead, so a newline becomes CR LF once, not twice. The previous mode
  comes back on the way out, errors included;
* stdin is copied to the master and the master to stdout, through poll(2); the
  master is non-blocking so a program that stops reading cannot stall its output;
* the container's terminal takes the caller's size at start and on every SIGWINCH
  (TIOCSWINSZ on the master, which signals the program's foreground group);
* SIGCHLD wakes the loop (``signal.set_wakeup_fd``), which reaps the init; output
  still in the pty is drained until the master reports the slave closed (EIO), for
  at most :data:`DRAIN_SECONDS` in case a process outside the container holds it.

runc's rules for ``--console-socket`` are checked first
(:func:`corral.core.console.check_console_flags`).

:func:`listen_fds` is runc's pass-through of systemd socket activation
(sd_listen_fds(3)) for ``create`` and ``run``.
"""

from __future__ import annotations

from corral.core import fastos
from corral.core.attached import exit_status, forward_signals, restore_signals, wait_exit_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from corral.core.runtime import Runtime

SIGCHLD = 17
SIGWINCH = 28
WNOHANG = 1
DRAIN_SECONDS = 1.0
ACCEPT_SECONDS = 10.0
_CHUNK = 65536
_MAX_PENDING = 1 << 20  # stop reading stdin while this much waits for the container
_SOCKET_NAME = "console.sock"
_MAX_SOCKET_PATH = 100  # sun_path: 108 bytes on Linux, 104 on FreeBSD, with the NUL


def run_container(
    runtime: Runtime,
    container_id: str,
    bundle: str,
    *,
    detach: bool = False,
    console_socket: str | None = None,
    **create_options: object,
) -> int:
    from corral.core.console import check_console_flags

    terminal = wants_terminal(fastos.absolute(bundle))
    check_console_flags(terminal, console_socket, detached=detach)
    if terminal and not detach:

        def create(socket_path: str) -> int:
            state = runtime.create(
                container_id,
                bundle,
                console_socket=socket_path,
                **create_options,  # type: ignore[arg-type]
            )
            return int(state["pid"])

        return run_with_terminal(
            create,
            lambda: runtime.start(container_id),
            lambda: runtime.delete(container_id, force=True),
        )
    state = runtime.create(
        container_id,
        bundle,
        console_socket=console_socket,
        **create_options,  # type: ignore[arg-type]
    )
    pid = int(state["pid"])
    try:
        previous = forward_signals(pid) if not detach else {}
        runtime.start(container_id)
    except BaseException:
        runtime.delete(container_id, force=True)
        raise
    if detach:
        return 0
    try:
        status = wait_exit_status(pid)
    finally:
        restore_signals(previous)
        runtime.delete(container_id, force=True)
    return status


def wants_terminal(bundle: str) -> bool:
    """Whether ``<bundle>/config.json`` says ``process.terminal: true``.

    An unreadable or malformed config answers False: ``create`` then reports it.
    """
    from corral.core import jsonio

    try:
        with open(f"{bundle}/config.json", "rb") as file:
            document = jsonio.loads(file.read())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    process = document.get("process") if isinstance(document, dict) else None
    return isinstance(process, dict) and process.get("terminal") is True


# -- run with the caller's terminal ---------------------------------------------------------


def run_with_terminal(
    create: Callable[[str], int],
    start: Callable[[], None],
    delete: Callable[[], None],
    *,
    stdin: int = 0,
    stdout: int = 1,
    host: int | None = None,
) -> int:
    """Run a terminal container attached to the caller's terminal; its exit status.

    ``create(socket_path)`` creates the container so that it sends its pty master to
    ``socket_path``, and returns the init's pid (a child of this process); ``start``
    starts it; ``delete`` removes it (and kills what is left), and is called in every
    case once ``create`` has succeeded. ``host`` is the caller's terminal, by default
    the first of stderr, stdout and stdin that is one, else ``/dev/tty``.
    """
    import os

    owned = host is None
    if host is None:
        host = host_terminal()
    try:
        pid, master = _create_and_receive(create, delete)
        try:
            return _attach(pid, master, host, start, delete, stdin, stdout)
        finally:
            os.close(master)
    finally:
        if owned:
            os.close(host)


def host_terminal() -> int:
    """The caller's terminal, as runc finds it: a duplicate of stderr, stdout or stdin
    (the first that is a terminal), else ``/dev/tty`` opened. The caller closes it."""
    import os

    from corral.errors import UsageError

    for fd in (2, 1, 0):
        if os.isatty(fd):
            return os.dup(fd)
    try:
        return os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        raise UsageError(
            "process.terminal is true but corral run has no terminal to attach "
            f"(open /dev/tty: {error.strerror}); use --detach with --console-socket"
        ) from None


def _create_and_receive(
    create: Callable[[str], int], delete: Callable[[], None]
) -> tuple[int, int]:
    import os

    from corral.core.console import accept_console, listen_console

    directory = _private_directory()
    path = f"{directory}/{_SOCKET_NAME}"
    try:
        listen_fd = listen_console(path)
        try:
            pid = create(path)
            try:
                master, _ = accept_console(listen_fd, ACCEPT_SECONDS, path=path)
            except BaseException:
                delete()
                raise
        finally:
            os.close(listen_fd)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.rmdir(directory)
    return pid, master


def _private_directory() -> str:
    """A new 0700 directory for the console socket, short enough for ``sun_path``."""
    import os

    base = os.environ.get("TMPDIR") or "/tmp"
    if len(base) + 40 > _MAX_SOCKET_PATH:
        base = "/tmp"
    while True:
        directory = f"{base.rstrip('/')}/corral-console-{os.urandom(8).hex()}"
        try:
            os.mkdir(directory, 0o700)  # mkdir(2) fails on an existing name or a link
        except FileExistsError:
            continue
        return directory


def _attach(
    pid: int,
    master: int,
    host: int,
    start: Callable[[], None],
    delete: Callable[[], None],
    stdin: int,
    stdout: int,
) -> int:
    import os
    import signal
    import termios

    status: int | None = None
    previous: dict[int, object] = {}
    wake: tuple[int, int] | None = None
    old_wakeup: int | None = None
    saved: list[Any] | None = None
    try:
        saved = termios.tcgetattr(host)
        wake = wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        clear_onlcr(master)
        copy_window_size(host, master)
        previous = forward_signals(pid)
        old_wakeup = signal.set_wakeup_fd(wake_write)
        previous[SIGWINCH] = signal.signal(SIGWINCH, lambda _n, _f: copy_window_size(host, master))
        previous[SIGCHLD] = signal.signal(SIGCHLD, lambda _n, _f: None)  # wakes the poll
        termios.tcsetattr(host, termios.TCSANOW, raw_attributes(saved))
        start()
        status = copy_until_exit(master, stdin, stdout, wake_read, lambda: reap(pid))
        if status is None:  # the terminal closed before the program ended
            status = wait_exit_status(pid)
    finally:
        try:
            if saved is not None:
                # TCSADRAIN: what was copied out is written before the mode changes back.
                termios.tcsetattr(host, termios.TCSADRAIN, saved)
        except termios.error:
            pass  # the terminal is gone (hung up): nothing to restore
        if old_wakeup is not None:
            signal.set_wakeup_fd(old_wakeup)
        restore_signals(previous)
        if wake is not None:
            os.close(wake[0])
            os.close(wake[1])
        delete()
    return status


def raw_attributes(attributes: list[Any]) -> list[Any]:
    """``tcgetattr`` attributes made raw for input, output processing kept (runc's).

    No echo, no line editing, no signal keys, no CR/NL or flow-control mapping on
    input, 8-bit characters, reads return as soon as one byte is there. Pure: returns
    a new list.
    """
    import termios as t

    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attributes
    iflag &= ~(t.IGNBRK | t.BRKINT | t.PARMRK | t.ISTRIP | t.INLCR | t.IGNCR | t.ICRNL | t.IXON)
    cflag = (cflag & ~(t.CSIZE | t.PARENB)) | t.CS8
    lflag &= ~(t.ECHO | t.ECHONL | t.ICANON | t.ISIG | t.IEXTEN)
    cc = list(cc)
    cc[t.VMIN] = 1
    cc[t.VTIME] = 0
    return [iflag, oflag, cflag, lflag, ispeed, ospeed, cc]


def clear_onlcr(fd: int) -> None:
    """Stop the terminal ``fd`` from turning NL into CR NL on output (termios(3))."""
    import termios

    attributes = termios.tcgetattr(fd)
    attributes[1] &= ~termios.ONLCR
    termios.tcsetattr(fd, termios.TCSANOW, attributes)


def copy_window_size(source: int, target: int) -> None:
    """Give the terminal ``target`` the size of ``source``, unless that is unknown (0x0).

    Errors are ignored: this runs from a signal handler, and a terminal gone is
    noticed by the copy loop.
    """
    from corral.core.console import set_window_size, window_size

    try:
        rows, columns = window_size(source)
        if rows or columns:
            set_window_size(target, rows, columns)
    except OSError:
        pass


def reap(pid: int) -> int | None:
    """The exit status of the child ``pid`` if it has ended (reaping it), else None."""
    try:
        found, status = fastos.waitpid(pid, WNOHANG)
    except ChildProcessError:
        return 255
    if found == 0:
        return None
    return exit_status(status)


def copy_until_exit(
    master: int,
    stdin: int,
    stdout: int,
    wake_fd: int,
    reaped: Callable[[], int | None],
    *,
    drain_seconds: float = DRAIN_SECONDS,
) -> int | None:
    """Copy ``stdin`` to ``master`` and ``master`` to ``stdout`` until the program ends.

    ``reaped()`` is asked after every wake-up (``wake_fd`` becomes readable on a
    signal); once it returns a status, the master is drained and the status returned.
    Returns None if the master closed (EIO or EOF: no process holds the slave) first.
    ``stdin`` hitting EOF just stops the input, as with runc.
    """
    import os
    import select
    import time

    os.set_blocking(master, False)
    pending = bytearray()
    reading_stdin = _is_open(stdin)
    writing_stdout = True
    status: int | None = None
    deadline: float | None = None
    while True:
        if status is None:
            status = reaped()
            if status is not None:
                deadline = time.monotonic() + drain_seconds
        timeout: int | None = None
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return status
            timeout = int(remaining * 1000) + 1
        poller = select.poll()
        poller.register(wake_fd, select.POLLIN)
        poller.register(master, select.POLLIN | (select.POLLOUT if pending else 0))
        if reading_stdin and len(pending) < _MAX_PENDING:
            poller.register(stdin, select.POLLIN)
        for fd, events in poller.poll(timeout):
            if fd == wake_fd:
                _drain(wake_fd)
            elif fd == stdin:
                data = _read(stdin)
                if data:
                    pending += data
                elif data is not None:
                    reading_stdin = False  # EOF or an error: no more input
            elif fd == master:
                if pending and events & select.POLLOUT:
                    try:
                        del pending[: os.write(master, pending)]
                    except BlockingIOError:
                        pass
                    except OSError:
                        pending.clear()  # EIO: nobody reads the terminal any more
                if events & ~select.POLLOUT:
                    try:
                        data = os.read(master, _CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""  # EIO (Linux): every slave descriptor is closed
                    if not data:
                        return status
                    if writing_stdout:
                        writing_stdout = _write_all(stdout, data)


def _is_open(fd: int) -> bool:
    import os

    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _read(fd: int) -> bytes | None:
    """What ``fd`` has; b"" at EOF or on an error; None when a non-blocking ``fd``
    has nothing yet (a spurious wake-up, not an EOF)."""
    import os

    try:
        return os.read(fd, _CHUNK)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _write_all(fd: int, data: bytes) -> bool:
    """Write all of ``data``, waiting when ``fd`` is non-blocking; False once it fails."""
    import os
    import select

    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
        except OSError:
            return False  # the caller's terminal hung up: the program still runs
    return True


def _drain(fd: int) -> None:
    import os

    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


# -- plain run ------------------------------------------------------------------------------


# -- systemd socket activation ------------------------------------------------------------


def listen_fds(
    environ: Mapping[str, str], preserve_fds: int, *, pid: int | None = None
) -> tuple[int, list[str]]:
    """How many fds from 3 the program keeps, and the env entries to add to it.

    runc passes systemd's socket activation through (sd_listen_fds(3)): when the
    runtime's own environment has ``LISTEN_FDS=n`` and ``LISTEN_PID`` is the runtime's
    pid (``pid``, default this process's), fds 3 .. 3+n-1 stay open in the container
    and its environment gets ``LISTEN_FDS=n`` and ``LISTEN_PID=1`` (the program is pid
    1 of its namespace). The ``--preserve-fds`` fds follow them: 3+n .. 3+n+m-1.
    Anything else (no or another pid, n not a number or not above 0) passes nothing,
    as go-systemd's ``activation.Files`` decides; ``LISTEN_FDNAMES`` is not passed.
    The entries go after ``process.env``: a later entry wins.
    """
    count = _go_atoi(environ.get("LISTEN_FDS", ""))
    listen_pid = _go_atoi(environ.get("LISTEN_PID", ""))
    if pid is None:
        pid = fastos.getpid()
    if count is None or count <= 0 or listen_pid != pid:
        return preserve_fds, []
    return count + preserve_fds, [f"LISTEN_FDS={count}", "LISTEN_PID=1"]


def _go_atoi(text: str) -> int | None:
    """Go's ``strconv.Atoi``: an optional sign and ASCII digits, fitting 64 bits."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    value = int(text)
    if not -(2**63) <= value < 2**63:
        return None
    return value
