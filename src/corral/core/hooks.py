"""Running OCI hooks: one program per hook, the container's state on its stdin.

config.md ("POSIX-platform Hooks") fixes the contract: ``path`` is executed with ``args``
as its argv and ``env`` as its whole environment, the state JSON of runtime.md
("State") arrives on stdin, and a hook that outlives ``timeout`` seconds is aborted.
Details the spec leaves open follow runc, which clients and hook authors know:

* ``args`` empty: argv is ``[path]`` (Go's ``exec.Cmd`` does the same);
* ``env`` empty: the hook gets an empty environment, not the runtime's;
* the working directory is the caller's unless ``cwd`` is given (runc's hooks inherit
  runc's, which is the bundle for ``create`` and ``run`` because runc chdirs there);
* stdout and stderr are captured, not passed through: they would land in the
  container's stdio (the init keeps ``create``'s) or corrupt ``state``-like output.
  The last 4 KiB of each are kept for the error; its message quotes the last line,
  which is where a shell ``set -e`` failure or a Python traceback says what went wrong.

The hook is forked and exec'd here rather than through :mod:`subprocess` (7-11 ms to
import, on the ``create`` path). The child puts itself in its own process group so a
timeout can SIGKILL the hook with everything it started, closes every descriptor from 3
up (close_range(2)/closefrom(2) behind :func:`os.closerange`) so no fd of the runtime
(state directory, exec fifo, sync pipes) leaks into a hook, and gives every signal its
default disposition and an empty mask back: Python ignores SIGPIPE and SIGXFSZ, and an
ignored signal stays ignored across execve(2) (signal(7)). A failure before execve
travels back over a close-on-exec pipe, which execve closes on success.
"""

from __future__ import annotations

import os
import time

from corral.core.jsonio import dumps
from corral.errors import CreateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Callable
    from typing import Any, NoReturn

    from corral.spec.hooks import Hook
else:
    import _signal

KEEP = 4096  # bytes of stdout and of stderr kept for the error message
_LINE = 200  # characters of that output quoted in the one-line message
_READ = 65536
# While a hook's pipes stay open, how often to check whether the hook itself has exited:
# a daemon it started may hold them open for ever, and runc would then hang.
_TICK = 0.05


class HookError(CreateError):
    """A hook failed: it could not start, exited non-zero, was killed or timed out.

    ``where`` is its JSON path (``hooks.createRuntime[0]``); ``stdout`` and ``stderr``
    hold the last :data:`KEEP` bytes it wrote to each.
    """

    def __init__(
        self, where: str, path: str, reason: str, stdout: bytes = b"", stderr: bytes = b""
    ) -> None:
        self.where = where
        self.path = path
        self.reason = reason
        self.stdout = stdout
        self.stderr = stderr
        line = _last_line(stderr) or _last_line(stdout)
        super().__init__(f"{where} ({path}): {reason}" + (f": {line}" if line else ""))


def run_hooks(
    hooks: list[Hook],
    state: dict[str, Any],
    *,
    kind: str,
    warn: Callable[[str], None] | None = None,
    cwd: str | None = None,
) -> None:
    """Run ``hooks`` (the ``kind`` list, named as in config.json) in order.

    The first failure raises :class:`HookError`, unless ``warn`` is given: then each
    failure is passed to it as one line and the remaining hooks still run, as
    runtime.md requires of ``poststop`` hooks.
    """
    if not hooks:
        return
    data = dumps(state).encode()
    for index, hook in enumerate(hooks):
        try:
            _run(hook, data, f"hooks.{kind}[{index}]", cwd)
        except HookError as error:
            if warn is None:
                raise
            warn(str(error))


def run_hook(hook: Hook, state: dict[str, Any], *, where: str, cwd: str | None = None) -> None:
    """Run one hook with ``state`` as JSON on its stdin; raise :class:`HookError` if it fails.

    ``where`` names the hook in the error (``hooks.poststart[1]``).
    """
    _run(hook, dumps(state).encode(), where, cwd)


