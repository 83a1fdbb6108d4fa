"""The init's terminal (corral.linux.terminal), without root.

The checks are pure. The pty is opened from the host's ``/dev/ptmx`` (no privilege
needed), and mount(2) goes to a recording fake that resolves ``/proc/self/fd/N`` to
the file it names, so the tests see where ``/dev/console`` would be bound. The whole
:func:`setup_terminal` runs in a forked child playing the init, with
tests/support/recvtty playing containerd.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile

import pytest

from corral.core.console import window_size
from corral.errors import ConfigError, CreateError, UsageError
from corral.linux import terminal
from corral.linux.syscalls import MS_BIND, Syscalls
from corral.spec.default import default_spec
from corral.spec.model import Spec, parse_config
from support.recvtty import ConsoleReceiver

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any


def make_spec(terminal_on: bool = True, console_size: object = None) -> Spec:
    document = default_spec(["sh"])
    document["process"]["terminal"] = terminal_on
    if console_size is not None:
        document["process"]["consoleSize"] = console_size
    return parse_config(document)


class RecordingMounts(Syscalls):
    """mount(2) recorded, with /proc/self/fd/N paths resolved to what they name."""

    def __init__(self, fail: int = 0) -> None:
        self.mounts: list[tuple[str, str, int]] = []
        self.fail = fail

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        if self.fail:
            raise OSError(self.fail, f"mount {target}: {os.strerror(self.fail)}")
        self.mounts.append((_resolve(source or ""), _resolve(target), flags))


def _resolve(path: str) -> str:
    if path.startswith("/proc/self/fd/"):
        return os.readlink(path)
    return path


@pytest.fixture
def short_dir() -> Iterator[str]:
    # sun_path holds 104-108 bytes: pytest's tmp_path can be longer than that.
    with tempfile.TemporaryDirectory(prefix="ct") as directory:
        yield directory


@pytest.fixture
def dev_dir(tmp_path: Path) -> str:
    """A directory standing for the container's /dev: its ptmx leads to the host's."""
    dev = tmp_path / "dev"
    dev.mkdir()
    os.symlink("/dev/ptmx", dev / "ptmx")
    return str(dev)


def read_until(fd: int, wanted: bytes, limit: int = 4096) -> bytes:
    data = b""
    while wanted not in data:
        chunk = os.read(fd, limit)
        assert chunk, f"EOF before {wanted!r}: {data!r}"
        data += chunk
    return data


# -- check_terminal, console_size ----------------------------------------------------------


@pytest.mark.parametrize(
    ("terminal_on", "socket", "detached", "error", "message"),
    [
        (
            True,
            None,
            True,
            ConfigError,
            "config.json: process.terminal: cannot allocate tty if corral will detach "
            "without setting console socket",
        ),
        (
            False,
            "/run/s.sock",
            True,
            ConfigError,
            "config.json: process.terminal: cannot use console socket if corral will not "
            "detach or allocate tty",
        ),
        (
            False,
            "/run/s.sock",
            False,
            ConfigError,
            "config.json: process.terminal: cannot use console socket if corral will not "
            "detach or allocate tty",
        ),
        (
            True,
            "/run/s.sock",
            False,
            UsageError,
            "--console-socket: cannot use console socket if corral will not detach or allocate tty",
        ),
    ],
)
def test_console_socket_rules_are_runcs(
    terminal_on: bool, socket: str | None, detached: bool, error: type, message: str
) -> None:
    with pytest.raises(error) as info:
        terminal.check_terminal(make_spec(terminal_on), socket, detached)
    assert type(info.value) is error
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("terminal_on", "socket", "detached"),
    [
        (True, "/run/s.sock", True),  # create, run -d: the receiver gets the master
        (True, None, False),  # run: corral attaches the caller's terminal itself
        (False, None, True),
        (False, None, False),
    ],
)
def test_console_socket_rules_accept(terminal_on: bool, socket: str | None, detached: bool) -> None:
    terminal.check_terminal(make_spec(terminal_on), socket, detached)


@pytest.mark.parametrize(
    ("size", "path", "message"),
    [
        ({"height": 65536, "width": 80}, "height", "65536 is above the maximum 65535"),
        ({"height": 24, "width": -1}, "width", "-1 is below the minimum 0"),
        ({"height": "24", "width": 80}, "height", 'expected an integer, got "24"'),
        ({"height": 24, "width": True}, "width", "expected an integer, got true"),
        ({"height": 24.5, "width": 80}, "height", "expected an integer, got 24.5"),
        ({"width": 80}, "height", "required field is missing"),
        ({"height": 24}, "width", "required field is missing"),
    ],
)
def test_console_size_out_of_range_names_the_field(
    size: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        terminal.check_terminal(make_spec(True, size), "/run/s.sock", True)
    assert str(info.value) == f"config.json: process.consoleSize.{path}: {message}"


def test_console_size_must_be_an_object() -> None:
    with pytest.raises(ConfigError) as info:
        terminal.check_terminal(make_spec(True, [24, 80]), "/run/s.sock", True)
    assert str(info.value) == "config.json: process.consoleSize: expected an object, got an array"


def test_console_size_is_ignored_without_a_terminal() -> None:
    # config.md: runtimes MUST ignore consoleSize if terminal is false or unset.
    spec = make_spec(False, {"height": -5, "width": "wide"})
    terminal.check_terminal(spec, None, True)
    assert terminal.console_size(spec) is None


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ({"height": 24, "width": 80}, (24, 80)),
        ({"height": 0, "width": 0}, (0, 0)),
        ({"height": 65535, "width": 65535}, (65535, 65535)),
        (None, None),
    ],
)
def test_console_size(size: dict[str, int] | None, expected: tuple[int, int] | None) -> None:
    assert terminal.console_size(make_spec(True, size)) == expected


# -- the pty -------------------------------------------------------------------------------


def test_open_container_pty_gives_a_numbered_pair() -> None:
    master, slave, number = terminal.open_container_pty("/dev/ptmx")
    try:
        assert os.ttyname(slave) == f"/dev/pts/{number}"
        assert not os.get_inheritable(master)
        assert not os.get_inheritable(slave)
        os.write(master, b"in\n")
        assert read_until(slave, b"in\n") == b"in\n"
    finally:
        os.close(master)
        os.close(slave)


def test_without_tiocgptpeer_the_slave_is_opened_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An ioctl number no tty driver knows: ENOTTY, as a kernel before 4.13 answers.
    monkeypatch.setattr(terminal, "TIOCGPTPEER", 0x54FE)
    master, slave, number = terminal.open_container_pty("/dev/ptmx")
    try:
        assert os.ttyname(slave) == f"/dev/pts/{number}"
        assert not os.get_inheritable(slave)
        os.write(slave, b"out\n")
        assert read_until(master, b"out").startswith(b"out")
    finally:
        os.close(master)
        os.close(slave)


def test_a_ptmx_that_is_not_the_multiplexer_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "ptmx"
    fake.write_text("")
    with pytest.raises(OSError) as info:
        terminal.open_container_pty(str(fake))
    assert info.value.errno == errno.ENOTTY
    assert str(info.value) == f"[Errno {errno.ENOTTY}] {fake}: not the pty multiplexer (5:2)"
    with pytest.raises(OSError, match=r"/dev/null: not the pty multiplexer"):
        terminal.open_container_pty("/dev/null")


def test_a_missing_ptmx_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        terminal.open_container_pty(str(tmp_path / "ptmx"))
    assert info.value.strerror == f"open {tmp_path}/ptmx: No such file or directory"


# -- /dev/console ----------------------------------------------------------------------------


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, int, int]]:
    master, slave, number = terminal.open_container_pty("/dev/ptmx")
    yield master, slave, number
    os.close(master)
    os.close(slave)


def test_console_is_created_and_bound_through_fds(
    pty_pair: tuple[int, int, int], dev_dir: str
) -> None:
    _, slave, number = pty_pair
    sc = RecordingMounts()
    terminal.mount_console(sc, slave, number, dev_dir)
    console_file = os.path.join(dev_dir, "console")
    assert stat.S_ISREG(os.lstat(console_file).st_mode)
    assert os.path.getsize(console_file) == 0
    assert sc.mounts == [(f"/dev/pts/{number}", console_file, MS_BIND)]


def test_an_existing_console_node_is_mounted_over_not_opened(
    pty_pair: tuple[int, int, int], dev_dir: str
) -> None:
    _, slave, number = pty_pair
    console_file = os.path.join(dev_dir, "console")
    os.mkfifo(console_file)  # opening a fifo for reading would block: O_PATH does not
    sc = RecordingMounts()
    terminal.mount_console(sc, slave, number, dev_dir)
    assert stat.S_ISFIFO(os.lstat(console_file).st_mode)
    assert sc.mounts == [(f"/dev/pts/{number}", console_file, MS_BIND)]


@pytest.mark.parametrize("kind", ["symlink", "directory"])
def test_a_console_symlink_or_directory_is_refused(
    pty_pair: tuple[int, int, int], dev_dir: str, tmp_path: Path, kind: str
) -> None:
    _, slave, number = pty_pair
    console_file = os.path.join(dev_dir, "console")
    if kind == "symlink":
        target = tmp_path / "elsewhere"
        target.write_text("host file\n")
        os.symlink(target, console_file)
    else:
        os.mkdir(console_file)
    sc = RecordingMounts()
    with pytest.raises(OSError) as info:
        terminal.mount_console(sc, slave, number, dev_dir)
    assert str(info.value) == (
        f"[Errno {errno.EEXIST}] {console_file}: is a {kind}, cannot bind the terminal on it"
    )
    assert sc.mounts == []


def test_a_failed_console_mount_says_what_failed(
    pty_pair: tuple[int, int, int], dev_dir: str
) -> None:
    _, slave, number = pty_pair
    with pytest.raises(PermissionError) as info:
        terminal.mount_console(RecordingMounts(fail=errno.EPERM), slave, number, dev_dir)
    assert info.value.strerror == f"bind the terminal on {dev_dir}/console: Operation not permitted"


# -- setup_terminal, in a child playing the init -------------------------------------------------


def run_as_init(
    dev_dir: str,
    socket_path: str,
    size: tuple[int, int] | None,
    owner: tuple[int, int] | None = None,
) -> tuple[dict[str, Any], int]:
    """Fork a child that connects, calls setup_terminal and reports what it sees.

    The child then echoes one line read from its new stdin to its new stdout. Returns
    the report and the child's pid (still running until it has echoed).
    """
    report_read, report_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(report_read)
            os.setsid()
            sock = terminal.connect_early(socket_path)
            sc = RecordingMounts()
            terminal.setup_terminal(sc, sock, size, owner=owner, dev=dev_dir)
            facts: dict[str, Any] = {
                "ttys": [os.ttyname(fd) for fd in (0, 1, 2)],
                "ctty": os.tcgetpgrp(0) == os.getpid(),
                "size": list(window_size(0)),
                "socket_closed": not _is_open(sock),
                "mounts": sc.mounts,
                "owner": list(os.stat(os.ttyname(0))[4:6]),
                "open_ptys": _open_ptmx_count(),
            }
            os.write(report_write, json.dumps(facts).encode())
            os.close(report_write)
            line = os.read(0, 100)
            os.write(1, b"echo:" + line)
            code = 0
        except BaseException as error:
            os.write(report_write, json.dumps({"error": str(error)}).encode())
        finally:
            os._exit(code)
    os.close(report_write)
    with os.fdopen(report_read, "rb") as report:
        return json.loads(report.read()), pid


def finish(master: int, pid: int) -> None:
    """Let the child of :func:`run_as_init` echo its line and exit; check it did."""
    os.write(master, b"x\n")
    read_until(master, b"echo:x\r\n")
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def _same_file(fd: int, inode: int) -> bool:
    """Whether ``fd`` is still open on ``inode`` (a thread may reuse a closed number)."""
    try:
        return os.fstat(fd).st_ino == inode
    except OSError:
        return False


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _open_ptmx_count() -> int:
    """How many of this process's fds are a pty master (the init must keep none)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            rdev = os.stat(f"/proc/self/fd/{name}").st_rdev
        except OSError:
            continue
        if (os.major(rdev), os.minor(rdev)) == terminal.PTMX_DEVICE:
            count += 1
    return count


