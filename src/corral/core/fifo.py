"""The exec fifo: how ``start`` releases an init that ``create`` left waiting.

``create`` makes ``<state>/exec.fifo``; the init, fully set up, opens it for writing,
which blocks until a reader appears (fifo(7)). ``start`` opens the read end without
blocking, which releases that open; the init writes one byte and execs the user's
program. ``start`` waits for the byte, then removes the fifo: from then on the
container's status is "running". If the init dies instead, no byte ever comes, so
``start`` polls with a short timeout and checks the process between polls.
"""

from __future__ import annotations

from corral.core import fastos
from corral.errors import IllegalStateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def make_fifo(path: str) -> None:
    # 0622: only root (the runtime) reads; the init may write after dropping privileges.
    fastos.mkfifo(path, 0o622)
    fastos.chmod(path, 0o622)  # mkfifo honours the umask


def release_init(path: str, init_alive: Callable[[], bool], timeout: float = 30.0) -> None:
    """Open the read end, take the init's byte and remove the fifo."""
    import select
    import time

    fd = fastos.open(path, fastos.O_RDONLY | fastos.O_NONBLOCK | fastos.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            # POLLHUP is only raised for a reader after a writer has come and gone
            # (pipe_poll in fs/pipe.c), so an empty wait means "not yet".
            if poller.poll(50):
                data = fastos.read(fd, 1)
                if data:
                    break
                raise IllegalStateError("container init exited before it could be started")
            if not init_alive():
                raise IllegalStateError("cannot start a container that has stopped")
            if time.monotonic() > deadline:
                raise IllegalStateError("container init did not answer the start request")
    finally:
        fastos.close(fd)
    fastos.unlink(path)


def signal_start(dir_fd: int, name: str) -> None:
    """Init side: block until ``start`` opens the fifo, then hand it the byte."""
    fd = fastos.open(name, fastos.O_WRONLY | fastos.O_CLOEXEC, dir_fd=dir_fd)
    try:
        fastos.write(fd, b"0")
    finally:
        fastos.close(fd)