def _run(hook: Hook, data: bytes, where: str, cwd: str | None) -> None:
    deadline = None if hook.timeout is None else time.monotonic() + hook.timeout
    try:
        pid, stdin, stdout, stderr = _spawn(hook, cwd)
    except _StartError as error:
        raise HookError(where, hook.path, str(error)) from None
    except OSError as error:
        raise HookError(where, hook.path, f"cannot start: {error.strerror}") from None
    output = _Output()
    open_fds = {stdin, stdout, stderr}
    try:
        status = _communicate(pid, data, (stdin, stdout, stderr), open_fds, deadline, output)
    except BaseException:
        _kill(pid)
        os.waitpid(pid, 0)
        raise
    finally:
        for fd in open_fds:
            os.close(fd)
    if status is None:
        _kill(pid)
        os.waitpid(pid, 0)
        reason = f"did not finish within {hook.timeout} s, killed with SIGKILL"
    elif os.WIFSIGNALED(status):
        from corral.core.signals import signal_name

        reason = f"killed by {signal_name(os.WTERMSIG(status))}"
    elif os.WEXITSTATUS(status) != 0:
        reason = f"exit status {os.WEXITSTATUS(status)}"
    else:
        return
    raise HookError(where, hook.path, reason, output.tail("out"), output.tail("err"))


class _StartError(Exception):
    """The child could not get as far as execve(2); the text says which step failed."""


def _spawn(hook: Hook, cwd: str | None) -> tuple[int, int, int, int]:
    """Fork and exec the hook; return its pid and our ends of its stdin, stdout, stderr."""
    argv = hook.args or [hook.path]
    env: dict[str, str] = {}
    for item in hook.env:
        name, _, value = item.partition("=")
        env[name] = value  # a later entry wins, as with runc's
    opened: list[int] = []
    try:
        for _ in range(4):
            opened.extend(os.pipe())  # close-on-exec, as Python opens everything
        in_r, in_w, out_r, out_w, err_r, err_w, report_r, report_w = opened
        pid = os.fork()
        if pid == 0:
            _child(hook.path, argv, env, cwd, (in_r, out_w, err_w), report_w)
    except BaseException:
        for fd in opened:
            os.close(fd)
        raise
    for fd in (in_r, out_w, err_w, report_w):
        os.close(fd)
    try:
        # Also here, not only in the child: a timeout may strike before the child runs.
        os.setpgid(pid, pid)
    except OSError:
        pass  # the child got there first and has exec'd (EACCES), or has died (ESRCH)
    try:
        report = _read_all(report_r)
    finally:
        os.close(report_r)
    if report:
        os.waitpid(pid, 0)
        for fd in (in_w, out_r, err_r):
            os.close(fd)
        raise _StartError(report.decode("utf-8", "replace"))
    return pid, in_w, out_r, err_r


def _child(
    path: str,
    argv: list[str],
    env: dict[str, str],
    cwd: str | None,
    stdio: tuple[int, int, int],
    report: int,
) -> NoReturn:
    """In the forked child: set up the hook's process and exec it; never return."""
    step = "cannot start"
    try:
        os.setpgid(0, 0)
        if min(stdio) < 3 or report < 3:
            # The runtime ran with 0, 1 or 2 closed, so a pipe got one of them: move every
            # pipe above 2 first, or dup2 onto 0-2 below would overwrite another pipe.
            import fcntl

            stdio = (
                fcntl.fcntl(stdio[0], fcntl.F_DUPFD_CLOEXEC, 3),
                fcntl.fcntl(stdio[1], fcntl.F_DUPFD_CLOEXEC, 3),
                fcntl.fcntl(stdio[2], fcntl.F_DUPFD_CLOEXEC, 3),
            )
            report = fcntl.fcntl(report, fcntl.F_DUPFD_CLOEXEC, 3)
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)  # the copy is inheritable: dup2(2) clears FD_CLOEXEC
        os.closerange(3, report)
        os.closerange(report + 1, 2**31 - 1)
        if cwd is not None:
            step = f'cannot change to directory "{cwd}"'
            os.chdir(cwd)
        step = "cannot start"
        for number in _signal.valid_signals():
            if number in (_signal.SIGKILL, _signal.SIGSTOP):
                continue
            try:
                _signal.signal(number, _signal.SIG_DFL)
            except (OSError, ValueError):
                pass  # a signal the C library reserves for itself
        _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
        step = "cannot execute"
        os.execve(path, argv, env)
    except OSError as error:
        _report(report, f"{step}: {error.strerror}")
    except BaseException as error:  # e.g. ValueError for an embedded NUL
        _report(report, f"{step}: {error}")
    finally:
        os._exit(127)


