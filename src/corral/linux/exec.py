"""``corral exec`` on Linux: a new process in a running container.

The runtime forks one child that becomes the container's new process; it never
re-executes itself, so there is no runtime binary for the container to reach. The
order of the work, and why:

In the runtime (parent):

1. ``PR_SET_DUMPABLE`` 0 on itself, so the child is non-dumpable from birth (the flag
   is copied by fork(2)): until it execs it runs the host's Python, and a process of
   the container must not open its ``/proc/<pid>/exe`` or its fds, nor ptrace it
   (CVE-2019-5736, CVE-2016-9962). execve(2) makes the program dumpable again.
2. The namespaces of the container's init are opened from ``/proc/<pid>/ns/`` (those
   that differ from the runtime's own), and only then is the init's start time
   compared with the record: if the pid was reused by another process meanwhile, the
   check fails and nothing is joined.
3. It enters the init's pid namespace *for its children* (setns(2) with
   ``CLONE_NEWPID`` changes only where children are born), forks, and goes back to
   its own, so the child is born in the container's pid namespace.
4. It serves the child's ``cgroup`` request (puts it in the container's cgroup, and
   ``--cgroup`` sub-cgroups), waits for "ready", and on
   :meth:`~corral.core.exec_container.WaitingProcess.release` lets it exec; the sync
   pipe closes at execve(2) (close-on-exec), or carries the exec's error.

In the child, until execve(2):

1. ``PR_SET_PDEATHSIG`` (it dies with an ``exec`` killed before the release); every
   module needed later is imported now: once in the container's mount namespace the
   host's Python library is out of reach;
2. ``execCPUAffinity.initial``, the ``cgroup`` request, then rlimits, ``oomScoreAdj``,
   scheduler and I/O priority while still in the host's user namespace (raising a hard
   limit or a real-time priority needs capabilities there);
3. a new session (as runc's), then ``setns`` into the namespaces: first those not owned
   by the container's user namespace (the host's capabilities are needed for them),
   then the user namespace, then the rest, the mount namespace among them (joining it
   needs ``CAP_SYS_ADMIN`` in its owner, which the user namespace gives);
4. ``chdir("/")`` and a check that the working directory is inside the container's
   root: joining the mount namespace moves root and cwd to that namespace's root, and
   no host directory may stay reachable (CVE-2024-21626);
5. the container's session keyring; with ``--tty`` a pty from the container's
   ``/dev/ptmx`` (not mounted on ``/dev/console``: that is the init's), its master sent
   to the console socket; AppArmor and SELinux labels for the exec; user, groups,
   capabilities, cwd and ``no_new_privs`` (:mod:`corral.linux.credentials`, as for the
   init); the program looked up in the container's ``PATH``; the container's
   ``linux.seccomp`` filter, in the init's two places: before the credentials without
   ``no_new_privs`` (loading needs ``CAP_SYS_ADMIN`` then), else last; a notify
   listener is copied out by the parent (pidfd_getfd(2)) and sent to ``listenerPath``;
6. "ready", the release byte, ``execCPUAffinity.final``, then
   :func:`corral.core.execute.exec_process`, which marks every fd above stdio and the
   preserved ones close-on-exec and resets the signal dispositions.
"""

from __future__ import annotations

import os

from corral.core import handshake
from corral.core.exec_container import WaitingProcess, connect_exec_console, serve_until_ready
from corral.errors import CreateError, IllegalStateError, UsageError
from corral.linux import syscalls as sc_

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

    from corral.core.state import Record
    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Spec

SIGKILL = 9
NS_GET_USERNS = 0xB701  # <linux/nsfs.h>: _IO(0xb7, 0x1)
CGROUP_REQUEST = "cgroup"

