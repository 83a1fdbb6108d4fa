"""The init's last act: find the program, clean the process up, execve(2) it.

POSIX only, so the Linux init and the FreeBSD entrypoint share it.

The program is looked up like execvp(3) does, but with the ``PATH`` of ``process.env``
(the container's), not the runtime's, and with the default of runc when it is unset.
Errors read as runc's, which clients match: Docker maps "executable file not found" and
"no such file or directory" to exit status 127. :func:`resolve_executable` can run
before the init reports ready, so a missing program fails ``create`` as with runc.

Before execve the init undoes what Python did to itself:

* signal dispositions: Python ignores SIGPIPE and SIGXFSZ, and an ignored disposition
  survives execve(2) (signal(7)); a shell in the container would never see SIGPIPE.
  Every signal gets SIG_DFL back, and the mask is emptied (it is inherited too);
* file descriptors: every fd from ``3 + preserve_fds`` up is made close-on-exec, so no
  descriptor of the host (state directory, sync pipe, namespace files) reaches the
  container (CVE-2024-21626 leaked one). Descriptors below that are left as they are.

``_signal`` is the C half of ``signal``; the Python half imports ``enum`` (about 2.5 ms
on every ``create``) only to wrap numbers this module does not need wrapped.
"""

from __future__ import annotations

import os
import stat

from corral.errors import CreateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from typing import NoReturn

    from corral.spec.model import Process
else:
    import _signal

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def exec_environment(env: list[str], uid: int, passwd: str = "/etc/passwd") -> dict[str, str]:
    """``process.env`` as a mapping (a later entry wins, as in runc), with ``HOME`` set.

    Like runc, a missing ``HOME`` is taken from the user's entry in the container's
    ``/etc/passwd``, or "/" when there is none.
    """
    result: dict[str, str] = {}
    for entry in env:
        name, _, value = entry.partition("=")
        result[name] = value
    if "HOME" not in result:
        result["HOME"] = _home_directory(uid, passwd)
    return result


def _home_directory(uid: int, passwd: str) -> str:
    try:
        with open(passwd, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "/"
    for line in lines:
        fields = line.split(":")
        # name:password:uid:gid:gecos:home:shell (passwd(5))
        if len(fields) >= 6 and fields[2] == str(uid) and fields[5]:
            return fields[5]
    return "/"


def find_executable(name: str, search_path: str) -> str:
    """The file execve(2) should run for ``args[0]``; raise CreateError if there is none.

    A name with a slash is used as it is (relative to the working directory); otherwise
    each ``search_path`` entry is tried in turn, an empty entry meaning the current
    directory, as in execvp(3). A candidate must be a non-directory executable by the
    (already changed) user.
    """
    if "/" in name:
        problem = _not_executable(name)
        if problem:
            raise CreateError(f'exec: "{name}": {problem}')
        return name
    for directory in search_path.split(":"):
        candidate = (directory or ".") + "/" + name
        if not _not_executable(candidate):
            return candidate
    raise CreateError(f'exec: "{name}": executable file not found in $PATH')


def _not_executable(path: str) -> str:
    """Why ``path`` cannot be executed, in Go's words as runc says them; "" if it can."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return f"stat {path}: {_lower(os.strerror(error.errno) if error.errno else str(error))}"
    if stat.S_ISDIR(mode) or not os.access(path, os.X_OK, effective_ids=True):
        return "permission denied"
    return ""


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def resolve_executable(process: Process) -> str:
    """Find ``process.args[0]`` with the container's ``PATH`` (run it inside the root)."""
    search_path = DEFAULT_PATH
    for entry in process.env:
        if entry.startswith("PATH="):
            search_path = entry[5:]  # the last one wins, as in the environment built
    return find_executable(process.args[0], search_path)


def reset_signals() -> None:
    """Every disposition back to SIG_DFL and an empty mask: both survive execve(2)."""
    for number in _signal.valid_signals():
        if number in (_signal.SIGKILL, _signal.SIGSTOP):
            continue  # their dispositions cannot be changed
        try:
            _signal.signal(number, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # a signal the C library reserves for itself
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


def close_inherited_fds(first: int) -> None:
    """Make every open descriptor from ``first`` up close-on-exec.

    The descriptors are listed from ``/proc/self/fd`` (Linux) or ``/dev/fd`` (FreeBSD
    with fdescfs); where neither lists them, every possible one is closed outright,
    which is as good since only ``execve`` follows.
    """
    for listing in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(listing)
        except OSError:
            continue
        if len(names) > 3 or listing == "/proc/self/fd":
            break  # FreeBSD's /dev/fd without fdescfs lists only 0, 1 and 2
    else:
        os.closerange(first, _max_fd())
        return
    for name in names:
        fd = int(name)
        if fd >= first:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the descriptor listdir used, closed by now


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (OSError, ValueError):
        return 65536


def exec_process(process: Process, *, preserve_fds: int, executable: str | None = None) -> NoReturn:
    """Replace the init with the container's program; return only by raising CreateError.

    ``executable`` is the result of an earlier :func:`resolve_executable`, if any.
    """
    path = executable if executable is not None else resolve_executable(process)
    env = exec_environment(process.env, process.user.uid)
    close_inherited_fds(3 + preserve_fds)
    reset_signals()
    try:
        os.execve(path, process.args, env)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise CreateError(f"exec {path}: {_lower(reason)}") from error
    except ValueError as error:  # a NUL byte in an argument or the environment
        raise CreateError(f"exec {path}: {error}") from error
