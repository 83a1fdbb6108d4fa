"""The container's init, from ``fork()`` to ``execve()``.

This runs in the child that :mod:`corral.linux.backend` forks. The parent has already
put it in its pid namespace (a new one makes it pid 1). Here it joins or creates the
other namespaces, builds the root filesystem, sets the process attributes, tells the
parent it is ready, and blocks on the exec fifo until ``start``. Each step is one call
into a module that does one thing; the order is the contract (runc's, and the spec's).
:func:`_prepare` makes the calls in that order, one phase per function:

0. the ``cgroup-join`` request: the parent moves it into the container's cgroup;
1. :func:`_detach` - the process itself: non-dumpable, new session, session keyring;
2. :func:`_enter_namespaces` - ``setns`` for namespaces given by path, ``unshare`` for
   the new ones; the ``net-devices`` request (the parent moves ``linux.netDevices``
   into the new network namespace); then an ``O_PATH`` fd of the state directory;
3. :func:`_build_rootfs` - mounts and devices, still with the host's paths in view;
   then the create hooks (below); then ``pivot_root``;
4. :func:`_configure_container` - inside the new root: hostname, sysctls, a missing
   cwd, masked and read-only paths;
5. :func:`_configure_process` - rlimits and oom score (while still root), then user,
   groups, capabilities, cwd, umask, no_new_privs, last, as they take power away
   (without no_new_privs, the seccomp filter goes in just before them);
6. :func:`run_init` - the seccomp filter (with no_new_privs), "ready" to the parent,
   wait on the fifo, the ``startContainer`` hooks, exec.

Hooks (config.md, "POSIX-platform Hooks"), where runc runs them:

* ``prestart`` and ``createRuntime`` run in the *runtime* namespaces, so the parent
  runs them: after the mounts the init sends the ``hooks`` request of
  :mod:`corral.core.handshake` and waits; the parent runs them with the init's pid
  (as the host sees it) and answers, or kills the init if one fails;
* ``createContainer`` run here, as children of the init: in the container's
  namespaces, before ``pivot_root``, so their path still resolves in the host's
  filesystem; from the rootfs directory, with the pid as the container sees it;
* ``startContainer`` run here after ``start`` has opened the exec fifo, before the
  byte that lets ``start`` return: so they are done before the ``poststart`` hooks
  ``start`` runs (config.md: "Hooks MUST be called in the listed order"), and a failure
  makes ``start`` fail as the container stops (runtime.md, lifecycle step 7). Their
  path resolves in the container, with the process's user, capabilities and cwd.

Any exception becomes one error line sent to the parent, then ``_exit(1)``; once the
parent has let go, it goes to the container's stderr instead. The init never returns
into the runtime's code.
"""

from __future__ import annotations

import os

from corral.core import handshake
from corral.linux import syscalls as sc_

SIGKILL = 9

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn, Protocol

    from corral.backend import CreateRequest
    from corral.linux.syscalls import Syscalls

    class AskParent(Protocol):
        """Send a handshake request, run ``meanwhile``, wait for the parent's answer."""

        def __call__(self, name: str, meanwhile: Callable[[], object] | None = None) -> None: ...

    from corral.spec.model import Namespace, Spec


