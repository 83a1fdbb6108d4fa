"""``SCMP_ACT_NOTIFY``: handing the listener descriptor to ``listenerPath``.

A filter with notify rules comes with a descriptor (seccomp_unotify(2)): a syscall
that hits such a rule waits until whoever holds it answers (``SECCOMP_IOCTL_NOTIF_RECV``
then ``..._SEND``). config-linux.md ("Seccomp", "The Container Process State") says
how the runtime gives it to the agent: connect to the unix stream socket
``listenerPath``, send one JSON *container process state*
(``{"ociVersion", "fds": ["seccompFd"], "pid", "metadata", "state"}``) with the
descriptor as ``SCM_RIGHTS`` on the first ``sendmsg(2)``, close the connection; any
failure is an error of the operation (``create`` fails).

Who sends: the init loads the filter inside the container, where ``listenerPath`` (a
host path) no longer resolves and where, in a user namespace, it may not be allowed
to connect. So, as runc does, the init asks its parent (the handshake request
:data:`REQUEST`); the parent, in the runtime's namespaces, copies the descriptor out
of the init with ``pidfd_getfd(2)`` (the init is its child and it is root, which the
ptrace access check wants), sends it with the state (status ``creating``, the init's
pid as the runtime sees it: :func:`hand_over_from_init`), and then lets the init go
on, which closes its own copy. The agent need not be quick: a notified syscall just
waits for it. It must be listening, though: a refused connection fails ``create``.
"""

from __future__ import annotations

import os

from corral.errors import CreateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.backend import CreateRequest
    from corral.linux.syscalls import Syscalls

REQUEST = "seccomp-notify"  # handshake request: send the init's listener to listenerPath
SECCOMP_FD_NAME = "seccompFd"  # its name in the state's "fds" (config-linux.md)
_NOTIFY_LINK = "anon_inode:seccomp notify"  # readlink of its /proc/<pid>/fd entry


def process_state(state: dict[str, object], pid: int, metadata: str) -> dict[str, object]:
    """The container process state of config-linux.md for one listener descriptor."""
    from corral import OCI_VERSION

    message: dict[str, object] = {
        "ociVersion": OCI_VERSION,
        "fds": [SECCOMP_FD_NAME],
        "pid": pid,
    }
    if metadata:
        message["metadata"] = metadata
    message["state"] = state
    return message


def send_to_listener(
    path: str, fd: int, message: dict[str, object], *, where: str = "linux.seccomp"
) -> None:
    """Connect to ``path``, send ``message`` as JSON with ``fd`` attached, disconnect."""
    import _socket
    import struct

    from corral.core import jsonio

    payload = jsonio.dumps(message).encode()
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(10.0)  # a listener that accepts but never reads must not hang create
        sock.connect(path)
        rights = struct.pack("i", fd)
        sent = sock.sendmsg([payload], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        if sent < len(payload):
            sock.sendall(payload[sent:])  # the descriptor went with the first part only
    except OSError as error:
        reason = error.strerror or str(error)
        raise CreateError(f'{where}.listenerPath "{path}": {reason}') from None
    finally:
        sock.close()


def find_notify_fd(pid: int, proc: str = "/proc") -> int:
    """The number of process ``pid``'s seccomp listener descriptor; CreateError if none."""
    directory = f"{proc}/{pid}/fd"
    for name in os.listdir(directory):
        try:
            if os.readlink(f"{directory}/{name}") == _NOTIFY_LINK:
                return int(name)
        except OSError:
            continue  # closed since listdir
    raise CreateError(f"linux.seccomp: the container init {pid} holds no seccomp listener")


def hand_over_from_init(sc: Syscalls, request: CreateRequest, pid: int) -> None:
    """Parent side of :data:`REQUEST`: copy the init's listener, send it, close the copy."""
    from corral.linux.init import hook_state

    seccomp = (request.spec.raw.get("linux") or {}).get("seccomp")
    state = hook_state(request, "creating", pid)
    send_listener_of(sc, pid, seccomp, state, whose="the init")


def send_listener_of(
    sc: Syscalls, pid: int, seccomp: object, state: dict[str, object], *, whose: str
) -> None:
    """Copy process ``pid``'s listener out with pidfd_getfd(2), send it to the
    ``listenerPath`` of the ``linux.seccomp`` object ``seccomp`` with the container
    state ``state``, and close the copy: the parent's side for the init and for an
    exec'd process alike. ``whose`` names the process in errors ("the init")."""
    from corral.linux.seccomp import parse_profile

    profile = parse_profile(seccomp)
    target = find_notify_fd(pid)
    pidfd = os.pidfd_open(pid)
    try:
        fd = sc.pidfd_getfd(pidfd, target)
    except OSError as error:
        raise CreateError(
            f"linux.seccomp: copying the listener out of {whose}: {error.strerror}"
        ) from None
    finally:
        os.close(pidfd)
    try:
        message = process_state(state, pid, profile.listener_metadata)
        send_to_listener(profile.listener_path, fd, message)
    finally:
        os.close(fd)
