"""Is a recorded pid still the process corral started?

A pid alone is not an identity: after the container's init exits the kernel may give
its number to an unrelated process. The state file records the init's start time
(field 22 of ``/proc/<pid>/stat``, in clock ticks since boot, proc(5)), and a pid
counts as the container's only while that start time matches and the process is not
a zombie. The backend supplies :func:`read_start_time` for its platform; this is the
Linux one; on FreeBSD, :mod:`corral.freebsd.procinfo` answers from ``kinfo_proc``.
"""

from __future__ import annotations

import sys

from corral.core import fastos


def read_stat(pid: int) -> tuple[str, int, int] | None:
    """Return (state letter, parent pid, start time) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[19])


def read_start_time(pid: int) -> int | None:
    """The start time of a live (non-zombie) ``pid``, or None."""
    stat = read_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    return stat[2]


if sys.platform.startswith("freebsd"):
    # FreeBSD has no /proc by default: kinfo_proc through sysctl tells the same.
    from corral.freebsd.procinfo import read_start_time


def is_alive(pid: int, start_time: int) -> bool:
    """True while ``pid`` is the same live process that started at ``start_time``."""
    return pid > 0 and read_start_time(pid) == start_time


def wait_for_exit(pid: int, start_time: int, timeout: float) -> bool:
    """Poll until the process is gone (it may not be our child); True if it went."""
    import time

    deadline = time.monotonic() + timeout
    delay = 0.0005
    while is_alive(pid, start_time):
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True


def children_of(root_pid: int) -> list[int]:
    """Every live descendant of ``root_pid`` (by walking parent links in /proc)."""
    parents: dict[int, int] = {}
    for name in fastos.listdir("/proc"):
        if name.isdigit():
            stat = read_stat(int(name))
            if stat is not None and stat[0] not in ("Z", "X"):
                parents[int(name)] = stat[1]
    found: list[int] = []
    frontier = {root_pid}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier}
        found.extend(sorted(frontier))
    return found


def kill_and_reap(pid: int) -> None:
    """SIGKILL a child of ours that failed during ``create``, and collect it."""
    try:
        fastos.kill(pid, 9)
    except ProcessLookupError:
        pass
    try:
        fastos.waitpid(pid, 0)
    except ChildProcessError:
        pass
