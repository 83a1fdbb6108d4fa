"""``corral run`` with a terminal, the console-socket receiver, and LISTEN_FDS.

:func:`run_with_terminal` is driven for real, without root: the caller's terminal is a
pty made here (the test writes on its master as a user would type), and the
"container" is a forked child that does what the init does with a console socket
(open a pty, send the master, take the slave as its terminal) and then runs a small
Python script as the program. A thread plays the user while the main thread runs
corral's loop (signal handlers only run there).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import tempfile
import termios
import threading
import time
from pathlib import Path

import pytest

from corral.core import run
from corral.core.console import (
    accept_console,
    listen_console,
    make_controlling_terminal,
    open_pty,
    send_console,
    set_window_size,
    window_size,
)
from corral.errors import ConfigError, CreateError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any


@pytest.fixture
def short_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A short TMPDIR (sun_path is ~104 bytes), checked empty afterwards."""
    with tempfile.TemporaryDirectory(prefix="rc") as directory:
        monkeypatch.setenv("TMPDIR", directory)
        yield directory


@pytest.fixture
def caller_tty() -> Iterator[tuple[int, int]]:
    """The caller's terminal: ``(master the user types on, slave corral is given)``."""
    master, slave = os.openpty()
    set_window_size(slave, 30, 100)
    yield master, slave
    os.close(master)
    os.close(slave)


def read_until(fd: int, wanted: bytes, timeout: float = 10.0) -> bytes:
    """Read ``fd`` until ``wanted`` shows up; fail after ``timeout`` seconds."""
    data = b""
    deadline = time.monotonic() + timeout
    while wanted not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise AssertionError(f"no {wanted!r} within {timeout}s: {data!r}")
        try:
            chunk = os.read(fd, 65536)
        except OSError as error:
            raise AssertionError(f"{error} before {wanted!r}: {data!r}") from None
        if not chunk:
            raise AssertionError(f"EOF before {wanted!r}: {data!r}")
        data += chunk
    return data


def read_all(fd: int) -> bytes:
    """Everything until EOF (the writer must be closed)."""
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return data


class FakeContainer:
    """create/start/delete for run_with_terminal, over a forked child playing the init.

    The child connects to the console socket, sends a pty master, takes the slave as
    its controlling terminal and stdio, waits for ``start``, then runs ``program``
    and exits with what it returns.
    """

    def __init__(self, program: Callable[[], int], *, connect: bool = True) -> None:
        self.program = program
        self.connect = connect
        self.pid = 0
        self.go = -1
        self.events: list[str] = []

    def create(self, socket_path: str) -> int:
        self.events.append("create")
        self.socket_name = os.path.basename(socket_path)
        self.socket_dir_mode = os.stat(os.path.dirname(socket_path)).st_mode & 0o777
        go_read, self.go = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 99
            try:
                os.close(self.go)
                os.setsid()
                if self.connect:
                    master, slave, _ = open_pty()
                    send_console(socket_path, master, "/dev/ptmx")
                    os.close(master)
                    make_controlling_terminal(slave)
                os.read(go_read, 1)
                signal.alarm(15)  # a failing test must not leave corral waiting forever
                code = self.program()
            finally:
                os._exit(code)
        os.close(go_read)
        self.pid = pid
        return pid

    def start(self) -> None:
        self.events.append("start")
        os.write(self.go, b"g")
        os.close(self.go)

    def delete(self) -> None:
        self.events.append("delete")
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass  # run reaped it


class User(threading.Thread):
    """Runs ``act(master)`` on a thread; :meth:`outcome` re-raises what it raised."""

    def __init__(self, master: int, act: Callable[[int], Any]) -> None:
        super().__init__(daemon=True)
        self.master = master
        self.act = act
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.act(self.master)
        except BaseException as error:
            self.error = error

    def outcome(self) -> Any:
        self.join(15)
        if self.error is not None:
            raise self.error
        return self.result


def _signal_state() -> tuple[object, ...]:
    numbers = (signal.SIGWINCH, signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)
    return tuple(signal.getsignal(number) for number in numbers)


# -- the attached terminal, end to end -------------------------------------------------------


def interactive_program() -> int:  # pragma: no cover - runs in the child
    rows, columns = window_size(0)
    os.write(1, f"size {rows} {columns}\n".encode())
    deadline = time.monotonic() + 5
    while window_size(0) != (40, 120) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.write(1, b"resized %d %d\n" % window_size(0))
    line = os.read(0, 100)  # canonical mode: one line
    os.write(1, b"got:" + line + b"a\nb\n")
    return 7


