"""``process.terminal`` in the Linux init: a pty made inside the container.

The pseudo-terminal must belong to the container's own devpts instance, so that the
program's ``tty`` names ``/dev/pts/N`` of the container and the pty dies with it. So
the init opens it only after ``pivot_root``, from the container's ``/dev/ptmx``
(pts(4): with ``newinstance`` devpts that is a link to ``pts/ptmx``). The console
socket's path, though, lives on the host and no longer resolves by then, so the init
connects to it first (:func:`connect_early`), and sends on that connection later.

:func:`setup_terminal` then does what runc's init does, in its order:

1. open ``/dev/ptmx`` and check that it is the pty multiplexer (5:2, devices.txt), not
   some file an image put there; unlock the slave (TIOCSPTLCK) and open it with
   TIOCGPTPEER (Linux 4.13), which needs no path: a path under ``/dev/pts`` could be
   swapped for a link between the lookup and the open (the class of race of
   CVE-2025-52565). Older kernels fall back to ``/dev/pts/N`` with ``O_NOFOLLOW`` and
   a check of the device number;
2. set ``process.consoleSize`` on it, when both sizes are non-zero (as runc: zero
   means "unknown", and a 0x0 terminal breaks full-screen programs);
3. bind-mount the slave onto ``/dev/console`` (config-linux.md, "Default Devices"),
   created as an empty file when missing; an existing symlink or directory there is
   refused, never followed;
4. send the master over the socket as one SCM_RIGHTS message named ``/dev/ptmx``, the
   name runc sends (the path its master was opened at; go-runc uses it only as a name);
5. make the slave the controlling terminal and fds 0, 1 and 2, and close the master
   and the socket: from then on only the receiver holds the master.

:func:`check_terminal` holds the checks made before anything exists: runc's rules for
``--console-socket`` (:func:`corral.core.console.check_console_flags`) and the
``consoleSize`` bounds (a ``struct winsize`` field is an unsigned short).

After ``pivot_root`` the host's Python library is out of reach, so every module this
code needs is imported here, at the top, and this module must be imported (it is, by
calling :func:`connect_early`) before the init pivots.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import termios  # noqa: F401 - core.console needs it after pivot_root (TIOCSWINSZ, TIOCSCTTY)

from corral.core import console
from corral.linux.syscalls import MS_BIND
from corral.spec.reader import Fields

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Spec

# The name sent with the master: the path runc opened its master at.
MASTER_NAME = "/dev/ptmx"
# Documentation/admin-guide/devices.txt: the multiplexer is 5:2 (also devpts's own
# "ptmx" node); Unix98 slaves use majors 136-143, minor = number % 256.
PTMX_DEVICE = (5, 2)
PTS_FIRST_MAJOR = 136
PTS_MAJORS = 8
# <asm-generic/ioctls.h> (x86_64, aarch64, riscv; the architectures corral knows):
# Python's termios exports none of them.
TIOCGPTN = 0x80045430  # _IOR('T', 0x30, unsigned int)
TIOCSPTLCK = 0x40045431  # _IOW('T', 0x31, int)
TIOCGPTPEER = 0x5441  # _IO('T', 0x41)
MAX_SIZE = 65535  # struct winsize's unsigned short


def check_terminal(spec: Spec, console_socket: str | None, detached: bool) -> None:
    """Refuse a terminal setting that cannot work, before anything is created.

    ``detached`` is true when the runtime returns before the program ends (``create``,
    ``run --detach``): the master must then go to a ``--console-socket``.
    ``consoleSize`` is checked only with a terminal: config.md says runtimes MUST
    ignore it otherwise.
    """
    terminal = spec.process is not None and spec.process.terminal
    console.check_console_flags(terminal, console_socket, detached=detached)
    if terminal:
        console_size(spec)


def console_size(spec: Spec) -> tuple[int, int] | None:
    """``process.consoleSize`` as ``(height, width)``; None without a terminal or size.

    Raises ConfigError naming the field for a size that is not an integer 0-65535.
    """
    process = spec.raw.get("process")
    if spec.process is None or not spec.process.terminal or not isinstance(process, dict):
        return None
    size = Fields(process, "process").obj("consoleSize")
    if size is None:
        return None
    height = size.integer("height", required=True, minimum=0, maximum=MAX_SIZE)
    width = size.integer("width", required=True, minimum=0, maximum=MAX_SIZE)
    assert height is not None and width is not None  # required=True
    return height, width


def connect_early(path: str) -> int:
    """Connect to the console socket at ``path`` while it still resolves; the fd.

    Call it in the init before it joins a user namespace or pivots: the socket is a
    host path, and owned by a host user. The fd is close-on-exec, and
    :func:`setup_terminal` closes it.
    """
    return console.connect_console(path)


def setup_terminal(
    sc: Syscalls,
    console_fd: int,
    console_size: tuple[int, int] | None,
    *,
    owner: tuple[int, int] | None = None,
    dev: str = "/dev",
    bind_console: bool = True,
) -> None:
    """Give the init a pty of the container's devpts and send its master (module doc).

    Run after ``pivot_root``, in a new session (setsid(2)), while still root. With
    ``owner`` (uid, gid) the slave is given to the program's user, as runc does, so
    it can change its own terminal's mode. ``console_fd`` is closed in every case.
    ``dev`` is where ``ptmx`` and ``console`` are: tests pass a directory. An exec'd
    process passes ``bind_console=False``: ``/dev/console`` is the init's terminal.
    """
    try:
        master, slave, number = open_container_pty(f"{dev}/ptmx")
    except BaseException:
        os.close(console_fd)
        raise

    def prepare_slave(slave: int) -> None:
        if owner is not None:
            os.fchown(slave, owner[0], owner[1])
        if bind_console:
            mount_console(sc, slave, number, dev)

    console.hand_over_pty(
        console_fd, master, slave, MASTER_NAME, console_size, prepare_slave=prepare_slave
    )


def open_container_pty(ptmx: str = "/dev/ptmx") -> tuple[int, int, int]:
    """Open a pty pair from ``ptmx``: ``(master, slave, N of /dev/pts/N)``, close-on-exec.

    Neither end becomes the caller's controlling terminal (O_NOCTTY).
    """
    flags = os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC
    try:
        master = os.open(ptmx, flags)
    except OSError as error:
        raise OSError(error.errno, f"open {ptmx}: {error.strerror}") from None
    try:
        st = os.fstat(master)
        if not stat.S_ISCHR(st.st_mode) or _device(st.st_rdev) != PTMX_DEVICE:
            raise OSError(errno.ENOTTY, f"{ptmx}: not the pty multiplexer (5:2)")
        try:
            fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))  # unlockpt(3)
            (number,) = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))
        except OSError as error:
            raise OSError(error.errno, f"{ptmx}: unlock the pty: {error.strerror}") from None
        slave = _open_slave(master, number, flags)
    except BaseException:
        os.close(master)
        raise
    return master, slave, number


def _open_slave(master: int, number: int, flags: int) -> int:
    path = f"/dev/pts/{number}"
    try:
        slave = fcntl.ioctl(master, TIOCGPTPEER, flags)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTTY):  # before Linux 4.13
            raise OSError(error.errno, f"open the peer of {path}: {error.strerror}") from None
        try:
            slave = os.open(path, flags | os.O_NOFOLLOW)
        except OSError as open_error:
            raise OSError(open_error.errno, f"open {path}: {open_error.strerror}") from None
    try:
        st = os.fstat(slave)
        major, minor = _device(st.st_rdev)
        if (
            not stat.S_ISCHR(st.st_mode)
            or not PTS_FIRST_MAJOR <= major < PTS_FIRST_MAJOR + PTS_MAJORS
            or (major - PTS_FIRST_MAJOR) * 256 + minor != number
        ):
            raise OSError(errno.ENOTTY, f"{path}: not the slave of the pty opened")
    except BaseException:
        os.close(slave)
        raise
    return slave


def _device(rdev: int) -> tuple[int, int]:
    return os.major(rdev), os.minor(rdev)


def mount_console(sc: Syscalls, slave: int, number: int, dev: str = "/dev") -> None:
    """Bind the pty slave ``slave`` (``/dev/pts/<number>``) onto ``<dev>/console``.

    Both ends are named through ``/proc/self/fd`` when the container has a ``/proc``,
    so neither path is looked up again after it was checked; without one, the paths
    (resolved in the container's root: they cannot lead to the host).
    """
    dev_fd = os.open(dev, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        target = _console_file(dev_fd, dev)
    finally:
        os.close(dev_fd)
    try:
        if os.path.isdir("/proc/self/fd"):
            source, destination = f"/proc/self/fd/{slave}", f"/proc/self/fd/{target}"
        else:
            source, destination = f"/dev/pts/{number}", f"{dev}/console"
        try:
            sc.mount(source, destination, None, MS_BIND, None)
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise OSError(error.errno, f"bind the terminal on {dev}/console: {reason}") from None
    finally:
        os.close(target)


def _console_file(dev_fd: int, dev: str) -> int:
    """An ``O_PATH`` fd of ``console`` in ``dev_fd``, made an empty file when missing."""
    path = f"{dev}/console"
    try:
        fd = os.open("console", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dev_fd)
    except FileNotFoundError:
        # O_EXCL|O_NOFOLLOW: never create through a link that appeared meanwhile.
        create = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open("console", create, 0o666, dir_fd=dev_fd)
        except OSError as error:
            raise OSError(error.errno, f"create {path}: {error.strerror}") from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISLNK(mode) or stat.S_ISDIR(mode):
        os.close(fd)
        kind = "a symlink" if stat.S_ISLNK(mode) else "a directory"
        raise OSError(errno.EEXIST, f"{path}: is {kind}, cannot bind the terminal on it")
    return fd
