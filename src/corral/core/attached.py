"""A child the runtime stays attached to: signals forwarded, its exit status.

``corral run`` (the container's init) and ``corral exec`` without ``--detach`` (the
new process) both wait for a child of theirs as runc does. The child is in a session
of its own, so a terminal's Ctrl-C reaches the runtime only: every catchable signal
but SIGCHLD (the runtime's own), SIGURG and SIGWINCH (a resize, not a signal for the
program: with a terminal it becomes TIOCSWINSZ) is passed on to it
(:func:`forward_signals`), and the old handlers come back after
(:func:`restore_signals`). The status is the program's exit status, or 128 + the
signal that killed it, as a shell reports it (:func:`wait_exit_status`).

The C module ``_signal`` is used, not ``signal``: its enums cost about 2 ms to
import, which a plain ``exec`` would pay for nothing.
"""

from __future__ import annotations

from corral.core import fastos

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
else:
    import _signal

FORWARDED_SIGNALS = (1, 2, 3, 10, 12, 14, 15, 21, 22, 24, 25, 26, 27, 29, 30, 31)


def forward_signals(pid: int) -> dict[int, object]:
    """Send the signals this process receives on to ``pid``; the old handlers."""

    def forward(number: int, _frame: object) -> None:
        try:
            fastos.kill(pid, number)
        except ProcessLookupError:
            pass  # it has just ended: the wait reports it

    return {number: _signal.signal(number, forward) for number in FORWARDED_SIGNALS}


def restore_signals(previous: dict[int, object]) -> None:
    """Put back the handlers :func:`forward_signals` (or ``signal.signal``) returned."""
    for number, handler in previous.items():
        # signal.signal returns SIG_DFL/SIG_IGN as enums, which _signal refuses: ints.
        plain = int(handler) if isinstance(handler, int) else handler
        _signal.signal(number, plain)  # type: ignore[arg-type]


def wait_exit_status(pid: int) -> int:
    """Wait for our child ``pid`` to end; its exit status (255 if it was reaped
    elsewhere)."""
    while True:
        try:
            _, status = fastos.waitpid(pid, 0)
        except ChildProcessError:
            return 255
        decoded = exit_status(status)
        if decoded is not None:
            return decoded


def exit_status(status: int) -> int | None:
    """A waitpid(2) status as a shell reports it: the exit code, or 128 + the signal
    that killed the process; None for a stop or a continue."""
    if fastos.WIFEXITED(status):
        return fastos.WEXITSTATUS(status)
    if fastos.WIFSIGNALED(status):
        return 128 + fastos.WTERMSIG(status)
    return None