def test_run_with_terminal_attaches_the_callers_terminal(
    caller_tty: tuple[int, int], short_tmp: str
) -> None:
    outer, caller = caller_tty
    before = termios.tcgetattr(caller)
    signals_before = _signal_state()
    container = FakeContainer(interactive_program)

    def user(master: int) -> dict[str, Any]:
        seen = read_until(master, b"size 30 100\r\n")
        during = termios.tcgetattr(master)  # a pty's termios are the slave's
        set_window_size(master, 40, 120)
        os.kill(os.getpid(), signal.SIGWINCH)  # what the kernel does for a session's ctty
        seen += read_until(master, b"resized 40 120\r\n")
        os.write(master, b"hello\n")
        seen += read_until(master, b"b\r\n")
        return {"output": seen, "mode": during}

    player = User(outer, user)
    player.start()
    status = run.run_with_terminal(
        container.create,
        container.start,
        container.delete,
        stdin=caller,
        stdout=caller,
        host=caller,
    )
    seen = player.outcome()
    assert status == 7
    assert container.events == ["create", "start", "delete"]
    output = seen["output"]
    # The inner pty echoes "hello"; every NL became CR NL once, not twice (ONLCR is
    # cleared on the container's pty, kept on the caller's).
    assert b"got:hello\r\na\r\nb\r\n" in output
    assert b"\r\r\n" not in output
    # Raw input while the container ran: no echo, no line editing, no signal keys...
    iflag, oflag, _, lflag, _, _, cc = seen["mode"]
    assert not lflag & (termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
    assert not iflag & (termios.ICRNL | termios.IXON)
    assert cc[termios.VMIN] == 1
    assert oflag & termios.OPOST  # ...but output processing kept, as runc does
    # ...and everything put back.
    assert termios.tcgetattr(caller) == before
    assert _signal_state() == signals_before
    assert signal.set_wakeup_fd(-1) == -1
    assert os.listdir(short_tmp) == []  # the socket and its directory are gone
    assert container.socket_dir_mode == 0o700


def test_output_written_just_before_exit_is_not_lost(
    caller_tty: tuple[int, int], short_tmp: str
) -> None:
    outer, caller = caller_tty
    payload = b"".join(b"line %06d\n" % n for n in range(20000))  # ~240 KB

    def program() -> int:  # pragma: no cover - child
        os.write(1, payload + b"END\n")
        return 0

    container = FakeContainer(program)
    player = User(outer, lambda master: read_until(master, b"END\r\n", timeout=20))
    player.start()
    assert (
        run.run_with_terminal(
            container.create,
            container.start,
            container.delete,
            stdin=caller,
            stdout=caller,
            host=caller,
        )
        == 0
    )
    assert player.outcome() == payload.replace(b"\n", b"\r\n") + b"END\r\n"


def test_copy_until_exit_drains_what_an_ended_program_left(tmp_path: Path) -> None:
    master, slave = os.openpty()
    out_read, out_write = os.pipe()
    wake_read, wake_write = os.pipe()
    try:
        run.clear_onlcr(master)
        os.write(slave, b"x" * 3000 + b"\nlast words\n")
        os.close(slave)  # the program is gone: only its output is left in the pty
        status = run.copy_until_exit(master, -1, out_write, wake_read, lambda: 6)
        os.close(out_write)
        assert status == 6
        assert read_all(out_read) == b"x" * 3000 + b"\nlast words\n"
    finally:
        for fd in (master, out_read, wake_read, wake_write):
            os.close(fd)


def test_copy_until_exit_gives_up_draining_a_terminal_held_elsewhere() -> None:
    master, slave = os.openpty()  # the slave stays open, as if a host process held it
    out_read, out_write = os.pipe()
    wake_read, wake_write = os.pipe()
    try:
        os.write(slave, b"partial\n")
        started = time.monotonic()
        status = run.copy_until_exit(master, -1, out_write, wake_read, lambda: 2, drain_seconds=0.3)
        os.close(out_write)
        assert status == 2
        assert 0.25 <= time.monotonic() - started < 3
        assert read_all(out_read) == b"partial\r\n"
    finally:
        for fd in (master, slave, out_read, wake_read, wake_write):
            os.close(fd)


def test_copy_until_exit_returns_none_when_the_terminal_closes_first() -> None:
    master, slave = os.openpty()
    out_read, out_write = os.pipe()
    wake_read, wake_write = os.pipe()
    asked: list[int] = []

    def reaped() -> int | None:
        asked.append(1)
        return None  # the program still runs

    try:
        os.close(slave)
        assert run.copy_until_exit(master, -1, out_write, wake_read, reaped) is None
        assert asked
    finally:
        for fd in (master, out_read, out_write, wake_read, wake_write):
            os.close(fd)


def test_a_program_that_closes_its_terminal_is_still_waited_for(
    caller_tty: tuple[int, int], short_tmp: str
) -> None:
    outer, caller = caller_tty

    def program() -> int:  # pragma: no cover - child
        os.write(1, b"bye\n")
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)  # no descriptor of the slave is left: the master gets EIO
        time.sleep(0.3)
        return 3

    container = FakeContainer(program)
    player = User(outer, lambda master: read_until(master, b"bye\r\n"))
    player.start()
    started = time.monotonic()
    status = run.run_with_terminal(
        container.create,
        container.start,
        container.delete,
        stdin=caller,
        stdout=caller,
        host=caller,
    )
    assert status == 3
    assert time.monotonic() - started >= 0.3
    player.outcome()


