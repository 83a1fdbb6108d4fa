"""The container's terminal: pty pairs, window size, controlling terminal, console socket.

The console-socket tests play both sides: corral's sender and, in tests/support/recvtty,
a receiver that checks what containerd's go-runc checks.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from corral.core.console import (
    MAX_NAME,
    connect_console,
    make_controlling_terminal,
    open_pty,
    send_console,
    send_console_fd,
    set_window_size,
    window_size,
)
from corral.errors import CreateError
from support.recvtty import ConsoleReceiver, receive_console

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def pty() -> Iterator[tuple[int, int, str]]:
    master, slave, name = open_pty()
    yield master, slave, name
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass  # a test closed it


@pytest.fixture
def short_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # sun_path holds 104-108 bytes: pytest's tmp_path can be longer than that.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cs") as directory:
        yield directory


def read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        assert chunk, f"end of file after {data!r}"
        data += chunk
    return data


def test_open_pty_gives_a_terminal_pair(pty: tuple[int, int, str]) -> None:
    master, slave, name = pty
    assert os.isatty(master)
    assert os.isatty(slave)
    assert name == os.ttyname(slave)
    assert name.startswith("/dev/")
    assert os.stat(name).st_rdev == os.fstat(slave).st_rdev
    # Both ends are close-on-exec, like everything Python opens.
    assert not os.get_inheritable(master)
    assert not os.get_inheritable(slave)


def test_master_to_slave_and_back(pty: tuple[int, int, str]) -> None:
    master, slave, _ = pty
    os.write(master, b"hello\n")
    assert read_exactly(slave, 6) == b"hello\n"  # canonical mode: one line
    os.write(slave, b"out\n")
    # The master echoes the input first; output processing (ONLCR) turns \n into \r\n.
    assert read_exactly(master, 7 + 5) == b"hello\r\nout\r\n"


def test_window_size_round_trip(pty: tuple[int, int, str]) -> None:
    master, slave, _ = pty
    set_window_size(master, 40, 132)
    assert window_size(slave) == (40, 132)
    set_window_size(slave, 25, 80)
    assert window_size(master) == (25, 80)


def test_send_console_delivers_a_working_master(pty: tuple[int, int, str], short_dir: str) -> None:
    master, slave, _ = pty
    path = os.path.join(short_dir, "console.sock")
    receiver = ConsoleReceiver(path)
    send_console(path, master, "/dev/ptmx")
    received, name = receiver.result()
    try:
        assert name == "/dev/ptmx"
        assert received != master
        assert os.fstat(received).st_rdev == os.fstat(master).st_rdev
        os.write(received, b"through the socket\n")
        assert read_exactly(slave, 19) == b"through the socket\n"
    finally:
        os.close(received)
    # The sender keeps its master: it is the caller's to close.
    os.fstat(master)


def test_connect_early_send_later(pty: tuple[int, int, str], short_dir: str) -> None:
    master, slave, _ = pty
    path = os.path.join(short_dir, "c.sock")
    receiver = ConsoleReceiver(path)
    sock_fd = connect_console(path)
    try:
        assert not os.get_inheritable(sock_fd)
        send_console_fd(sock_fd, master, "pty-name", path=path)
        os.fstat(sock_fd)  # still open: the caller closes it
    finally:
        os.close(sock_fd)
    received, name = receiver.result()
    try:
        assert name == "pty-name"
        os.write(slave, b"x\n")
        assert read_exactly(received, 3) == b"x\r\n"
    finally:
        os.close(received)


def test_receive_console_directly(pty: tuple[int, int, str], short_dir: str) -> None:
    # receive_console blocks, so the sender runs in a child process.
    master, slave, _ = pty
    path = os.path.join(short_dir, "r.sock")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        status = 1
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    send_console(path, master, "/dev/ptmx")
                except CreateError:
                    time.sleep(0.01)  # the parent is not listening yet
                else:
                    status = 0
                    break
        finally:
            os._exit(status)
    received, name = receive_console(path, timeout=10)
    assert os.waitpid(pid, 0)[1] == 0
    try:
        assert name == "/dev/ptmx"
        os.write(received, b"r\n")
        assert read_exactly(slave, 2) == b"r\n"
    finally:
        os.close(received)


def test_connection_refused(short_dir: str) -> None:
    path = os.path.join(short_dir, "dead.sock")
    # A socket file nobody listens on any more.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.close()
    with pytest.raises(CreateError) as info:
        send_console(path, 0, "/dev/ptmx")
    assert str(info.value) == f"console socket {path}: Connection refused"


def test_missing_socket(short_dir: str) -> None:
    path = os.path.join(short_dir, "absent.sock")
    with pytest.raises(CreateError) as info:
        connect_console(path)
    assert str(info.value) == f"console socket {path}: No such file or directory"


def test_path_too_long_for_a_socket() -> None:
    path = "/tmp/" + "x" * 200
    with pytest.raises(CreateError) as info:
        connect_console(path)
    assert str(info.value).startswith(f"console socket {path}: ")
    assert "too long" in str(info.value)


@pytest.mark.parametrize("name", ["", "n" * MAX_NAME])
def test_name_must_fit_the_receiver(pty: tuple[int, int, str], short_dir: str, name: str) -> None:
    path = os.path.join(short_dir, "n.sock")
    receiver = ConsoleReceiver(path, timeout=2)
    with pytest.raises(CreateError) as info:
        send_console(path, pty[0], name)
    assert str(info.value) == (
        f"console socket {path}: the terminal's name must be 1-{MAX_NAME - 1} bytes"
    )
    with pytest.raises((OSError, ValueError, TimeoutError)):
        receiver.result()  # the connection closed without a message


def test_make_controlling_terminal(pty: tuple[int, int, str]) -> None:
    master, slave, name = pty
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(report_r)
            os.setsid()
            make_controlling_terminal(slave)
            facts = [
                os.ttyname(0),
                os.ttyname(1),
                os.ttyname(2),
                str(os.tcgetpgrp(0) == os.getpid()),
                str(all(os.get_inheritable(fd) for fd in (0, 1, 2))),
                str(_is_open(slave)),
            ]
            tty = os.open("/dev/tty", os.O_RDWR)  # only with a controlling terminal
            os.write(tty, b"via /dev/tty\n")
            os.write(report_w, "\n".join(facts).encode())
        finally:
            os._exit(0)
    os.close(report_w)
    with os.fdopen(report_r, "rb") as report:
        facts = report.read().decode().split("\n")
    assert os.waitpid(pid, 0)[1] == 0
    assert facts == [name, name, name, "True", "True", "False"]
    assert read_exactly(master, 14) == b"via /dev/tty\r\n"


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_make_controlling_terminal_needs_a_session(pty: tuple[int, int, str]) -> None:
    # The test process leads no new session (or already has a terminal): TIOCSCTTY fails
    # rather than silently doing nothing.
    _, slave, _ = pty
    if os.getsid(0) == os.getpid():
        pytest.skip("the test process leads its own session")
    spare = os.dup(slave)
    try:
        with pytest.raises(OSError):
            make_controlling_terminal(spare)
    finally:
        os.close(spare)
