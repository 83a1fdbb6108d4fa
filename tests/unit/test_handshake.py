"""The create handshake (corral.core.handshake) over real pipes, with a forked child.

The child side of the protocol ends in ``os._exit`` when the parent lets it down, so
each child-side function runs in a forked process here and the test reads its exit
status and what it wrote; the parent side runs in the test process.
"""

from __future__ import annotations

import errno
import os
import traceback

import pytest

from corral.core import handshake, jsonio
from corral.errors import ConfigError, CreateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CHILD_RETURNED = 0  # the child's function returned
CHILD_RAISED = 99  # it raised (the traceback goes to the test's stderr)


class Pipes:
    """The two pipes of the handshake, as backend.create makes them."""

    def __init__(self) -> None:
        self.sync_read, self.sync_write = os.pipe2(os.O_CLOEXEC)
        self.commit_read, self.commit_write = os.pipe2(os.O_CLOEXEC)

    def close(self) -> None:
        for fd in (self.sync_read, self.sync_write, self.commit_read, self.commit_write):
            try:
                os.close(fd)
            except OSError as error:
                assert error.errno == errno.EBADF  # closed by the test already


@pytest.fixture
def pipes() -> Iterator[Pipes]:
    made = Pipes()
    yield made
    made.close()


def fork_child(pipes: Pipes, body: Callable[[], object]) -> int:
    """Run ``body`` in a child holding the child's ends; close them here. Its pid."""
    pid = os.fork()
    if pid == 0:
        code = CHILD_RETURNED
        try:
            os.close(pipes.sync_read)
            os.close(pipes.commit_write)
            body()
        except BaseException:
            traceback.print_exc()
            code = CHILD_RAISED
        os._exit(code)
    os.close(pipes.sync_write)
    os.close(pipes.commit_read)
    return pid


def exit_code(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), status
    return os.WEXITSTATUS(status)


def read_rest(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


# -- read_answer --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (b'{"ready": true}\n', {"ready": True}),
        (b'{"error": "mounts[2]: no such device"}\n', {"error": "mounts[2]: no such device"}),
        (b"", {}),  # closed without a word
        (b"[1, 2]\n", {}),  # JSON, but no object
        (b"Traceback: boom\n", {"error": "Traceback: boom"}),  # not JSON: the text itself
        (b'{"ready": true}', {"ready": True}),  # no newline, then end of file
    ],
)
def test_read_answer_decodes_one_line(written: bytes, expected: dict[str, object]) -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, written)
    os.close(write_fd)
    try:
        assert handshake.read_answer(read_fd) == expected
    finally:
        os.close(read_fd)


def test_read_answer_waits_for_the_end_of_a_line_written_in_pieces(pipes: Pipes) -> None:
    def child() -> None:
        import time

        os.write(pipes.sync_write, b'{"error": "half')
        time.sleep(0.05)
        os.write(pipes.sync_write, b' and half"}\n')
        time.sleep(0.05)  # the pipe stays open: the parent must stop at the newline

    pid = fork_child(pipes, child)
    assert handshake.read_answer(pipes.sync_read) == {"error": "half and half"}
    assert exit_code(pid) == CHILD_RETURNED


# -- requests: ask_parent and serve_requests ----------------------------------------


def test_a_request_goes_on_the_wire_as_one_json_line(pipes: Pipes) -> None:
    pid = fork_child(
        pipes, lambda: handshake.ask_parent(pipes.sync_write, pipes.commit_read, "hooks")
    )
    line = b""
    while not line.endswith(b"\n"):
        line += os.read(pipes.sync_read, 4096)
    assert jsonio.loads(line) == {"request": "hooks"}
    assert handshake.HOOKS == "hooks"
    os.write(pipes.commit_write, handshake.CONTINUE)
    assert exit_code(pid) == CHILD_RETURNED  # the answer let it return
    assert read_rest(pipes.sync_read) == b""  # and it sent nothing more


