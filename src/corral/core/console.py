"""The container's terminal and the ``--console-socket`` protocol.

With ``process.terminal`` the container's process gets a pseudo-terminal as its
controlling terminal and stdio, and the runtime hands the master side to its caller:
it connects to the unix stream socket named by ``--console-socket`` and sends the
master as one SCM_RIGHTS descriptor (unix(7)) in a single message whose payload is a
name. That is what runc does and what containerd's go-runc receives: it reads one
message of under 4096 bytes carrying exactly one descriptor, and uses the payload only
as the file's name (runc sends the master's path, e.g. ``/dev/ptmx``). The payload
must not be empty: on a stream socket the descriptor rides on the data, and no data
means no message at all.

The socket is connected by the runtime, in the runtime's mount namespace, before the
init pivots into the container's root, where the path no longer resolves
(:func:`connect_console`); the init sends on that descriptor later
(:func:`send_console_fd`). :func:`send_console` does both for callers that can.
The receiving side (:func:`listen_console`, :func:`accept_console`) is what ``corral
run`` uses to take the terminal itself, and checks what go-runc checks.

:func:`check_console_flags` holds runc's rules for ``--console-socket``: a terminal
needs a receiver when the runtime detaches (``create``, ``run --detach``), and the flag
means nothing without a terminal or when ``run`` stays attached (it then receives the
master itself).

Only POSIX calls are used (openpty(3), ttyname(3), TIOCSWINSZ, TIOCSCTTY), so Linux
and FreeBSD share this module. ``socket`` costs 2-6 ms to import (it pulls in
``enum``), so the C module ``_socket`` is used, and only inside the functions that
need it.
"""

from __future__ import annotations

import os

from corral.errors import ConfigError, CreateError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

MAX_NAME = 4096  # go-runc rejects a payload of this many bytes or more


def check_console_flags(terminal: bool, console_socket: str | None, *, detached: bool) -> None:
    """runc's rules for ``process.terminal`` and ``--console-socket`` (its words, with
    corral's name): ``detached`` is true for ``create`` and ``run --detach``."""
    if detached and terminal and not console_socket:
        raise ConfigError(
            "process.terminal",
            "cannot allocate tty if corral will detach without setting console socket",
        )
    if console_socket and not terminal:
        raise ConfigError(
            "process.terminal",
            "cannot use console socket if corral will not detach or allocate tty",
        )
    if console_socket and not detached:
        raise UsageError(
            "--console-socket: cannot use console socket if corral will not detach or allocate tty"
        )


def open_pty() -> tuple[int, int, str]:
    """Allocate a pseudo-terminal: ``(master, slave, slave path)``, both close-on-exec.

    openpty(3) opens ``/dev/ptmx`` (Linux: of whatever devpts the caller's root shows;
    FreeBSD: posix_openpt) and unlocks the slave.
    """
    master, slave = os.openpty()
    try:
        return master, slave, os.ttyname(slave)
    except OSError:
        os.close(master)
        os.close(slave)
        raise


def set_window_size(fd: int, height: int, width: int) -> None:
    """Set the terminal size (rows, columns) of the terminal ``fd`` refers to (tty_ioctl(4))."""
    import fcntl
    import struct
    import termios

    # struct winsize: unsigned short ws_row, ws_col, ws_xpixel, ws_ypixel.
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def window_size(fd: int) -> tuple[int, int]:
    """The terminal size of ``fd`` as ``(rows, columns)`` (TIOCGWINSZ)."""
    import fcntl
    import struct
    import termios

    packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    rows, columns, _, _ = struct.unpack("HHHH", packed)
    return rows, columns


def make_controlling_terminal(slave: int) -> None:
    """Make ``slave`` the caller's controlling terminal and its stdin, stdout and stderr.

    The caller must already lead a new session (setsid(2)): TIOCSCTTY only gives a
    terminal to a session leader without one. The argument 0 does not steal a terminal
    that is some other session's (tty_ioctl(4)).
    """
    import fcntl
    import termios

    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        if slave == target:
            os.set_inheritable(slave, True)  # os.openpty made it close-on-exec
        else:
            os.dup2(slave, target)  # the copy is inheritable: the program exec'd keeps it
    if slave > 2:
        os.close(slave)


def hand_over_pty(
    console_fd: int,
    master: int,
    slave: int,
    name: str,
    size: tuple[int, int] | None,
    *,
    prepare_slave: Callable[[int], object] | None = None,
) -> None:
    """Send a new pty's ``master`` over ``console_fd`` and make ``slave`` this session's
    controlling terminal and stdio: the last step of every platform's terminal set-up,
    for the init and for an exec'd process alike.

    ``size`` (height, width) is set on the master first when both are non-zero;
    ``prepare_slave(slave)`` runs before the master is sent (e.g. fchown, a bind on
    ``/dev/console``). ``master`` and ``console_fd`` are closed in every case,
    ``slave`` if anything fails.
    """
    try:
        if size is not None and size[0] and size[1]:
            set_window_size(master, size[0], size[1])
        if prepare_slave is not None:
            prepare_slave(slave)
        send_console_fd(console_fd, master, name)
    except BaseException:
        os.close(slave)
        raise
    finally:
        os.close(master)
        os.close(console_fd)
    make_controlling_terminal(slave)


