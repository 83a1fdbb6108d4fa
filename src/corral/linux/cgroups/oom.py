"""Notice when the kernel's OOM killer acts in a container's memory cgroup.

``corral events`` prints ``{"type": "oom", ...}`` for each notice. Two mechanisms,
one interface (:meth:`OomWatcher.wait`):

* cgroup v1 (Documentation/admin-guide/cgroup-v1/memory.rst, "Memory thresholds" and
  "OOM Control"): an eventfd(2) registered by writing "<eventfd> <fd of
  memory.oom_control>" to ``cgroup.event_control``; the kernel adds 1 to the eventfd
  each time the cgroup goes out of memory. It also signals it when the cgroup is
  removed, so a wake-up with the directory gone is the end, not an OOM (runc tells
  them apart the same way). ``os.eventfd`` is stdlib: no ctypes needed.
* cgroup v2 (cgroup-v2.rst, "memory.events"): the ``oom`` and ``oom_kill`` counters
  of ``memory.events``. The file is polled every :data:`POLL_SECONDS`; the kernel
  also signals modifications to inotify, but a 100 ms poll of one small file costs
  nothing measurable and keeps the syscall surface (corral.linux.syscalls) smaller.
  A notice is one increase of either counter (several kills between two polls are
  one notice, as an eventfd wake-up is on v1).
"""

from __future__ import annotations

import os
import select
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.linux.cgroups.manager import CgroupManager

POLL_SECONDS = 0.1


class OomWatcher:
    """Base: ``wait(timeout)`` returns how many OOM notices arrived (0 on timeout);
    ``gone`` turns true when the cgroup disappears."""

    __slots__ = ("directory", "gone")

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.gone = False

    def wait(self, timeout: float) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the watcher holds (idempotent)."""


class EventfdOomWatcher(OomWatcher):
    """cgroup v1: memory.oom_control registered with an eventfd."""

    __slots__ = ("_control_fd", "_eventfd")

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self._eventfd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            self._control_fd = os.open(
                f"{directory}/memory.oom_control", os.O_RDONLY | os.O_CLOEXEC
            )
        except OSError:
            os.close(self._eventfd)
            raise
        try:
            with open(f"{directory}/cgroup.event_control", "w") as control:
                control.write(f"{self._eventfd} {self._control_fd}")
        except OSError:
            self.close()
            raise

    def wait(self, timeout: float) -> int:
        if self._eventfd < 0:
            time.sleep(max(timeout, 0.0))
            return 0
        readable, _, _ = select.select([self._eventfd], [], [], max(timeout, 0.0))
        if not readable:
            return 0
        try:
            os.eventfd_read(self._eventfd)
        except BlockingIOError:
            return 0
        if not os.path.exists(f"{self.directory}/cgroup.event_control"):
            # The kernel signals every registered eventfd when the cgroup is removed.
            self.gone = True
            self.close()
            return 0
        return 1

    def close(self) -> None:
        for fd in (self._eventfd, self._control_fd):
            if fd >= 0:
                os.close(fd)
        self._eventfd = self._control_fd = -1


class EventsFileOomWatcher(OomWatcher):
    """cgroup v2: the oom and oom_kill counters of memory.events, polled."""

    __slots__ = ("_last",)

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        counts = self._counts()
        if counts is None:
            raise FileNotFoundError(f"{directory}/memory.events")
        self._last = counts

    def _counts(self) -> tuple[int, int] | None:
        try:
            with open(f"{self.directory}/memory.events") as file:
                text = file.read()
        except OSError:
            return None
        oom = kills = 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom":
                oom = int(value)
            elif key == "oom_kill":
                kills = int(value)
        return oom, kills

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            counts = self._counts()
            if counts is None:
                self.gone = True
                return 0
            if counts[0] > self._last[0] or counts[1] > self._last[1]:
                self._last = counts
                return 1
            left = deadline - time.monotonic()
            if left <= 0:
                return 0
            time.sleep(min(left, POLL_SECONDS))


def watch_oom(manager: CgroupManager) -> OomWatcher | None:
    """A watcher for the container's memory cgroup; None without a memory controller.

    v1 (and hybrid, where memory is a v1 controller) uses the eventfd; v2 the
    memory.events counters.
    """
    memory_dir = manager.v1_paths.get("memory")
    if memory_dir:
        return EventfdOomWatcher(memory_dir)
    unified = manager.unified_path
    if unified and os.path.exists(f"{unified}/memory.events"):
        return EventsFileOomWatcher(unified)
    return None