# /proc/<pid>/ns/ file -> spec namespace type, in runc's joining order (the user
# namespace is moved to its place by join_order). pid is joined by the parent.
PROC_NAMESPACES = (
    ("user", "user"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("net", "network"),
    ("pid", "pid"),
    ("mnt", "mount"),
    ("cgroup", "cgroup"),
    ("time", "time"),
)


def check_exec_process(spec: Spec) -> None:
    """What :func:`spawn_process` would refuse, checked before anything is started."""
    from corral.linux.capabilities import check_capabilities
    from corral.linux.rlimits import check_rlimits

    process = spec.process
    assert process is not None
    if process.capabilities is not None:
        check_capabilities(process.capabilities, "process.capabilities")
    check_rlimits(process.rlimits)
    raw = spec.raw.get("process") or {}
    if raw.get("scheduler") or raw.get("ioPriority") or raw.get("execCPUAffinity"):
        from corral.linux import scheduling

        scheduling.check_scheduling(spec)
    if raw.get("apparmorProfile") or raw.get("selinuxLabel"):
        from corral.linux import lsm

        lsm.check_lsm(spec)
        lsm.check_lsm_host(spec)
    if process.terminal:
        from corral.linux.terminal import console_size

        console_size(spec)


def spawn_process(
    record: Record,
    spec: Spec,
    *,
    console_socket: str | None,
    preserve_fds: int,
    cgroup_paths: dict[str, str],
) -> WaitingProcess:
    """Start the exec'd process inside the container; it waits for ``release``.

    Raises IllegalStateError if the init is gone (or its pid reused), CreateError with
    the child's message if the set-up failed; either way no process is left.
    """
    sc = sc_.Syscalls()
    check_exec_process(spec)
    sc.prctl(sc_.PR_SET_DUMPABLE, 0)  # inherited by the child: see the module doc
    ns_fds = open_init_namespaces(record.pid, record.start_time)
    console_fd = -1
    own_pid_ns = -1
    sync_r = sync_w = commit_r = commit_w = -1
    try:
        assert spec.process is not None
        console_fd = connect_exec_console(spec.process.terminal, console_socket)
        sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
        commit_r, commit_w = os.pipe2(os.O_CLOEXEC)
        pid_ns = ns_fds.pop("pid", -1)
        if pid_ns >= 0:
            own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            sc.setns(pid_ns, sc_.CLONE_NEWPID, "the container's pid namespace")
            os.close(pid_ns)
        from corral.linux.cgroups import warmup

        warmup.finish()  # before the fork (no thread may run then)
        try:
            pid = os.fork()
            if pid == 0:
                for fd in (sync_r, commit_w, own_pid_ns):
                    if fd >= 0:
                        os.close(fd)  # the host's pid namespace above all
                _child(sc, spec, record, ns_fds, sync_w, commit_r, console_fd, preserve_fds)
        finally:
            if own_pid_ns >= 0:
                sc.setns(own_pid_ns, sc_.CLONE_NEWPID, "the runtime's pid namespace")
    except BaseException:
        for fd in (sync_r, commit_w):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in [own_pid_ns, console_fd, sync_w, commit_r, *ns_fds.values()]:
            if fd >= 0:
                os.close(fd)
    handlers: dict[str, Callable[[], object]] = {
        CGROUP_REQUEST: lambda: join_cgroup(record, pid, cgroup_paths)
    }
    if (spec.raw.get("linux") or {}).get("seccomp") is not None:
        from corral.linux import seccomp_notify

        handlers[seccomp_notify.REQUEST] = lambda: hand_over_listener(sc, record, spec, pid)
    return serve_until_ready(pid, sync_r, commit_w, handlers)


def open_init_namespaces(pid: int, start_time: int, *, proc: str = "/proc") -> dict[str, int]:
    """The init's namespaces that differ from ours, as ``{spec type: fd}``.

    The start time is compared after the files are open: if the init died and its pid
    was reused, the fds would be another process's namespaces.
    """
    from corral.core.procinfo import read_start_time

    fds: dict[str, int] = {}
    try:
        for name, ns_type in PROC_NAMESPACES:
            try:
                fd = os.open(f"{proc}/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # a kernel without that namespace type, or the init is gone
            mine = os.stat(f"{proc}/self/ns/{name}")
            theirs = os.fstat(fd)
            if (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino):
                os.close(fd)
                continue
            fds[ns_type] = fd
        if read_start_time(pid) != start_time:
            raise IllegalStateError("cannot exec in a stopped container")
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds


def join_order(
    ns_fds: dict[str, int], owned_by_user_ns: Callable[[int], bool]
) -> list[tuple[str, int]]:
    """The order to join ``ns_fds`` in (pid excluded: the parent joins it).

    With a user namespace: first the namespaces it does not own (joining one needs
    ``CAP_SYS_ADMIN`` in its owner, which the host's root has only while still in the
    host's user namespace), then the user namespace, then those it owns. Pure, given
    ``owned_by_user_ns(fd)``.
    """
    others = [
        (ns_type, ns_fds[ns_type])
        for _, ns_type in PROC_NAMESPACES
        if ns_type in ns_fds and ns_type not in ("user", "pid")
    ]
    if "user" not in ns_fds:
        return others
    before = [item for item in others if not owned_by_user_ns(item[1])]
    after = [item for item in others if item not in before]
    return [*before, ("user", ns_fds["user"]), *after]


def owner_check(user_fd: int) -> Callable[[int], bool]:
    """``owned_by_user_ns`` for :func:`join_order`: NS_GET_USERNS (Linux 4.9) on each
    fd, compared with ``user_fd``; when the kernel cannot tell, "owned" (runc's order)."""
    import fcntl

    user = os.fstat(user_fd)

    def owned(fd: int) -> bool:
        try:
            owner_fd = fcntl.ioctl(fd, NS_GET_USERNS)
        except OSError:
            return True
        try:
            owner = os.fstat(owner_fd)
        finally:
            os.close(owner_fd)
        return (owner.st_dev, owner.st_ino) == (user.st_dev, user.st_ino)

    return owned


def hand_over_listener(sc: Syscalls, record: Record, spec: Spec, pid: int) -> None:
    """The child's seccomp listener, copied out with pidfd_getfd(2) and sent to
    ``listenerPath`` with the container's state (as for the init: the path is the
    host's, out of the child's reach)."""
    from corral import OCI_VERSION
    from corral.linux.seccomp_notify import send_listener_of

    state: dict[str, object] = {
        "ociVersion": OCI_VERSION,
        "id": record.id,
        "status": "running",
        "pid": record.pid,
        "bundle": record.bundle,
        "annotations": record.annotations,
    }
    seccomp = (spec.raw.get("linux") or {}).get("seccomp")
    send_listener_of(sc, pid, seccomp, state, whose="the exec'd process")


def join_cgroup(record: Record, pid: int, sub_paths: dict[str, str]) -> None:
    """Put ``pid`` in the container's cgroup, or in the ``--cgroup`` sub-cgroups of it
    (which must exist, as with runc)."""
    document = record.extra.get("cgroup")
    if not document:
        if sub_paths:
            raise UsageError("--cgroup: the container has no cgroup of its own")
        return
    from corral.linux.cgroups.manager import manager_from_record

    manager = manager_from_record(document)
    if not sub_paths:
        manager.add_process(pid)
        return
    from corral.linux.cgroups.fs import write_pid

    directories = sub_cgroup_directories(
        manager.v1_paths, manager.hierarchy.v1_roots, manager.unified_path, sub_paths
    )
    for directory in directories:
        try:
            write_pid(directory, pid)
        except OSError as error:
            raise CreateError(f"--cgroup: joining {directory}: {error.strerror}") from None


def sub_cgroup_directories(
    v1_paths: dict[str, str],
    v1_roots: dict[str, str],
    unified_path: str | None,
    sub_paths: dict[str, str],
) -> list[str]:
    """The cgroup directories to join with ``--cgroup`` (pure).

    ``{"": path}`` descends ``path`` in every hierarchy; ``{controller: path}`` in that
    controller's (and the controllers mounted with it: one process is in one cgroup
    per hierarchy), the others staying in the container's cgroup. A controller the
    container has no cgroup for is an error, as with runc.
    """
    for controller in sub_paths:
        if controller and controller not in v1_paths:
            raise UsageError(f"--cgroup: unknown controller {controller} (not in the container)")
    everywhere = sub_paths.get("")
    chosen: dict[str, str] = {}  # hierarchy (mount point) -> directory
    for key, base in v1_paths.items():
        root = v1_roots.get(key, key)
        add = everywhere if everywhere is not None else sub_paths.get(key)
        if add is not None:
            chosen[root] = _below(base, add)
        else:
            chosen.setdefault(root, base)
    directories = list(chosen.values())
    if unified_path is not None:
        directories.append(_below(unified_path, everywhere) if everywhere else unified_path)
    return list(dict.fromkeys(directories))


def _below(base: str, sub_path: str) -> str:
    import posixpath

    joined = posixpath.normpath(f"{base}/{sub_path.lstrip('/')}")
    if not joined.startswith(base.rstrip("/") + "/"):
        raise UsageError(f"--cgroup: {sub_path} is not a sub cgroup path")
    return joined


# -- the child ----------------------------------------------------------------------------


def _child(
    sc: Syscalls,
    spec: Spec,
    record: Record,
    ns_fds: dict[str, int],
    sync_fd: int,
    commit_fd: int,
    console_fd: int,
    preserve_fds: int,
) -> NoReturn:
    try:
        sc.prctl(sc_.PR_SET_PDEATHSIG, SIGKILL)
        from corral.core.execute import exec_process

        executable = _prepare(
            sc,
            spec,
            record,
            ns_fds,
            lambda name: handshake.ask_parent(sync_fd, commit_fd, name),
            console_fd,
        )
        handshake.await_release(sync_fd, commit_fd)
        sc.prctl(sc_.PR_SET_PDEATHSIG, 0)  # from now on the process outlives `exec -d`
        if (spec.raw.get("process") or {}).get("execCPUAffinity"):
            from corral.linux.scheduling import apply_final_cpu_affinity

            apply_final_cpu_affinity(sc, spec)
        assert spec.process is not None
        # sync_fd is close-on-exec: its EOF tells the runtime the exec happened.
        exec_process(spec.process, preserve_fds=preserve_fds, executable=executable)
    except BaseException as error:
        handshake.report_error(sync_fd, error)
    os._exit(1)


def _prepare(
    sc: Syscalls,
    spec: Spec,
    record: Record,
    ns_fds: dict[str, int],
    ask_parent: Callable[[str], None],
    console_fd: int,
) -> str:
    """Everything up to "ready", in order (module doc); the program's path."""
    from corral.linux import credentials, rlimits, sysctl

    process = spec.process
    assert process is not None
    raw = spec.raw.get("process") or {}
    optional = _preload(spec)
    if "execCPUAffinity" in optional:
        from corral.linux.scheduling import apply_initial_cpu_affinity

        apply_initial_cpu_affinity(sc, spec)  # before the cgroup move (config.md)
    ask_parent(CGROUP_REQUEST)
    rlimits.apply_rlimits(sc, process.rlimits)
    sysctl.apply_oom_score_adj(process.oom_score_adj)
    if "scheduling" in optional:
        from corral.linux import scheduling

        scheduling.apply_scheduler(sc, spec)
        scheduling.apply_io_priority(sc, spec)
    os.setsid()
    _join_namespaces(sc, ns_fds)
    _enter_container_root()
    if not record.extra.get("noNewKeyring"):
        # The init's keyring (same name): not the host's session keyring.
        sc.join_session_keyring(record.id)
    if console_fd >= 0:
        _setup_exec_terminal(sc, spec, console_fd)
    if raw.get("apparmorProfile"):
        from corral.linux import lsm

        lsm.apply_apparmor_profile(sc, spec)  # before no_new_privs, while still root
    if raw.get("selinuxLabel"):
        from corral.linux import lsm

        lsm.apply_selinux_label(sc, spec)
    if not process.no_new_privileges:
        # seccomp(2) needs CAP_SYS_ADMIN without no_new_privs: before the identity.
        _load_seccomp(spec, ask_parent)
    credentials.apply_credentials(sc, process)
    from corral.core.execute import resolve_executable

    executable = resolve_executable(process)
    if process.no_new_privileges:
        _load_seccomp(spec, ask_parent)  # as late as possible (runc's two places)
    return executable


def _load_seccomp(spec: Spec, ask_parent: Callable[[str], None]) -> None:
    """The container's ``linux.seccomp`` applies to the exec'd process too (as runc's
    setns init loads it); a notify listener goes to ``listenerPath`` through the parent."""
    raw = (spec.raw.get("linux") or {}).get("seccomp")
    if raw is None:
        return
    from corral.linux import seccomp, seccomp_notify

    seccomp.load_seccomp(raw, hand_over=lambda _fd: ask_parent(seccomp_notify.REQUEST))


def _preload(spec: Spec) -> set[str]:
    """Import what runs after the mount namespace is joined; the optional steps used."""
    import errno  # noqa: F401 - credentials and terminal errors
    import resource  # noqa: F401 - Syscalls.prlimit
    import stat  # noqa: F401 - core.execute

    from corral.core import execute, jsonio  # noqa: F401
    from corral.linux import capabilities, credentials, rlimits, sysctl  # noqa: F401

    raw = spec.raw.get("process") or {}
    optional = set()
    if raw.get("scheduler") or raw.get("ioPriority"):
        optional.add("scheduling")
    if raw.get("execCPUAffinity"):
        optional.add("execCPUAffinity")
    if optional:
        from corral.linux import scheduling  # noqa: F401
    if raw.get("apparmorProfile") or raw.get("selinuxLabel"):
        from corral.linux import lsm  # noqa: F401
    if spec.process is not None and spec.process.terminal:
        from corral.core import console  # noqa: F401
        from corral.linux import terminal  # noqa: F401 - fcntl, struct, termios
    if (spec.raw.get("linux") or {}).get("seccomp") is not None:
        from corral.linux import seccomp

        seccomp.preload()  # opens libseccomp, a host file
    return optional


def _join_namespaces(sc: Syscalls, ns_fds: dict[str, int]) -> None:
    owned = owner_check(ns_fds["user"]) if "user" in ns_fds else (lambda _fd: True)
    for ns_type, fd in join_order(ns_fds, owned):
        sc.setns(fd, sc_.NAMESPACE_FLAGS[ns_type], f"the container's {ns_type} namespace")
        os.close(fd)


def _enter_container_root() -> None:
    """Leave no host directory as the working directory (CVE-2024-21626)."""
    os.chdir("/")
    try:
        where = os.getcwd()
    except OSError:
        where = ""  # getcwd(3) fails on "(unreachable)/...": outside our root
    if where != "/":
        raise CreateError("the working directory is not the container's root after setns")


def _setup_exec_terminal(sc: Syscalls, spec: Spec, console_fd: int) -> None:
    """A pty of the container's devpts as stdio and controlling terminal, given to the
    process's user; its master sent over ``console_fd`` (which is closed). As the init's
    terminal, without the bind on ``/dev/console``."""
    from corral.linux import terminal

    assert spec.process is not None
    user = spec.process.user
    terminal.setup_terminal(
        sc,
        console_fd,
        terminal.console_size(spec),
        owner=(user.uid, user.gid),  # the program may change its own terminal
        bind_console=False,
    )
