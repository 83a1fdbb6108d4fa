"""The pipe protocol between ``create`` and the init it forks, on every platform.

Two pipes join them. On the *sync* pipe the child sends one JSON line: ``{"ready":
true}`` once it is set up, or ``{"error": "..."}`` (then it exits). On the *commit*
pipe the parent answers one byte once the container is recorded in the state store.
Until that byte arrives the child dies with its parent (a parent-death signal), so a
``create`` killed half-way leaves no process behind; after it, the child drops the
parent-death signal and closes its end of the sync pipe, and the parent waits for
that EOF before exiting, or its exit could still kill the child.

Parent side: :func:`read_answer`, :func:`commit`. Child side: :func:`send_ready`,
:func:`await_commit`, :func:`report_error`.
"""

from __future__ import annotations

from corral.core import fastos

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def read_answer(fd: int) -> dict[str, object]:
    """The child's one line, decoded; ``{}`` if it closed the pipe without a word."""
    from corral.core import jsonio

    chunks = []
    while True:
        chunk = fastos.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    data = b"".join(chunks).strip()
    if not data:
        return {}
    try:
        answer = jsonio.loads(data.splitlines()[-1])
    except ValueError:
        return {"error": data.decode(errors="replace")}
    return answer if isinstance(answer, dict) else {}


def commit(commit_fd: int, ack_fd: int) -> None:
    """Tell the child it is recorded, and wait until it no longer dies with us."""
    try:
        fastos.write(commit_fd, b"1")
        while fastos.read(ack_fd, 64):
            pass
    finally:
        fastos.close(commit_fd)
        fastos.close(ack_fd)


def send_ready(sync_fd: int) -> None:
    fastos.write(sync_fd, b'{"ready": true}\n')


def await_commit(
    sync_fd: int, commit_fd: int, drop_parent_death_signal: Callable[[], object]
) -> None:
    """Child: wait for the parent's byte, stop dying with it, and say so (EOF).

    Exits at once if the parent went away or failed to record the container: it is
    then cleaning up, and this process must not outlive it.
    """
    import os

    if fastos.read(commit_fd, 1) != b"1":
        os._exit(1)
    fastos.close(commit_fd)
    drop_parent_death_signal()
    fastos.close(sync_fd)


def error_message(error: BaseException) -> str:
    """One line for any exception raised while setting the container up."""
    from corral.errors import CorralError

    if isinstance(error, CorralError):
        return str(error)
    if isinstance(error, OSError):
        message = error.strerror or str(error)
        if error.filename and str(error.filename) not in message:
            message = f"{error.filename}: {message}"
        return message
    return f"{type(error).__name__}: {error}"


def report_error(sync_fd: int, error: BaseException) -> None:
    """Child: send the error to the parent, or to stderr once the parent has gone."""
    from corral.core import jsonio

    message = error_message(error)
    try:
        if sync_fd >= 0:
            fastos.write(sync_fd, (jsonio.dumps({"error": message}) + "\n").encode())
        else:
            fastos.write(2, f"corral: {message}\n".encode())
    except OSError:
        pass
