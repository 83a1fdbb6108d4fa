"""The container's init, from ``fork()`` to ``execve()``.

This runs in the child that :mod:`corral.linux.backend` forks. The parent has already
put it in its pid namespace (a new one makes it pid 1). Here it joins or creates the
other namespaces, builds the root filesystem, sets the process attributes, tells the
parent it is ready, and blocks on the exec fifo until ``start``. Each step is one call
into a module that does one thing; the order is the contract (runc's, and the spec's):

1. non-dumpable, new session, session keyring;
2. ``setns`` for namespaces given by path, ``unshare`` for the new ones;
3. mounts and devices, ``pivot_root``, hostname, sysctls, masked and read-only paths;
4. rlimits and oom score (while still root), then user, groups, capabilities, cwd,
   umask, no_new_privs;
5. "ready" to the parent, wait on the fifo, exec.

Any exception becomes one error line sent to the parent, then ``_exit(1)``; the init
never returns into the runtime's code.
"""

from __future__ import annotations

import os

from corral.core import handshake
from corral.linux import syscalls as sc_

SIGKILL = 9

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from corral.backend import CreateRequest
    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Namespace


def run_init(
    sc: Syscalls,
    request: CreateRequest,
    sync_fd: int,
    commit_fd: int,
    ns_fds: dict[str, int],
) -> NoReturn:
    """Set the container up, report to the parent over ``sync_fd``, wait, exec.

    Until the parent has recorded this process (one byte on ``commit_fd``), it dies with
    the parent (PR_SET_PDEATHSIG), so a ``create`` killed half-way leaves no orphan.
    """
    try:
        from corral.core.execute import exec_process, resolve_executable

        # If the parent dies before this takes effect, the commit byte never comes
        # (read returns EOF) and the init exits below; getppid() cannot tell, as it is
        # 0 in a new pid namespace.
        sc.prctl(sc_.PR_SET_PDEATHSIG, SIGKILL)
        state_fd = _prepare(sc, request, ns_fds)
        assert request.spec.process is not None
        # Find the program now, so a missing one fails `create`, not the later `start`.
        executable = resolve_executable(request.spec.process)
        handshake.send_ready(sync_fd)
        handshake.await_commit(sync_fd, commit_fd, lambda: sc.prctl(sc_.PR_SET_PDEATHSIG, 0))
        sync_fd = -1  # from here on, errors go to the container's stderr
        from corral.core.fifo import signal_start

        signal_start(state_fd, request.fifo_name)
        os.close(state_fd)
        exec_process(request.spec.process, preserve_fds=request.preserve_fds, executable=executable)
    except BaseException as error:
        handshake.report_error(sync_fd, error)
    os._exit(1)


def _preload() -> None:
    """Import now what runs after pivot_root: from then on the host's stdlib is gone."""
    import resource  # noqa: F401 - used by Syscalls.prlimit


def _prepare(sc: Syscalls, request: CreateRequest, ns_fds: dict[str, int]) -> int:
    from corral.linux import credentials, rlimits, rootfs, sysctl

    _preload()

    spec = request.spec
    assert spec.process is not None and spec.linux is not None
    # CVE-2019-5736: until it execs, this process runs the host's Python; a container
    # process must not be able to open /proc/<pid>/exe (or ptrace it). execve(2) resets it.
    sc.prctl(sc_.PR_SET_DUMPABLE, 0)
    os.setsid()
    if not request.no_new_keyring:
        # A fresh session keyring, so the container cannot read the host's keys.
        sc.join_session_keyring(request.container_id)
    _enter_namespaces(sc, spec.linux.namespaces, ns_fds)
    # Keep a handle on the state directory: after pivot_root its path is gone, but the
    # fifo is still reachable through this fd. It is close-on-exec and closed before exec.
    state_fd = os.open(request.state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    rootfs.setup_rootfs(sc, spec, request.rootfs, request.bundle)
    rootfs.enter_rootfs(sc, request.rootfs, no_pivot=request.no_pivot)
    if spec.hostname:
        sc.sethostname(spec.hostname)
    if spec.domainname:
        sc.setdomainname(spec.domainname)
    # Before finish_rootfs: the default config makes /proc/sys read-only.
    sysctl.apply_sysctl(spec.linux.sysctl)
    _create_cwd(spec.process.cwd)
    rootfs.finish_rootfs(sc, spec)
    rlimits.apply_rlimits(sc, spec.process.rlimits)
    sysctl.apply_oom_score_adj(spec.process.oom_score_adj)
    credentials.apply_credentials(sc, spec.process)
    return state_fd


def _create_cwd(cwd: str) -> None:
    """Create a missing ``process.cwd`` as runc does (images often name a WORKDIR
    that no layer creates). We are inside the container's root by now, so the path
    cannot lead out of it; and it is done before the root is made read-only."""
    if not os.path.isdir(cwd):
        try:
            os.makedirs(cwd, 0o755, exist_ok=True)
        except OSError as error:
            raise OSError(error.errno, f'process.cwd "{cwd}": {error.strerror}') from None


def _enter_namespaces(sc: Syscalls, namespaces: list[Namespace], ns_fds: dict[str, int]) -> None:
    flags = 0
    for ns in namespaces:
        if ns.type == "pid":
            continue  # the parent did it: a pid namespace applies to children only
        if ns.path:
            sc.setns(ns_fds[ns.type], sc_.NAMESPACE_FLAGS[ns.type], ns.path)
            os.close(ns_fds[ns.type])
        else:
            flags |= sc_.NAMESPACE_FLAGS[ns.type]
    if flags:
        sc.unshare(flags)
