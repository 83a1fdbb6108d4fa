"""A console-socket receiver for tests, playing containerd's part.

:func:`receive_console` listens on a unix stream socket, accepts one connection and
returns the descriptor sent in its one message (SCM_RIGHTS) with the message's
payload, checking what go-runc checks: exactly one descriptor, a payload under 4096
bytes. :class:`ConsoleReceiver` does the same on a thread, for a test that runs the
sender (``corral create --console-socket``) in the foreground.
"""

from __future__ import annotations

import array
import os
import socket
import threading

MAX_NAME = 4096


def listen(path: str) -> socket.socket:
    """A unix stream socket listening at ``path`` (which must not exist)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(path)
        server.listen(1)
    except BaseException:
        server.close()
        raise
    return server


def accept_console(server: socket.socket, timeout: float) -> tuple[int, str]:
    """Accept one connection on ``server`` and receive the descriptor it sends."""
    server.settimeout(timeout)
    connection, _ = server.accept()
    with connection:
        connection.settimeout(timeout)
        fds = array.array("i")
        payload, ancillary, flags, _ = connection.recvmsg(
            MAX_NAME, socket.CMSG_SPACE(fds.itemsize * 4)
        )
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        for fd in fds:
            os.set_inheritable(fd, False)
        if flags & socket.MSG_CTRUNC or len(fds) != 1 or len(payload) >= MAX_NAME:
            for fd in fds:
                os.close(fd)
            raise ValueError(
                f"expected one descriptor and a name, got {len(fds)} and {len(payload)} bytes"
            )
        return fds[0], payload.decode()


def receive_console(path: str, timeout: float = 10.0) -> tuple[int, str]:
    """Listen at ``path``, accept one sender, return ``(received fd, payload)``."""
    with listen(path) as server:
        return accept_console(server, timeout)


class ConsoleReceiver:
    """Listen at ``path`` now and receive one console on a thread.

    The socket is bound before the constructor returns, so a sender started afterwards
    cannot find it missing. :meth:`result` joins the thread and returns
    ``(fd, payload)`` or raises what the thread raised.
    """

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self._server = listen(path)
        self._timeout = timeout
        self._result: tuple[int, str] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = accept_console(self._server, self._timeout)
        except BaseException as error:
            self._error = error
        finally:
            self._server.close()

    def result(self) -> tuple[int, str]:
        self._thread.join(self._timeout + 5)
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise TimeoutError(f"no console received at {self.path}")
        return self._result