def test_setup_terminal_sends_the_master_and_takes_the_slave(dev_dir: str, short_dir: str) -> None:
    path = os.path.join(short_dir, "console.sock")
    receiver = ConsoleReceiver(path)
    facts, pid = run_as_init(dev_dir, path, (24, 91))
    master, name = receiver.result()
    try:
        assert "error" not in facts, facts
        assert name == "/dev/ptmx"  # what runc sends
        tty = facts["ttys"][0]
        assert tty.startswith("/dev/pts/")
        assert facts["ttys"] == [tty, tty, tty]
        assert facts["ctty"] is True
        assert facts["size"] == [24, 91]
        assert window_size(master) == (24, 91)
        assert facts["socket_closed"] is True
        assert facts["open_ptys"] == 0  # the master went away with the message
        assert facts["mounts"] == [[tty, f"{dev_dir}/console", MS_BIND]]
        assert facts["owner"] == [os.getuid(), os.getgid()]
        os.write(master, b"typed\n")
        # The line discipline echoes the input, then ONLCR makes the output's NL a CR NL.
        assert read_until(master, b"echo:typed\r\n") == b"typed\r\necho:typed\r\n"
        # Reaped before the master is closed: closing it hangs the terminal up, and the
        # kernel sends SIGHUP to the session leader whose controlling terminal it is
        # (the child, between its echo and its _exit).
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    finally:
        os.close(master)