def connect_console(path: str) -> int:
    """Connect to the console socket at ``path``; return the connected descriptor.

    The descriptor is close-on-exec; the caller passes it on to whoever calls
    :func:`send_console_fd`.
    """
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as error:
        sock.close()
        raise CreateError(f"console socket {path}: {_reason(error)}") from None
    return sock.detach()


def send_console_fd(sock_fd: int, master_fd: int, name: str, *, path: str = "") -> None:
    """Send ``master_fd`` over the connected socket ``sock_fd``, with ``name`` as payload.

    ``path`` only names the socket in errors. ``sock_fd`` stays open.
    """
    import _socket
    import struct

    where = f"console socket {path}" if path else "console socket"
    payload = name.encode()
    if not payload or len(payload) >= MAX_NAME:
        raise CreateError(f"{where}: the terminal's name must be 1-{MAX_NAME - 1} bytes")
    sock = _socket.socket(fileno=sock_fd)
    try:
        rights = struct.pack("i", master_fd)  # the cmsg data: an array of C ints
        sent = sock.sendmsg([payload], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        if sent != len(payload):
            raise CreateError(f"{where}: sent {sent} of {len(payload)} bytes")
    except OSError as error:
        raise CreateError(f"{where}: {_reason(error)}") from None
    finally:
        sock.detach()  # the descriptor belongs to the caller


def send_console(socket_path: str, master_fd: int, name: str) -> None:
    """Connect to ``socket_path``, send ``master_fd`` named ``name``, and disconnect."""
    sock_fd = connect_console(socket_path)
    try:
        send_console_fd(sock_fd, master_fd, name, path=socket_path)
    finally:
        os.close(sock_fd)


def listen_console(path: str) -> int:
    """A unix stream socket listening at ``path`` (which must not exist); its descriptor.

    The descriptor is close-on-exec. The backlog of one is enough: one init connects.
    """
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(1)
    except OSError as error:
        sock.close()
        raise CreateError(f"console socket {path}: {_reason(error)}") from None
    return sock.detach()


def accept_console(listen_fd: int, timeout: float, *, path: str = "") -> tuple[int, str]:
    """Accept one sender on ``listen_fd`` and return ``(master, name)`` it sent.

    ``listen_fd`` stays open. Waits at most ``timeout`` seconds for the connection and
    for its message.
    """
    import _socket

    where = f"console socket {path}" if path else "console socket"
    listener = _socket.socket(fileno=listen_fd)
    try:
        listener.settimeout(timeout)
        # socket.socket.accept() is a wrapper of this C method (Lib/socket.py); the
        # wrapper's module costs an enum import.
        connection_fd, _ = listener._accept()  # type: ignore[attr-defined]
    except OSError as error:
        raise CreateError(f"{where}: no terminal received: {_reason(error)}") from None
    finally:
        listener.detach()
    try:
        return receive_console_fd(connection_fd, timeout, path=path)
    finally:
        os.close(connection_fd)


def receive_console_fd(sock_fd: int, timeout: float, *, path: str = "") -> tuple[int, str]:
    """Read the one message on the connected ``sock_fd``: ``(descriptor, name)``.

    As go-runc: one message under ``MAX_NAME`` bytes carrying exactly one descriptor.
    The descriptor received is close-on-exec. ``sock_fd`` stays open.
    """
    import _socket
    import struct

    where = f"console socket {path}" if path else "console socket"
    int_size = struct.calcsize("i")
    sock = _socket.socket(fileno=sock_fd)
    try:
        sock.settimeout(timeout)
        # Room for a few descriptors, so an unexpected extra one is seen and closed
        # rather than silently cut off (MSG_CTRUNC).
        payload, ancillary, flags, _ = sock.recvmsg(
            MAX_NAME, _socket.CMSG_SPACE(int_size * 4), getattr(_socket, "MSG_CMSG_CLOEXEC", 0)
        )
    except OSError as error:
        raise CreateError(f"{where}: no terminal received: {_reason(error)}") from None
    finally:
        sock.detach()
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(data) - len(data) % int_size
            fds.extend(struct.unpack(f"{usable // int_size}i", data[:usable]))
    for fd in fds:
        os.set_inheritable(fd, False)  # where MSG_CMSG_CLOEXEC is missing
    if flags & _socket.MSG_CTRUNC or len(fds) != 1 or not payload or len(payload) >= MAX_NAME:
        for fd in fds:
            os.close(fd)
        raise CreateError(
            f"{where}: expected one terminal and its name, got {len(fds)} descriptors "
            f"and {len(payload)} bytes"
        )
    return fds[0], payload.decode(errors="replace")


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