def test_stdin_at_eof_stops_the_input_only(caller_tty: tuple[int, int], short_tmp: str) -> None:
    outer, caller = caller_tty
    empty_read, empty_write = os.pipe()
    os.close(empty_write)

    def program() -> int:  # pragma: no cover - child
        time.sleep(0.2)
        os.write(1, b"still here\n")
        return 4

    container = FakeContainer(program)
    player = User(outer, lambda master: read_until(master, b"still here\r\n"))
    player.start()
    try:
        status = run.run_with_terminal(
            container.create,
            container.start,
            container.delete,
            stdin=empty_read,
            stdout=caller,
            host=caller,
        )
    finally:
        os.close(empty_read)
    assert status == 4
    player.outcome()


def test_a_failed_create_leaves_nothing(caller_tty: tuple[int, int], short_tmp: str) -> None:
    _, caller = caller_tty
    before = termios.tcgetattr(caller)
    events: list[str] = []

    def create(path: str) -> int:
        events.append("create")
        assert os.path.exists(path)  # the socket listens before create runs
        raise CreateError("no such program")

    with pytest.raises(CreateError, match="no such program"):
        run.run_with_terminal(
            create, lambda: events.append("start"), lambda: events.append("delete"), host=caller
        )
    assert events == ["create"]
    assert os.listdir(short_tmp) == []
    assert termios.tcgetattr(caller) == before


def test_a_failed_start_deletes_and_restores(caller_tty: tuple[int, int], short_tmp: str) -> None:
    _, caller = caller_tty
    before = termios.tcgetattr(caller)
    signals_before = _signal_state()
    container = FakeContainer(lambda: 0)

    def start() -> None:
        container.events.append("start")
        raise CreateError("cannot start a container that has stopped")

    with pytest.raises(CreateError, match="has stopped"):
        run.run_with_terminal(
            container.create, start, container.delete, stdin=caller, stdout=caller, host=caller
        )
    assert container.events == ["create", "start", "delete"]
    assert termios.tcgetattr(caller) == before
    assert _signal_state() == signals_before
    assert os.listdir(short_tmp) == []


def test_a_host_that_is_no_terminal_still_deletes(short_tmp: str) -> None:
    pipe_read, pipe_write = os.pipe()
    container = FakeContainer(lambda: 0)
    try:
        with pytest.raises(termios.error):
            run.run_with_terminal(
                container.create, container.start, container.delete, host=pipe_read
            )
    finally:
        os.close(pipe_read)
        os.close(pipe_write)
    assert container.events == ["create", "delete"]
    assert signal.set_wakeup_fd(-1) == -1