def _report(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode("utf-8", "replace"))
    except OSError:
        pass  # the parent then sees exit status 127 without a reason


def _communicate(
    pid: int,
    data: bytes,
    pipes: tuple[int, int, int],
    open_fds: set[int],
    deadline: float | None,
    output: _Output,
) -> int | None:
    """Feed ``data`` to the hook and collect its output until it exits or times out.

    ``pipes`` are our ends of its stdin, stdout and stderr; each is closed and removed
    from ``open_fds`` when done with (stdin must close for the hook to see end of file).
    Return the hook's wait status, or None once ``deadline`` has passed.
    """
    import select

    stdin, stdout, stderr = pipes
    names = {stdout: "out", stderr: "err"}
    poller = select.poll()
    for fd in pipes:
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLOUT if fd == stdin else select.POLLIN)
    view = memoryview(data)
    written = 0
    while open_fds:
        wait = _TICK if deadline is None else min(_TICK, deadline - time.monotonic())
        if wait <= 0:
            return None
        events = poller.poll(wait * 1000)
        if not events:
            # Nothing to read or write: has the hook exited, leaving its pipes to others?
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                _drain(names, open_fds, output)
                return status
        for fd, _ in events:
            if fd == stdin:
                try:
                    written += os.write(fd, view[written:])
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    written = len(data)  # the hook does not read its stdin: its choice
                if written < len(data):
                    continue
            else:
                try:
                    if output.read(fd, names[fd]):
                        continue
                except BlockingIOError:
                    continue
            poller.unregister(fd)
            open_fds.discard(fd)
            os.close(fd)
    return _wait(pid, deadline)


def _wait(pid: int, deadline: float | None) -> int | None:
    """Reap the hook, whose pipes are closed; None if it is still running at ``deadline``."""
    if deadline is None:
        return os.waitpid(pid, 0)[1]
    pause = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(pause, left))
        pause = min(pause * 2, _TICK)


def _drain(names: dict[int, str], open_fds: set[int], output: _Output) -> None:
    """Read what the exited hook left in its pipes, without waiting for more."""
    for fd, name in names.items():
        try:
            while fd in open_fds and output.read(fd, name):
                pass
        except BlockingIOError:
            pass  # all there is for now; a process the hook started may write more


class _Output:
    """The last :data:`KEEP` bytes of each of the hook's output streams."""

    __slots__ = ("err", "out")

    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()

    def read(self, fd: int, name: str) -> bool:
        """Read once from ``fd`` into stream ``name``; False at end of file.

        Raises BlockingIOError when the pipe is empty but still open.
        """
        chunk = os.read(fd, _READ)
        if not chunk:
            return False
        buffer: bytearray = getattr(self, name)
        buffer += chunk
        if len(buffer) > 2 * KEEP:
            del buffer[:-KEEP]
        return True

    def tail(self, name: str) -> bytes:
        buffer: bytearray = getattr(self, name)
        return bytes(buffer[-KEEP:])


def _last_line(output: bytes) -> str:
    for raw in reversed(output.decode("utf-8", "replace").splitlines()):
        line = raw.strip()
        if line:
            return line if len(line) <= _LINE else line[: _LINE - 3] + "..."
    return ""


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _kill(pid: int) -> None:
    """SIGKILL the hook's process group, and the hook itself should it have left it."""
    for kill, target in ((os.killpg, pid), (os.kill, pid)):
        try:
            kill(target, _signal.SIGKILL)
        except OSError:
            pass  # already gone