@pytest.mark.parametrize("size", [None, (0, 80), (24, 0)])
def test_no_or_half_a_console_size_leaves_the_size_alone(
    dev_dir: str, short_dir: str, size: tuple[int, int] | None
) -> None:
    path = os.path.join(short_dir, "console.sock")
    receiver = ConsoleReceiver(path)
    facts, pid = run_as_init(dev_dir, path, size)
    master, _ = receiver.result()
    try:
        assert facts["size"] == [0, 0]
        finish(master, pid)
    finally:
        os.close(master)


def test_owner_is_given_the_slave(dev_dir: str, short_dir: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    path = os.path.join(short_dir, "console.sock")
    receiver = ConsoleReceiver(path)
    facts, pid = run_as_init(dev_dir, path, None, owner=(1234, 5678))
    master, _ = receiver.result()
    try:
        assert facts["owner"] == [1234, 5678]
        finish(master, pid)
    finally:
        os.close(master)


def test_setup_terminal_closes_the_socket_when_the_pty_fails(
    short_dir: str, tmp_path: Path
) -> None:
    path = os.path.join(short_dir, "console.sock")
    receiver = ConsoleReceiver(path, timeout=5)
    sock = terminal.connect_early(path)
    inode = os.fstat(sock).st_ino
    with pytest.raises(FileNotFoundError):
        terminal.setup_terminal(RecordingMounts(), sock, None, dev=str(tmp_path))
    assert not _same_file(sock, inode)
    with pytest.raises(ValueError, match="expected one descriptor"):
        receiver.result()  # the connection closed without a message (not a timeout)


def test_setup_terminal_closes_everything_when_the_mount_fails(
    dev_dir: str, short_dir: str
) -> None:
    path = os.path.join(short_dir, "console.sock")
    receiver = ConsoleReceiver(path, timeout=5)
    sock = terminal.connect_early(path)
    inode = os.fstat(sock).st_ino
    before = _open_ptmx_count()
    with pytest.raises(PermissionError):
        terminal.setup_terminal(RecordingMounts(fail=errno.EPERM), sock, None, dev=dev_dir)
    assert not _same_file(sock, inode)
    assert _open_ptmx_count() == before
    with pytest.raises(ValueError, match="expected one descriptor"):
        receiver.result()


def test_connect_early_reports_a_missing_socket(short_dir: str) -> None:
    path = os.path.join(short_dir, "absent.sock")
    with pytest.raises(CreateError) as info:
        terminal.connect_early(path)
    assert str(info.value) == f"console socket {path}: No such file or directory"
