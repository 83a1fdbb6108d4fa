"""The pipe protocol between ``create`` and the init it forks, on every platform.

Two pipes join them: the *sync* pipe carries JSON lines from the child to the parent,
the *commit* pipe single bytes from the parent to the child. The exchange:

=====================================  ===============================================
child, on the sync pipe                parent, on the commit pipe
=====================================  ===============================================
``{"request": "<name>"}`` (0 or more)  :data:`CONTINUE` once it has done the work
                                       ``<name>`` stands for (e.g. ``"hooks"``: run
                                       the ``prestart`` and ``createRuntime`` hooks
                                       while the init waits before ``pivot_root``)
``{"ready": true}`` (set up)           :data:`COMMITTED` once the container is
                                       recorded in the state store
or ``{"error": "..."}``, then exit     nothing: it kills and reaps the child
=====================================  ===============================================

The child writes a line and then waits for the parent's byte (or exits), so a read
of the sync pipe never holds more than one line. When the parent cannot do what a
request asked, it kills the child rather than answer; if it dies, the child reads end
of file and exits, so either way no half-made container goes on.

Until :data:`COMMITTED` arrives the child dies with its parent (a parent-death
signal), so a ``create`` killed half-way leaves no process behind; after it, the
child drops the parent-death signal and closes its end of the sync pipe, and the
parent waits for that EOF before exiting, or its exit could still kill the child.

Parent side: :func:`read_answer`, :func:`serve_requests`, :func:`commit`.
Child side: :func:`ask_parent`, :func:`send_ready`, :func:`await_commit` (the init),
:func:`await_release` (a process of ``exec``), :func:`report_error`.
"""

from __future__ import annotations

from corral.core import fastos

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

CONTINUE = b"c"  # the parent did what a request asked; the child goes on
COMMITTED = b"1"  # the container is recorded; the child may outlive the parent
HOOKS = "hooks"  # request: run the runtime-namespace create hooks (prestart, createRuntime)
TIME_OFFSETS = "time-offsets"  # request: write the time namespace's offsets (user ns only)
NET_DEVICES = "net-devices"  # request: move linux.netDevices into the new network namespace


def read_answer(fd: int) -> dict[str, object]:
    """The child's next line, decoded; ``{}`` if it closed the pipe without a word."""
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


def serve_requests(
    sync_fd: int, commit_fd: int, handlers: Mapping[str, Callable[[], object]]
) -> dict[str, object]:
    """Parent: answer the child's requests until its final line, and return that line.

    ``handlers`` maps a request's name to the work it stands for; each request is
    answered with :data:`CONTINUE` once its handler returns. An exception from a
    handler propagates unanswered (the caller then kills the child). A request with no
    handler ends the exchange as an error, as does end of file.
    """
    while True:
        answer = read_answer(sync_fd)
        name = answer.get("request")
        if name is None:
            return answer
        handler = handlers.get(name) if isinstance(name, str) else None
        if handler is None:
            return {"error": f"container init sent an unknown request {name!r}"}
        handler()
        try:
            fastos.write(commit_fd, CONTINUE)
        except BrokenPipeError:
            # The child failed while the handler ran (ask_parent's ``meanwhile`` runs
            # then) and has exited: its error line, or end of file, is read next.
            continue


def commit(commit_fd: int, ack_fd: int) -> None:
    """Tell the child it is recorded, and wait until it no longer dies with us."""
    try:
        fastos.write(commit_fd, COMMITTED)
        while fastos.read(ack_fd, 64):
            pass
    finally:
        fastos.close(commit_fd)
        fastos.close(ack_fd)


def ask_parent(
    sync_fd: int, commit_fd: int, name: str, meanwhile: Callable[[], object] | None = None
) -> None:
    """Child: send request ``name`` and wait until the parent has done the work.

    ``meanwhile`` runs between the request and the wait: work that does not need the
    answer overlaps the parent's. Exits at once if the parent went away instead of
    answering: it is then cleaning up (or dead), and the container must not be set up
    any further.
    """
    import os

    from corral.core import jsonio

    fastos.write(sync_fd, (jsonio.dumps({"request": name}) + "\n").encode())
    if meanwhile is not None:
        meanwhile()
    if fastos.read(commit_fd, 1) != CONTINUE:
        os._exit(1)


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

    if fastos.read(commit_fd, 1) != COMMITTED:
        os._exit(1)
    fastos.close(commit_fd)
    drop_parent_death_signal()
    fastos.close(sync_fd)


def await_release(sync_fd: int, commit_fd: int) -> None:
    """Child of ``exec``: say "ready", then wait for :data:`COMMITTED` and close
    ``commit_fd``. Exits at once if the runtime gave up instead (it kills this process
    too). ``sync_fd`` stays open: it is close-on-exec, and its end of file at execve(2)
    tells the runtime the program runs."""
    import os

    send_ready(sync_fd)
    if fastos.read(commit_fd, 1) != COMMITTED:
        os._exit(1)
    fastos.close(commit_fd)


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