def run_init(
    sc: Syscalls,
    request: CreateRequest,
    sync_fd: int,
    commit_fd: int,
    ns_fds: dict[str, int],
    *,
    state_fd: int = -1,
    trees: dict[int, int] | None = None,
    console_fd: int = -1,
) -> NoReturn:
    """Set the container up, report to the parent over ``sync_fd``, wait, exec.

    ``state_fd`` is the state directory opened by the parent (an init in a user
    namespace cannot pass the 0700 state root itself); ``trees`` are idmapped mount
    trees by mount index (:mod:`corral.linux.idmap`), prepared by the parent.

    Until the parent has recorded this process (one byte on ``commit_fd``), it dies with
    the parent (PR_SET_PDEATHSIG), so a ``create`` killed half-way leaves no orphan.
    """
    try:
        from corral.core.execute import exec_process, resolve_executable

        # If the parent dies before this takes effect, the commit byte never comes
        # (read returns EOF) and the init exits below; getppid() cannot tell, as it is
        # 0 in a new pid namespace.
        sc.prctl(sc_.PR_SET_PDEATHSIG, SIGKILL)

        def ask_parent(name: str, meanwhile: Callable[[], object] | None = None) -> None:
            handshake.ask_parent(sync_fd, commit_fd, name, meanwhile)

        state_fd = _prepare(
            sc,
            request,
            ns_fds,
            ask_parent,
            state_fd=state_fd,
            trees=trees or {},
            console_fd=console_fd,
        )
        assert request.spec.process is not None
        # Find the program now, so a missing one fails `create`, not the later `start`.
        executable = resolve_executable(request.spec.process)
        _load_seccomp(request, ask_parent, no_new_privileges=True)
        handshake.send_ready(sync_fd)
        handshake.await_commit(sync_fd, commit_fd, lambda: sc.prctl(sc_.PR_SET_PDEATHSIG, 0))
        sync_fd = -1  # from here on, errors go to the container's stderr
        fifo_fd = _wait_for_start(state_fd, request.fifo_name)
        os.close(state_fd)
        _run_start_hooks(request)
        # The byte lets `start` return; if a hook failed we exit without it, and
        # `start` reads end of file and fails.
        os.write(fifo_fd, b"0")
        os.close(fifo_fd)
        exec_process(request.spec.process, preserve_fds=request.preserve_fds, executable=executable)
    except BaseException as error:
        handshake.report_error(sync_fd, error)
    os._exit(1)


def hook_state(request: CreateRequest, status: str, pid: int) -> dict[str, Any]:
    """The state runtime.md ("State") gives a hook on stdin, for a hook run during
    ``create`` or ``start``. ``pid`` is the init's as the hook's namespace sees it."""
    from corral import OCI_VERSION

    return {
        "ociVersion": OCI_VERSION,
        "id": request.container_id,
        "status": status,
        "pid": pid,
        "bundle": request.bundle,
        "annotations": request.spec.annotations,
    }


def _preload(spec: Spec) -> None:
    """Import now what runs after pivot_root: from then on the host's stdlib (and
    corral) is gone. A step added after ``enter_rootfs`` adds its modules here."""
    import resource  # noqa: F401 - used by Syscalls.prlimit

    from corral.linux import credentials, rlimits, rootfs, sysctl  # noqa: F401

    for module in _optional_process_modules(spec):
        __import__(f"corral.linux.{module}")

    if spec.process is not None and spec.process.terminal:
        from corral.linux import terminal  # noqa: F401 - loads fcntl, struct, termios

    if (spec.raw.get("linux") or {}).get("seccomp") is not None:
        from corral.linux import seccomp

        seccomp.preload()  # opens libseccomp, a host file

    if spec.hooks and spec.hooks.start_container:
        import fcntl  # noqa: F401 - corral.core.hooks, when stdio was closed
        import select  # noqa: F401 - corral.core.hooks, to feed the hook and read it

        # signals: names the signal that killed a hook, in the error
        from corral.core import hooks, signals  # noqa: F401