@pytest.mark.parametrize("meanwhile", [False, True], ids=["before-request", "meanwhile"])
def test_the_handler_runs_while_the_child_waits_then_the_child_goes_on(
    pipes: Pipes, meanwhile: bool
) -> None:
    """What the child does before its request, or in ``meanwhile`` (which overlaps the
    handler), is done when the handler looks; what comes after the wait is not."""
    marker_read, marker_write = os.pipe()

    def child() -> None:
        os.close(marker_read)

        def before() -> None:
            os.write(marker_write, b"before;")

        if meanwhile:
            handshake.ask_parent(pipes.sync_write, pipes.commit_read, "hooks", before)
        else:
            before()
            handshake.ask_parent(pipes.sync_write, pipes.commit_read, "hooks")
        os.write(marker_write, b"after;")
        handshake.send_ready(pipes.sync_write)

    pid = fork_child(pipes, child)
    os.close(marker_write)
    seen_by_handler: list[bytes] = []

    def handler() -> None:
        import time

        time.sleep(0.05)  # time enough for a child that did not wait to write "after"
        os.set_blocking(marker_read, False)
        seen_by_handler.append(os.read(marker_read, 100))

    try:
        answer = handshake.serve_requests(pipes.sync_read, pipes.commit_write, {"hooks": handler})
        assert answer == {"ready": True}
        assert seen_by_handler == [b"before;"]
        os.set_blocking(marker_read, True)
        assert read_rest(marker_read) == b"after;"
    finally:
        os.close(marker_read)
    assert exit_code(pid) == CHILD_RETURNED


def test_several_requests_are_each_answered_in_turn(pipes: Pipes) -> None:
    def child() -> None:
        for name in ("first", "second", "first"):
            handshake.ask_parent(pipes.sync_write, pipes.commit_read, name)
        handshake.send_ready(pipes.sync_write)

    pid = fork_child(pipes, child)
    calls: list[str] = []
    answer = handshake.serve_requests(
        pipes.sync_read,
        pipes.commit_write,
        {"first": lambda: calls.append("first"), "second": lambda: calls.append("second")},
    )
    assert answer == {"ready": True}
    assert calls == ["first", "second", "first"]
    assert exit_code(pid) == CHILD_RETURNED


def test_without_requests_serve_requests_is_read_answer(pipes: Pipes) -> None:
    pid = fork_child(pipes, lambda: handshake.send_ready(pipes.sync_write))
    called: list[str] = []
    answer = handshake.serve_requests(
        pipes.sync_read, pipes.commit_write, {"hooks": lambda: called.append("hooks")}
    )
    assert answer == {"ready": True}
    assert called == []
    assert exit_code(pid) == CHILD_RETURNED


def test_an_error_after_a_request_is_the_final_answer(pipes: Pipes) -> None:
    def child() -> None:
        handshake.ask_parent(pipes.sync_write, pipes.commit_read, "hooks")
        handshake.report_error(pipes.sync_write, CreateError("mounts[1]: bad"))

    pid = fork_child(pipes, child)
    answer = handshake.serve_requests(pipes.sync_read, pipes.commit_write, {"hooks": lambda: None})
    assert answer == {"error": "mounts[1]: bad"}
    assert exit_code(pid) == CHILD_RETURNED


def test_a_child_that_fails_meanwhile_is_reported_not_a_broken_pipe(pipes: Pipes) -> None:
    def fail() -> None:
        handshake.report_error(pipes.sync_write, CreateError("linux.seccomp: no libseccomp"))
        os._exit(1)  # as the init does after reporting

    pid = fork_child(
        pipes,
        lambda: handshake.ask_parent(pipes.sync_write, pipes.commit_read, "cgroup-join", fail),
    )

    def handler() -> None:
        assert os.waitpid(pid, 0)[0] == pid  # the child is gone before the answer

    answer = handshake.serve_requests(pipes.sync_read, pipes.commit_write, {"cgroup-join": handler})
    assert answer == {"error": "linux.seccomp: no libseccomp"}


def test_an_unknown_request_ends_the_exchange_as_an_error(pipes: Pipes) -> None:
    pid = fork_child(
        pipes, lambda: handshake.ask_parent(pipes.sync_write, pipes.commit_read, "idmap")
    )
    called: list[str] = []
    answer = handshake.serve_requests(
        pipes.sync_read, pipes.commit_write, {"hooks": lambda: called.append("hooks")}
    )
    assert answer == {"error": "container init sent an unknown request 'idmap'"}
    assert called == []
    os.close(pipes.commit_write)  # what the backend does next (and it kills the child)
    assert exit_code(pid) == 1  # no answer: ask_parent exits, the child goes no further


def test_a_failing_handler_leaves_the_request_unanswered(pipes: Pipes) -> None:
    def child() -> None:
        handshake.ask_parent(pipes.sync_write, pipes.commit_read, "hooks")
        os._exit(42)  # never reached: the parent did not answer

    pid = fork_child(pipes, child)

    def handler() -> None:
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        handshake.serve_requests(pipes.sync_read, pipes.commit_write, {"hooks": handler})
    os.close(pipes.commit_write)
    assert exit_code(pid) == 1


