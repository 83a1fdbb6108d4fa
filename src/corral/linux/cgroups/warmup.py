"""Take the cgroup migration's RCU grace period off the critical path of create and exec.

Every write of a pid to a ``cgroup.procs`` file takes the kernel's global
``cgroup_threadgroup_rwsem`` for writing (kernel/cgroup/cgroup.c,
``cgroup_attach_lock``). It is a per-CPU rwsem, whose writer first waits for an RCU
grace period to move the readers (every fork, exec and exit) to the slow path
(kernel/rcu/sync.c, ``rcu_sync_enter``), unless a writer left it within about the last
grace period. On these machines that wait is 12-16 ms, a third of ``corral create``
and half of ``corral exec``: the first migration of the init (or of the exec'd
process) pays it, and the ones that follow within ~10 ms do not (measured; see
docs/performance.md).

So the runtime pays it early, in a thread, while its main thread reads and checks the
config: :func:`start` writes the runtime's own pid into the ``cgroup.procs`` of the
cgroup it is already in, a migration that moves nothing but takes the lock; and
:func:`finish`, called before the fork, waits for that write, so the real migration a
moment later finds the fast path. The kernel takes the lock before it checks anything
about the destination, so even a write it refuses (``EBUSY`` under cgroup v2's
no-internal-process rule, ``EACCES`` without root) has done its part or cost nothing;
its outcome is ignored. Hosts that mount cgroup2 with ``favordynmods`` (Linux 6.0+)
have no grace period to hide, and this costs them one cheap write.

The thread only opens, writes and closes one file, and :func:`finish` joins it before
any fork, so no process is forked while it runs. Its descriptor is transient but takes
the lowest free number, so what checks descriptor numbers (``exec --preserve-fds``)
runs before :func:`start`.
"""

from __future__ import annotations

import _thread
from posix import O_CLOEXEC, O_WRONLY, close, getpid, write
from posix import open as open_fd

_pending: _thread.LockType | None = None
_started = False


def start() -> None:
    """Begin the warm-up migration in a thread, once per process; nothing if there is
    no cgroupfs to write to.

    Returns once the thread is about to make the system call: a new thread needs the
    GIL to run at all, and a main thread busy importing would keep it for up to the
    5 ms switch interval (measured: the write began 4.6 ms late).
    """
    global _pending, _started
    if _started:
        return
    _started = True
    procs = own_procs_file()
    if procs is None:
        return
    done = _thread.allocate_lock()
    done.acquire()
    ready = _thread.allocate_lock()
    ready.acquire()
    _pending = done
    _thread.start_new_thread(_migrate_self, (procs, ready, done))
    ready.acquire()  # waits without the GIL, so the thread runs now


def finish() -> None:
    """Wait for the warm-up migration, if one is running. Call before forking."""
    global _pending
    if _pending is not None:
        _pending.acquire()
        _pending = None


def own_procs_file() -> str | None:
    """The ``cgroup.procs`` of this process's own cgroup in one mounted hierarchy (the
    v2 tree if there is one), or None."""
    from corral.errors import CorralError
    from corral.linux.cgroups.hierarchy import detect
    from corral.linux.cgroups.placement import read_own_cgroups

    try:
        hierarchy = detect()
        own = read_own_cgroups()
    except (CorralError, OSError):
        return None
    mounts = list(hierarchy.v1_roots.items())
    if hierarchy.unified_root is not None:
        mounts.insert(0, ("", hierarchy.unified_root))
    for key, mount_point in mounts:
        path = own.get(key)
        root = hierarchy.mount_root(key).rstrip("/")
        if path is None or not (path == root or path.startswith(root + "/") or not root):
            continue
        inside = path[len(root) :].strip("/")
        return f"{mount_point.rstrip('/')}/{inside}/cgroup.procs".replace("//", "/")
    return None


def _migrate_self(procs: str, ready: _thread.LockType, done: _thread.LockType) -> None:
    ready.release()
    try:
        fd = open_fd(procs, O_WRONLY | O_CLOEXEC)
        try:
            write(fd, b"%d" % getpid())
        finally:
            close(fd)
    except OSError:
        pass  # the lock was taken, or this process may not write here: either way done
    finally:
        done.release()