def _prepare(
    sc: Syscalls,
    request: CreateRequest,
    ns_fds: dict[str, int],
    ask_parent: AskParent,
    *,
    state_fd: int,
    trees: dict[int, int],
    console_fd: int,
) -> int:
    """Every step up to "ready", in order; return the state directory's fd.

    ``ask_parent(name)`` sends a handshake request and returns once the parent has
    done the work (:mod:`corral.core.handshake`); ``ask_parent(name, meanwhile)`` runs
    ``meanwhile`` before it waits.
    """
    spec = request.spec
    assert spec.process is not None and spec.linux is not None
    if request.cgroup_join:
        from corral.linux.cgroups import JOIN_REQUEST

        # First: every later step, and every child, is in the container's cgroup (its
        # limits apply), and a new cgroup namespace, unshared below, is rooted there.
        # The imports overlap the parent's work: a write to cgroup.procs can wait out an
        # RCU grace period in the kernel (cgroup_threadgroup_rwsem; ~14 ms on these
        # machines when corral.linux.cgroups.warmup could not take it first,
        # docs/performance.md), and importing runs no user code.
        ask_parent(JOIN_REQUEST, lambda: _preload(spec))
    else:
        _preload(spec)
    _detach(sc, request)
    if spec.linux.namespace("user") is not None:
        from corral.linux.userns import namespaces_for_init

        _enter_namespaces(sc, namespaces_for_init(spec.linux.namespaces), {})
    else:
        _enter_namespaces(sc, spec.linux.namespaces, ns_fds)
    if spec.linux.namespace("time") is not None:
        from corral.linux import timens

        # Before anything forks: time namespaces, like pid ones, apply to children (after
        # a setns for the caller). In a user namespace only the parent writes the offsets.
        timens.enter_time_namespace(
            sc,
            spec,
            write_offsets=(
                (lambda: ask_parent(handshake.TIME_OFFSETS))
                if spec.linux.namespace("user") is not None
                else None
            ),
        )
    if (spec.raw.get("linux") or {}).get("netDevices"):
        from corral.linux import netdevices

        # The parent moves linux.netDevices in now that the network namespace exists:
        # the interfaces are in the host's, which this process has left.
        ask_parent(netdevices.REQUEST)
    # Keep a handle on the state directory: after pivot_root its path is gone, but the
    # fifo is still reachable through this fd. It is close-on-exec and closed before exec.
    if state_fd < 0:
        state_fd = os.open(request.state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    _build_rootfs(sc, request, ask_parent, trees)
    _configure_container(sc, spec, console_fd)
    _configure_process(
        sc, spec, lambda: _load_seccomp(request, ask_parent, no_new_privileges=False)
    )
    return state_fd


def _detach(sc: Syscalls, request: CreateRequest) -> None:
    """Cut the ties to the runtime's process that the container must not share."""
    # CVE-2019-5736: until it execs, this process runs the host's Python; a container
    # process must not be able to open /proc/<pid>/exe (or ptrace it). execve(2) resets it.
    sc.prctl(sc_.PR_SET_DUMPABLE, 0)
    os.setsid()
    if not request.no_new_keyring:
        # A fresh session keyring, so the container cannot read the host's keys.
        sc.join_session_keyring(request.container_id)


def _build_rootfs(
    sc: Syscalls,
    request: CreateRequest,
    ask_parent: Callable[[str], None],
    trees: dict[int, int],
) -> None:
    """Mounts, the create hooks, then ``pivot_root`` into the container's root."""
    from corral.linux import rootfs

    spec = request.spec
    rootfs.setup_rootfs(sc, spec, request.rootfs, request.bundle, trees)
    _run_create_hooks(request, ask_parent)
    rootfs.enter_rootfs(sc, request.rootfs, no_pivot=request.no_pivot)


def _configure_container(sc: Syscalls, spec: Spec, console_fd: int) -> None:
    """What the container's namespaces hold, set from inside its root."""
    from corral.linux import rootfs, sysctl

    assert spec.process is not None and spec.linux is not None
    if spec.hostname:
        sc.sethostname(spec.hostname)
    if spec.domainname:
        sc.setdomainname(spec.domainname)
    # Before finish_rootfs: the default config makes /proc/sys read-only.
    sysctl.apply_sysctl(spec.linux.sysctl)
    _create_cwd(spec.process.cwd)
    if console_fd >= 0:
        # runc's order: after pivot_root (the pty comes from the container's devpts),
        # before read-only paths and credentials (it needs root and our new session).
        from corral.linux import terminal

        user = spec.process.user
        terminal.setup_terminal(
            sc, console_fd, terminal.console_size(spec), owner=(user.uid, user.gid)
        )
    rootfs.finish_rootfs(sc, spec)
    if (spec.raw.get("process") or {}).get("apparmorProfile"):
        from corral.linux import lsm

        lsm.apply_apparmor_profile(sc, spec)  # needs the container's /proc; before nnp


def _optional_process_modules(spec: Spec) -> list[str]:
    """The modules of the less common process settings this config uses (each import
    is paid for by every ``create``, so none is imported for nothing)."""
    raw_process = spec.raw.get("process") or {}
    raw_linux = spec.raw.get("linux") or {}
    wanted = []
    if raw_process.get("scheduler") or raw_process.get("ioPriority"):
        wanted.append("scheduling")
    if raw_linux.get("personality"):
        wanted.append("personality")
    if raw_linux.get("memoryPolicy"):
        wanted.append("mempolicy")
    if raw_process.get("apparmorProfile") or raw_process.get("selinuxLabel"):
        wanted.append("lsm")
    return wanted


def _configure_process(
    sc: Syscalls, spec: Spec, before_credentials: Callable[[], None] | None = None
) -> None:
    """The process's own attributes; the identity last, as it takes privileges away.

    ``before_credentials`` runs just before the identity is set (the seccomp filter,
    when loading it needs the capabilities the identity drops).
    """
    from corral.linux import credentials, rlimits, sysctl

    assert spec.process is not None
    rlimits.apply_rlimits(sc, spec.process.rlimits)
    sysctl.apply_oom_score_adj(spec.process.oom_score_adj)
    # runc's order, before the credentials take CAP_SYS_NICE and the rest away.
    optional = _optional_process_modules(spec)
    if "scheduling" in optional:
        from corral.linux import scheduling

        scheduling.apply_scheduler(sc, spec)
        scheduling.apply_io_priority(sc, spec)
    if "personality" in optional:
        from corral.linux import personality

        personality.apply_personality(sc, spec)
    if "mempolicy" in optional:
        from corral.linux import mempolicy

        mempolicy.apply_memory_policy(sc, spec)
    if "lsm" in optional:
        from corral.linux import lsm

        lsm.apply_selinux_label(sc, spec)
    if before_credentials is not None:
        before_credentials()
    credentials.apply_credentials(sc, spec.process)


def _load_seccomp(
    request: CreateRequest, ask_parent: Callable[[str], None], *, no_new_privileges: bool
) -> None:
    """``linux.seccomp``, as late as the kernel allows (runc's two places).

    Without no_new_privs, seccomp(2) needs CAP_SYS_ADMIN, so the filter goes in just
    before the credentials take it away (``no_new_privileges=False`` call); with it, after
    everything else and just before "ready" (``True``): the parent must still be there to
    hand a notify listener on (:mod:`corral.linux.seccomp_notify`). Every syscall the init
    makes after this passes through the filter: see docs/seccomp.md for the list.
    """
    spec = request.spec
    raw = (spec.raw.get("linux") or {}).get("seccomp")
    assert spec.process is not None
    if raw is None or spec.process.no_new_privileges != no_new_privileges:
        return
    from corral.linux import seccomp, seccomp_notify

    seccomp.load_seccomp(raw, hand_over=lambda _fd: ask_parent(seccomp_notify.REQUEST))


def _run_create_hooks(request: CreateRequest, ask_parent: Callable[[str], None]) -> None:
    """``prestart`` and ``createRuntime`` by the parent, then ``createContainer`` here."""
    hooks = request.spec.hooks
    if not hooks:
        return
    if hooks.prestart or hooks.create_runtime:
        ask_parent(handshake.HOOKS)
    if hooks.create_container:
        from corral.core.hooks import run_hooks

        # runc runs them from the rootfs directory; before pivot_root it is the host's path.
        state = hook_state(request, "creating", os.getpid())
        run_hooks(hooks.create_container, state, kind="createContainer", cwd=request.rootfs)


def _run_start_hooks(request: CreateRequest) -> None:
    """``startContainer``: inside the container, as the process, from its cwd."""
    hooks = request.spec.hooks
    if not hooks or not hooks.start_container:
        return
    from corral.core.hooks import run_hooks

    # "created": the program has not run yet (runtime.md, "State"); runc says so too.
    state = hook_state(request, "created", os.getpid())
    run_hooks(hooks.start_container, state, kind="startContainer")


# Signals whose default action ends a process. As pid 1 of its namespace the waiting
# init would not die of them (pid_namespaces(7): the kernel drops signals the namespace's
# init has no handler for), yet `kill` of a created container must stop it, as it stops
# runc's init; so the wait installs handlers that exit. execve resets them (execute.py).
_TERMINATING = (1, 2, 3, 10, 12, 14, 15)  # HUP INT QUIT USR1 USR2 ALRM TERM


def _wait_for_start(state_fd: int, fifo_name: str) -> int:
    """Block until ``start`` opens the exec fifo; the write end, for the byte."""
    if TYPE_CHECKING:
        import signal as _signal
    else:
        import _signal  # the C half of signal: no enum import (see execute.py)

    def die(number: int, _frame: object) -> None:
        os._exit(128 + number)

    for number in _TERMINATING:
        _signal.signal(number, die)
    return os.open(fifo_name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=state_fd)


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
