"""``run``: create, start, wait and delete, with the caller attached.

The runtime forks the init itself, so the init is this process's child and its exit
status comes from ``waitpid``. Signals sent to ``corral run`` (Ctrl-C in a terminal,
``kill`` from a supervisor) are forwarded to the container's init, as runc does: the
init is in a session of its own, so the terminal does not signal it directly.
The exit status is the program's, or 128 + the signal number that killed it.
"""

from __future__ import annotations

from corral.core import fastos

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.core.runtime import Runtime

# Every catchable signal but SIGCHLD (ours), SIGURG and SIGWINCH (no terminal to resize).
_FORWARDED = (1, 2, 3, 10, 12, 14, 15, 21, 22, 24, 25, 26, 27, 29, 30, 31)


def run_container(
    runtime: Runtime,
    container_id: str,
    bundle: str,
    *,
    detach: bool = False,
    **create_options: object,
) -> int:
    state = runtime.create(container_id, bundle, **create_options)  # type: ignore[arg-type]
    pid = int(state["pid"])
    try:
        previous = _forward_signals(pid) if not detach else {}
        runtime.start(container_id)
    except BaseException:
        runtime.delete(container_id, force=True)
        raise
    if detach:
        return 0
    try:
        status = _wait(pid)
    finally:
        _restore(previous)
        runtime.delete(container_id, force=True)
    return status


def _wait(pid: int) -> int:
    while True:
        try:
            _, status = fastos.waitpid(pid, 0)
        except ChildProcessError:
            return 255
        if fastos.WIFEXITED(status):
            return fastos.WEXITSTATUS(status)
        if fastos.WIFSIGNALED(status):
            return 128 + fastos.WTERMSIG(status)


def _forward_signals(pid: int) -> dict[int, object]:
    import signal

    def forward(number: int, _frame: object) -> None:
        try:
            fastos.kill(pid, number)
        except ProcessLookupError:
            pass

    previous: dict[int, object] = {}
    for number in _FORWARDED:
        previous[number] = signal.signal(number, forward)
    return previous


def _restore(previous: dict[int, object]) -> None:
    if not previous:
        return
    import signal

    for number, handler in previous.items():
        signal.signal(number, handler)  # type: ignore[arg-type]