def test_a_child_that_dies_after_a_request_reads_as_silence(pipes: Pipes) -> None:
    def child() -> None:
        handshake.ask_parent(pipes.sync_write, pipes.commit_read, "hooks")
        os._exit(3)  # e.g. killed: no final line

    pid = fork_child(pipes, child)
    answer = handshake.serve_requests(pipes.sync_read, pipes.commit_write, {"hooks": lambda: None})
    assert answer == {}
    assert exit_code(pid) == 3


@pytest.mark.parametrize("reply", [b"", handshake.COMMITTED, b"x"])
def test_ask_parent_exits_unless_the_answer_is_continue(pipes: Pipes, reply: bytes) -> None:
    pid = fork_child(
        pipes, lambda: handshake.ask_parent(pipes.sync_write, pipes.commit_read, "hooks")
    )
    if reply:
        os.write(pipes.commit_write, reply)
    os.close(pipes.commit_write)
    assert exit_code(pid) == 1


# -- ready and commit --------------------------------------------------------------


def test_commit_lets_the_child_drop_the_death_signal_and_waits_for_its_eof(
    pipes: Pipes,
) -> None:
    marker_read, marker_write = os.pipe()

    def child() -> None:
        os.close(marker_read)
        handshake.send_ready(pipes.sync_write)
        handshake.await_commit(
            pipes.sync_write, pipes.commit_read, lambda: os.write(marker_write, b"dropped")
        )
        # Both ends are closed now: the parent's commit() has returned.
        for fd in (pipes.sync_write, pipes.commit_read):
            with pytest.raises(OSError) as info:
                os.fstat(fd)
            assert info.value.errno == errno.EBADF

    pid = fork_child(pipes, child)
    os.close(marker_write)
    try:
        assert handshake.read_answer(pipes.sync_read) == {"ready": True}
        handshake.commit(pipes.commit_write, pipes.sync_read)
        assert read_rest(marker_read) == b"dropped"
    finally:
        os.close(marker_read)
    assert exit_code(pid) == CHILD_RETURNED
    for fd in (pipes.commit_write, pipes.sync_read):  # commit() closed them
        with pytest.raises(OSError):
            os.fstat(fd)


@pytest.mark.parametrize("reply", [b"", handshake.CONTINUE])
def test_await_commit_exits_without_the_commit_byte(pipes: Pipes, reply: bytes) -> None:
    dropped_read, dropped_write = os.pipe()

    def child() -> None:
        os.close(dropped_read)
        handshake.await_commit(
            pipes.sync_write, pipes.commit_read, lambda: os.write(dropped_write, b"dropped")
        )

    pid = fork_child(pipes, child)
    os.close(dropped_write)
    if reply:
        os.write(pipes.commit_write, reply)
    os.close(pipes.commit_write)
    try:
        assert exit_code(pid) == 1
        assert read_rest(dropped_read) == b""  # it still dies with the parent
    finally:
        os.close(dropped_read)


# -- errors ---------------------------------------------------------------------------


def test_error_message_is_one_line_for_each_kind_of_error() -> None:
    config = ConfigError("process.cwd", "bad")
    assert handshake.error_message(config) == "config.json: process.cwd: bad"
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/y")
    assert handshake.error_message(missing) == "/x/y: No such file or directory"
    named = OSError(errno.EACCES, "/etc/z: Permission denied", "/etc/z")
    assert handshake.error_message(named) == "/etc/z: Permission denied"  # not twice
    assert handshake.error_message(ValueError("odd")) == "ValueError: odd"


def test_report_error_goes_to_stderr_once_the_parent_has_let_go(pipes: Pipes) -> None:
    err_read, err_write = os.pipe()

    def child() -> None:
        os.dup2(err_write, 2)
        handshake.report_error(-1, CreateError("hooks.startContainer[0] (/h): failed"))

    pid = fork_child(pipes, child)
    os.close(err_write)
    try:
        assert exit_code(pid) == CHILD_RETURNED
        assert read_rest(err_read) == b"corral: hooks.startContainer[0] (/h): failed\n"
    finally:
        os.close(err_read)
    assert read_rest(pipes.sync_read) == b""  # and nothing to the parent
