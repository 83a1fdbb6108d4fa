"""Terminals for real: ``process.terminal`` with busybox, as root.

Three layers:

* :func:`corral.linux.terminal.setup_terminal` in a forked child that builds a
  minimal container root itself (a private mount namespace, a tmpfs ``/dev`` with a
  new devpts instance, chroot into the busybox root) and then execs busybox: this
  checks the pty really comes from the container's devpts and that ``/dev/console``
  is it, independently of the init's wiring;
* ``corral create --console-socket`` with tests/support/recvtty playing containerd,
  and ``corral run`` attached to a pty made here as the caller's terminal, through the
  CLI;
* LISTEN_FDS passed through ``corral run`` as runc passes it.

"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import subprocess
import tempfile
import termios
import time

import pytest

from conftest import corral_command, create_detached, requires_root, wait_for_status
from corral.core.console import set_window_size
from support.recvtty import ConsoleReceiver

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import Any

    from conftest import Corral

    MakeBundle = Callable[..., Path]

pytestmark = requires_root

PTS_PATH = re.compile(rb"/dev/pts/\d+")


@pytest.fixture
def short_dir() -> Iterator[str]:
    # sun_path holds 104-108 bytes: pytest's tmp_path can be longer than that.
    with tempfile.TemporaryDirectory(prefix="tr") as directory:
        yield directory


def read_until(fd: int, wanted: bytes, timeout: float = 15.0, start: bytes = b"") -> bytes:
    """Read ``fd`` until ``wanted`` is in what was read (after ``start``); all of it."""
    data = start
    deadline = time.monotonic() + timeout
    while wanted not in data[len(start) :]:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise AssertionError(f"no {wanted!r} within {timeout}s: {data!r}")
        try:
            chunk = os.read(fd, 65536)
        except OSError as error:  # EIO: the other side has closed
            raise AssertionError(f"{error} before {wanted!r}: {data!r}") from None
        if not chunk:
            raise AssertionError(f"EOF before {wanted!r}: {data!r}")
        data += chunk
    return data


def terminal_config(
    size: dict[str, int] | None = None, env: list[str] | None = None
) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["terminal"] = True
        if size is not None:
            spec["process"]["consoleSize"] = size
        if env is not None:
            spec["process"]["env"] += env

    return edit


# -- setup_terminal in a hand-built container root --------------------------------------------


def test_setup_terminal_in_a_container_root(busybox_rootfs: Path, short_dir: str) -> None:
    socket_path = os.path.join(short_dir, "console.sock")
    receiver = ConsoleReceiver(socket_path)
    host_pts_dev = os.stat("/dev/pts").st_dev
    report_read, report_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child: plays the init
        try:
            os.close(report_read)
            _play_init(str(busybox_rootfs), socket_path, report_write)
        except BaseException as error:
            os.write(report_write, json.dumps({"error": repr(error)}).encode())
        os._exit(99)
    os.close(report_write)
    with os.fdopen(report_read, "rb") as report:
        facts = json.loads(report.read() or b"{}")  # EOF: exec closed it (close-on-exec)
    master, name = receiver.result()
    try:
        assert "error" not in facts, facts
        assert name == "/dev/ptmx"
        assert facts["pts_dev"] != host_pts_dev  # the container's own devpts instance
        assert facts["slave_dev"] == facts["pts_dev"]
        output = read_until(master, b"console-ok\r\n")
        lines = output.split(b"\r\n")
        assert lines[0] == b"/dev/pts/0"  # the first pty of a fresh instance
        assert lines[1] == b"24 91"
        os.write(master, b"hello\n")
        assert b"got:hello\r\n" in read_until(master, b"got:hello\r\n")
        # Reaped before the master closes: that hangs the terminal up (SIGHUP).
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.waitstatus_to_exitcode(status) == 5
    finally:
        os.close(master)
        if pid:
            os.waitpid(pid, 0)


def _play_init(rootfs: str, socket_path: str, report: int) -> None:  # pragma: no cover
    from corral.linux import syscalls as sc_
    from corral.linux import terminal

    sc = sc_.Syscalls()
    os.setsid()
    console_fd = terminal.connect_early(socket_path)
    sc.unshare(sc_.CLONE_NEWNS)
    sc.mount(None, "/", None, sc_.MS_REC | sc_.MS_PRIVATE, None)
    sc.mount(rootfs, rootfs, None, sc_.MS_BIND | sc_.MS_REC, None)
    sc.mount("tmpfs", f"{rootfs}/dev", "tmpfs", sc_.MS_NOSUID, "mode=755")
    os.mkdir(f"{rootfs}/dev/pts")
    sc.mount(
        "devpts", f"{rootfs}/dev/pts", "devpts", sc_.MS_NOSUID | sc_.MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )  # fmt: skip
    os.symlink("pts/ptmx", f"{rootfs}/dev/ptmx")
    sc.mount("proc", f"{rootfs}/proc", "proc", 0, None)
    os.chroot(rootfs)  # from here the host's Python library is out of reach
    os.chdir("/")
    terminal.setup_terminal(sc, console_fd, (24, 91))
    facts = {"pts_dev": os.stat("/dev/pts").st_dev, "slave_dev": os.fstat(0).st_dev}
    os.write(report, json.dumps(facts).encode())
    script = 'tty; stty size; [ /dev/console -ef "$(tty)" ] && echo console-ok; '
    script += 'read line; echo "got:$line"; exit 5'
    # A clean environment: busybox's stty prefers $LINES/$COLUMNS over the terminal.
    os.execve("/bin/sh", ["sh", "-c", script], {"PATH": "/bin"})


# -- create --console-socket, as containerd does --------------------------------------------------


def test_create_sends_the_terminal_to_the_console_socket(
    corral: Corral, make_bundle: MakeBundle, container_id: str, short_dir: str
) -> None:
    script = 'tty; stty size; [ /dev/console -ef "$(tty)" ] && echo console-ok; '
    script += 'read line; echo "got:$line"'
    bundle = make_bundle(["sh", "-c", script], edit=terminal_config({"height": 24, "width": 91}))
    socket_path = os.path.join(short_dir, "console.sock")
    receiver = ConsoleReceiver(socket_path, timeout=15)
    out = create_detached(corral, bundle, container_id, "--console-socket", socket_path)
    master, name = receiver.result()
    try:
        assert name == "/dev/ptmx"
        corral("start", container_id)
        output = read_until(master, b"console-ok\r\n")
        lines = output.split(b"\r\n")
        assert PTS_PATH.fullmatch(lines[0]), output
        assert lines[1] == b"24 91"  # process.consoleSize
        os.write(master, b"hello\n")  # typed into the master, read by the program
        read_until(master, b"got:hello\r\n", start=output)
        wait_for_status(corral, container_id, "stopped")
    finally:
        os.close(master)
    assert out.read_text() == ""  # the program wrote to its terminal, not create's stdout


def test_create_with_a_terminal_needs_a_console_socket(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    bundle = make_bundle(["true"], edit=terminal_config())
    result = corral("create", "--bundle", str(bundle), container_id, check=False)
    assert result.returncode == 1
    assert result.stderr == (
        "corral: config.json: process.terminal: cannot allocate tty if corral will detach "
        "without setting console socket\n"
    )
    assert not os.path.exists(os.path.join(corral.root, container_id))


def test_run_detached_with_a_terminal_needs_a_console_socket(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    bundle = make_bundle(["true"], edit=terminal_config())
    result = corral(
        "run", "--detach", "--bundle", str(bundle), container_id, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        "corral: config.json: process.terminal: cannot allocate tty if corral will detach "
        "without setting console socket\n"
    )
    assert not os.path.exists(os.path.join(corral.root, container_id))


def test_run_attached_refuses_a_console_socket(
    corral: Corral, make_bundle: MakeBundle, container_id: str, short_dir: str
) -> None:
    bundle = make_bundle(["true"], edit=terminal_config())
    socket_path = os.path.join(short_dir, "console.sock")
    result = corral(
        "run", "--console-socket", socket_path, "--bundle", str(bundle), container_id,
        check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        "corral: --console-socket: cannot use console socket if corral will not detach "
        "or allocate tty\n"
    )
    assert not os.path.exists(os.path.join(corral.root, container_id))


# -- run attached to the caller's terminal ---------------------------------------------------------


def _take_controlling_terminal() -> None:  # pragma: no cover - runs in the child
    # start_new_session made corral a session leader without a terminal; its stdin
    # becomes its terminal, so a resize signals it as it signals a shell's foreground.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def spawn_on_pty(
    corral: Corral, *args: str, rows: int, columns: int
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``corral *args`` with a new pty as its terminal; (process, master)."""
    master, slave = os.openpty()
    set_window_size(slave, rows, columns)
    process = subprocess.Popen(
        [*corral_command(), "--root", corral.root, *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        # One ioctl between fork and exec: nothing a thread could hold a lock in.
        preexec_fn=_take_controlling_terminal,  # noqa: PLW1509
    )
    os.close(slave)
    return process, master


def test_run_gives_the_callers_terminal_to_the_container(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    script = (
        "tty; stty size; i=0; "
        'while [ "$(stty size)" != "44 88" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; '
        'echo "now $(stty size)"; read line; echo "got:$line"; exit 7'
    )
    bundle = make_bundle(["sh", "-c", script], edit=terminal_config({"height": 5, "width": 6}))
    process, master = spawn_on_pty(
        corral, "run", "--bundle", str(bundle), container_id, rows=33, columns=77
    )
    try:
        cooked = termios.tcgetattr(master)  # a pty's termios are its slave's
        output = read_until(master, b"33 77\r\n")
        lines = output.split(b"\r\n")
        assert PTS_PATH.fullmatch(lines[0]), output
        # runc gives the container the caller's size, over consoleSize, at start...
        assert lines[1] == b"33 77"
        raw = termios.tcgetattr(master)
        assert not raw[3] & (termios.ICANON | termios.ECHO | termios.ISIG)
        # ...and on every resize of the caller's terminal (SIGWINCH to corral).
        set_window_size(master, 44, 88)
        output = read_until(master, b"now 44 88\r\n", start=output)
        os.write(master, b"hello\n")
        read_until(master, b"got:hello\r\n", start=output)
        assert process.wait(timeout=20) == 7  # the program's exit status
        assert termios.tcgetattr(master) == cooked  # the caller's terminal restored
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    assert container_id not in corral("list", "-q").stdout.split()


def test_run_passes_ctrl_c_to_the_program(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    # Raw mode: ^C is a byte for the container's terminal, whose line discipline turns
    # it into SIGINT for the program; corral itself is not interrupted.
    script = "trap 'echo interrupted; exit 9' INT; echo ready; while :; do sleep 0.05; done"
    bundle = make_bundle(["sh", "-c", script], edit=terminal_config())
    process, master = spawn_on_pty(
        corral, "run", "--bundle", str(bundle), container_id, rows=24, columns=80
    )
    try:
        output = read_until(master, b"ready\r\n")
        os.write(master, b"\x03")
        read_until(master, b"interrupted\r\n", start=output)
        assert process.wait(timeout=20) == 9
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


# -- LISTEN_FDS ------------------------------------------------------------------------------------


def test_run_passes_socket_activation_fds(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    for name in ("first", "second", "preserved"):
        (tmp_path / name).write_text(f"{name} file\n")
    bundle = make_bundle(
        ["sh", "-c", "env | grep ^LISTEN_ | sort; cat <&3; cat <&4; cat <&5; ls /proc/self/fd"]
    )
    # The shell opens fds 3-5 and execs corral: LISTEN_PID is then corral's pid, as
    # systemd sets it for the process it starts.
    wrapper = (
        f'exec 3<"{tmp_path}/first" 4<"{tmp_path}/second" 5<"{tmp_path}/preserved"; '
        'LISTEN_FDS=2 LISTEN_PID=$$ exec "$@"'
    )
    command = [*corral_command(), "--root", corral.root, "run", "--preserve-fds", "1"]
    command += ["--bundle", str(bundle), container_id]
    result = subprocess.run(
        ["sh", "-c", wrapper, "sh", *command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[:5] == [
        "LISTEN_FDS=2",
        "LISTEN_PID=1",
        "first file",
        "second file",
        "preserved file",
    ]
    # 0-2, the three passed, and the one ls opened to list them: nothing else leaked.
    assert lines[5:] == ["0", "1", "2", "3", "4", "5", "6", ""]


def test_run_ignores_listen_fds_meant_for_another_process(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    (tmp_path / "first").write_text("first file\n")
    bundle = make_bundle(["sh", "-c", "env | grep ^LISTEN_; ls /proc/self/fd"])
    wrapper = f'exec 3<"{tmp_path}/first"; LISTEN_FDS=1 LISTEN_PID=1 exec "$@"'
    command = [*corral_command(), "--root", corral.root, "run"]
    command += ["--bundle", str(bundle), container_id]
    result = subprocess.run(
        ["sh", "-c", wrapper, "sh", *command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "1", "2", "3"]  # no LISTEN_ line, fd 3 closed
