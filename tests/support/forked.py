"""Run a piece of test code in a forked child, as root tests of the init's steps need.

The steps change the calling process for good (namespaces, credentials, mounts), so each
runs in a child whose stdout is a pipe: :func:`in_child` returns what ``body`` returned
(or what a program it exec'd wrote), or ``"ERROR: <message>"`` if it raised.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def in_child(body: Callable[[], str | None], unshare: int = 0) -> str:
    """Run ``body`` in a child; with ``unshare`` flags, in new namespaces first (and, for
    a mount namespace, with "/" made a recursive slave so nothing reaches the host)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            os.dup2(write_fd, 1)
            if unshare:
                from corral.linux.syscalls import MS_REC, MS_SLAVE, Syscalls

                sc = Syscalls()
                sc.unshare(unshare)
                sc.mount(None, "/", None, MS_SLAVE | MS_REC, None)
            os.write(1, (body() or "").encode())
        except BaseException as error:
            os.write(1, f"ERROR: {error}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        output = f.read()
    os.waitpid(pid, 0)
    return output