def test_no_master_sent_times_out_and_deletes(
    caller_tty: tuple[int, int], short_tmp: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, caller = caller_tty
    monkeypatch.setattr(run, "ACCEPT_SECONDS", 0.3)
    container = FakeContainer(lambda: 0, connect=False)
    with pytest.raises(CreateError) as info:
        run.run_with_terminal(container.create, container.start, container.delete, host=caller)
    assert str(info.value).endswith(f"{container.socket_name}: no terminal received: timed out")
    assert container.events == ["create", "delete"]
    assert os.listdir(short_tmp) == []


def test_host_terminal_needs_a_terminal() -> None:
    report_read, report_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.setsid()  # no controlling terminal, so /dev/tty cannot be opened
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            try:
                run.host_terminal()
                os.write(report_write, b"no error")
            except UsageError as error:
                os.write(report_write, str(error).encode())
        finally:
            os._exit(0)
    os.close(report_write)
    with os.fdopen(report_read, "rb") as report:
        message = report.read().decode()
    os.waitpid(pid, 0)
    assert message == (
        "process.terminal is true but corral run has no terminal to attach "
        "(open /dev/tty: No such device or address); use --detach with --console-socket"
    )


def test_host_terminal_prefers_stderr(caller_tty: tuple[int, int]) -> None:
    _, caller = caller_tty
    saved = os.dup(2)
    try:
        os.dup2(caller, 2)
        fd = run.host_terminal()
        try:
            assert os.path.sameopenfile(fd, caller)
            assert fd not in (0, 1, 2)  # a duplicate: closing it leaves stderr alone
        finally:
            os.close(fd)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# -- run_container: which road, and runc's flag rules ----------------------------------------


class FakeRuntime:
    """Records create/start/delete; ``create`` forks a child that exits ``code`` once
    started (for the road without a terminal)."""

    def __init__(self, code: int = 5) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.code = code
        self.go = -1

    def create(self, container_id: str, bundle: str, **options: Any) -> dict[str, Any]:
        self.calls.append(("create", options))
        go_read, self.go = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.read(go_read, 1)
            os._exit(self.code)
        os.close(go_read)
        return {"pid": pid}

    def start(self, container_id: str) -> None:
        self.calls.append(("start", container_id))
        os.write(self.go, b"g")
        os.close(self.go)

    def delete(self, container_id: str, *, force: bool = False) -> None:
        self.calls.append(("delete", force))


def bundle_with(tmp_path: Path, process: Any) -> str:
    (tmp_path / "config.json").write_text(json.dumps({"process": process}))
    return str(tmp_path)


def call_run(runtime: FakeRuntime, bundle: str, **options: Any) -> int:
    return run.run_container(runtime, "c1", bundle, **options)  # type: ignore[arg-type]


def test_run_detached_with_a_terminal_needs_a_console_socket(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    with pytest.raises(ConfigError) as info:
        call_run(runtime, bundle_with(tmp_path, {"terminal": True}), detach=True)
    assert str(info.value) == (
        "config.json: process.terminal: cannot allocate tty if corral will detach "
        "without setting console socket"
    )
    assert runtime.calls == []


@pytest.mark.parametrize("terminal_on", [True, False])
def test_run_attached_refuses_a_console_socket(tmp_path: Path, terminal_on: bool) -> None:
    runtime = FakeRuntime()
    bundle = bundle_with(tmp_path, {"terminal": terminal_on})
    with pytest.raises((UsageError, ConfigError)) as info:
        call_run(runtime, bundle, console_socket="/run/c.sock")
    assert "cannot use console socket if corral will not detach or allocate tty" in str(info.value)
    assert runtime.calls == []


def test_run_with_a_terminal_takes_the_terminal_road(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = FakeRuntime()
    seen: list[str] = []

    def fake_run_with_terminal(
        create: Callable[[str], int], start: Callable[[], None], delete: Callable[[], None]
    ) -> int:
        pid = create("/tmp/x/console.sock")
        start()
        os.waitpid(pid, 0)
        delete()
        seen.append("terminal road")
        return 42

    monkeypatch.setattr(run, "run_with_terminal", fake_run_with_terminal)
    bundle = bundle_with(tmp_path, {"terminal": True})
    status = call_run(runtime, bundle, pid_file="/tmp/p", preserve_fds=2)
    assert status == 42
    assert seen == ["terminal road"]
    assert runtime.calls == [
        (
            "create",
            {"console_socket": "/tmp/x/console.sock", "pid_file": "/tmp/p", "preserve_fds": 2},
        ),
        ("start", "c1"),
        ("delete", True),
    ]


def test_run_without_a_terminal_waits_for_the_program(tmp_path: Path) -> None:
    runtime = FakeRuntime(code=5)
    assert call_run(runtime, bundle_with(tmp_path, {"terminal": False})) == 5
    assert [name for name, _ in runtime.calls] == ["create", "start", "delete"]
    assert runtime.calls[0][1] == {"console_socket": None}


def test_run_detached_with_a_console_socket_passes_it_on(tmp_path: Path) -> None:
    runtime = FakeRuntime(code=0)
    bundle = bundle_with(tmp_path, {"terminal": True})
    assert call_run(runtime, bundle, detach=True, console_socket="/run/c.sock") == 0
    assert runtime.calls[0] == ("create", {"console_socket": "/run/c.sock"})
    assert [name for name, _ in runtime.calls] == ["create", "start"]
    pid = 0
    while pid == 0:  # the child exits once started; collect it
        pid, _ = os.waitpid(-1, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"process": {"terminal": true}}', True),
        ('{"process": {"terminal": false}}', False),
        ('{"process": {"terminal": "true"}}', False),  # create reports the wrong type
        ('{"process": {}}', False),
        ("{}", False),
        ("[1]", False),
        ('{"process": {"terminal": tr', False),
    ],
)
def test_wants_terminal(tmp_path: Path, text: str, expected: bool) -> None:
    (tmp_path / "config.json").write_text(text)
    assert run.wants_terminal(str(tmp_path)) is expected


def test_wants_terminal_without_a_config(tmp_path: Path) -> None:
    assert run.wants_terminal(str(tmp_path / "missing")) is False


# -- pure pieces ----------------------------------------------------------------------------------


def test_raw_attributes() -> None:
    t = termios
    cooked = [
        t.ICRNL | t.IXON | t.BRKINT | t.IMAXBEL,
        t.OPOST | t.ONLCR,
        t.CS7 | t.PARENB | t.CREAD,
        t.ECHO | t.ICANON | t.ISIG | t.IEXTEN | t.ECHOE,
        t.B38400,
        t.B38400,
        [b"\x03"] * t.NCCS,
    ]
    original = [list(item) if isinstance(item, list) else item for item in cooked]
    raw = run.raw_attributes(cooked)
    assert cooked == original  # not changed in place
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = raw
    assert iflag == t.IMAXBEL
    assert oflag == t.OPOST | t.ONLCR
    assert cflag == t.CS8 | t.CREAD
    assert lflag == t.ECHOE
    assert (ispeed, ospeed) == (t.B38400, t.B38400)
    assert cc[t.VMIN] == 1
    assert cc[t.VTIME] == 0
    assert cc[t.VINTR] == b"\x03"


def test_clear_onlcr_touches_only_onlcr() -> None:
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        assert before[1] & termios.ONLCR
        run.clear_onlcr(master)
        after = termios.tcgetattr(slave)
        assert after[1] == before[1] & ~termios.ONLCR
        assert after[:1] + after[2:] == before[:1] + before[2:]
    finally:
        os.close(master)
        os.close(slave)


def test_copy_window_size() -> None:
    source_master, source = os.openpty()
    target_master, target = os.openpty()
    try:
        set_window_size(target, 5, 6)
        run.copy_window_size(source, target_master)  # 0x0: unknown, left alone
        assert window_size(target) == (5, 6)
        set_window_size(source, 50, 160)
        run.copy_window_size(source, target_master)
        assert window_size(target) == (50, 160)
        os.close(source_master)
        os.close(source)
        run.copy_window_size(source, target_master)  # a closed terminal: ignored
    finally:
        for fd in (target_master, target):
            os.close(fd)


def test_reap() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        time.sleep(0.2)
        os._exit(9)
    assert run.reap(pid) is None
    deadline = time.monotonic() + 5
    status = None
    while status is None and time.monotonic() < deadline:
        time.sleep(0.02)
        status = run.reap(pid)
    assert status == 9
    assert run.reap(pid) == 255  # gone: not our child any more


@pytest.mark.parametrize(
    ("environ", "preserve", "expected"),
    [
        ({"LISTEN_FDS": "2", "LISTEN_PID": "4242"}, 0, (2, ["LISTEN_FDS=2", "LISTEN_PID=1"])),
        # The --preserve-fds fds come after the activation fds: 3..4, then 5..7.
        ({"LISTEN_FDS": "2", "LISTEN_PID": "4242"}, 3, (5, ["LISTEN_FDS=2", "LISTEN_PID=1"])),
        ({"LISTEN_FDS": "+1", "LISTEN_PID": "04242"}, 0, (1, ["LISTEN_FDS=1", "LISTEN_PID=1"])),
        ({"LISTEN_FDS": "2", "LISTEN_PID": "4243"}, 1, (1, [])),  # meant for another process
        ({"LISTEN_FDS": "2"}, 1, (1, [])),
        ({"LISTEN_FDS": "0", "LISTEN_PID": "4242"}, 0, (0, [])),
        ({"LISTEN_FDS": "-3", "LISTEN_PID": "4242"}, 0, (0, [])),
        ({"LISTEN_FDS": "two", "LISTEN_PID": "4242"}, 0, (0, [])),
        ({"LISTEN_FDS": " 2", "LISTEN_PID": "4242"}, 0, (0, [])),
        ({"LISTEN_FDS": "1_0", "LISTEN_PID": "4242"}, 0, (0, [])),
        ({"LISTEN_FDS": "\uff12", "LISTEN_PID": "4242"}, 0, (0, [])),  # a fullwidth 2
        ({"LISTEN_FDS": "", "LISTEN_PID": "4242"}, 2, (2, [])),
        ({"LISTEN_FDS": "9" * 30, "LISTEN_PID": "4242"}, 0, (0, [])),  # beyond int64
        ({"LISTEN_PID": "4242"}, 0, (0, [])),
        ({}, 4, (4, [])),
    ],
)
def test_listen_fds(
    environ: dict[str, str], preserve: int, expected: tuple[int, list[str]]
) -> None:
    assert run.listen_fds(environ, preserve, pid=4242) == expected


def test_listen_fds_defaults_to_this_process() -> None:
    environ = {"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())}
    assert run.listen_fds(environ, 0) == (1, ["LISTEN_FDS=1", "LISTEN_PID=1"])


# -- the console-socket receiver -------------------------------------------------------------


@pytest.fixture
def socket_path() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="cr") as directory:
        yield os.path.join(directory, "console.sock")


def test_accept_console_receives_a_working_master(socket_path: str) -> None:
    listen_fd = listen_console(socket_path)
    master, slave, _ = open_pty()
    try:
        send_console(socket_path, master, "/dev/ptmx")  # queued: the backlog holds it
        received, name = accept_console(listen_fd, 5, path=socket_path)
        try:
            assert name == "/dev/ptmx"
            assert not os.get_inheritable(received)
            assert os.path.sameopenfile(received, master)
            os.write(received, b"ping\n")
            assert read_until(slave, b"ping\n") == b"ping\n"
        finally:
            os.close(received)
        os.fstat(listen_fd)  # the listener stays open: the caller closes it
    finally:
        for fd in (listen_fd, master, slave):
            os.close(fd)


def _send_raw(path: str, payload: bytes, fds: list[int]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(path)
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
        client.sendmsg([payload] if payload else [], ancillary if fds else [])


def test_two_descriptors_are_refused_and_closed(socket_path: str) -> None:
    listen_fd = listen_console(socket_path)
    first_read, first_write = os.pipe()
    second_read, second_write = os.pipe()
    try:
        _send_raw(socket_path, b"/dev/ptmx", [first_read, second_read])
        os.close(first_read)
        os.close(second_read)
        with pytest.raises(CreateError) as info:
            accept_console(listen_fd, 5, path=socket_path)
        assert str(info.value) == (
            f"console socket {socket_path}: expected one terminal and its name, "
            "got 2 descriptors and 9 bytes"
        )
        # Both received copies were closed: no reader is left on either pipe.
        for write_end in (first_write, second_write):
            with pytest.raises(BrokenPipeError):
                os.write(write_end, b"x")
    finally:
        for fd in (listen_fd, first_write, second_write):
            os.close(fd)


def test_a_connection_closed_without_a_message_is_refused(socket_path: str) -> None:
    listen_fd = listen_console(socket_path)
    try:
        _send_raw(socket_path, b"", [])
        with pytest.raises(CreateError) as info:
            accept_console(listen_fd, 5, path=socket_path)
        assert str(info.value).endswith("got 0 descriptors and 0 bytes")
    finally:
        os.close(listen_fd)


def test_accept_console_times_out(socket_path: str) -> None:
    listen_fd = listen_console(socket_path)
    try:
        started = time.monotonic()
        with pytest.raises(CreateError) as info:
            accept_console(listen_fd, 0.2, path=socket_path)
        assert time.monotonic() - started < 3
        assert str(info.value) == f"console socket {socket_path}: no terminal received: timed out"
    finally:
        os.close(listen_fd)


def test_listen_console_on_a_taken_path(socket_path: str) -> None:
    Path(socket_path).write_text("")
    with pytest.raises(CreateError) as info:
        listen_console(socket_path)
    assert str(info.value) == f"console socket {socket_path}: Address already in use"
