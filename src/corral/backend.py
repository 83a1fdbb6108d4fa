"""What a platform backend does, and how corral picks one.

The lifecycle core (:mod:`corral.core.runtime`) never branches on the platform: it
asks the backend selected by ``sys.platform`` to check a config, to create the
container's init, to list its processes and to clean up after it. Backends are
imported lazily, so commands that only read the state store load none of them.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.core.state import Record
    from corral.spec.model import Spec


class CreateRequest:
    """Everything a backend needs to create one container."""

    __slots__ = (
        "bundle",
        "cgroup_join",
        "console_socket",
        "container_id",
        "fifo_name",
        "no_new_keyring",
        "no_pivot",
        "preserve_fds",
        "rootfs",
        "spec",
        "state_dir",
        "systemd_cgroup",
    )

    def __init__(
        self,
        *,
        container_id: str,
        bundle: str,
        rootfs: str,
        spec: Spec,
        state_dir: str,
        fifo_name: str,
        console_socket: str | None = None,
        no_pivot: bool = False,
        no_new_keyring: bool = False,
        preserve_fds: int = 0,
        systemd_cgroup: bool = False,
    ) -> None:
        self.container_id = container_id
        self.bundle = bundle
        self.rootfs = rootfs
        self.spec = spec
        self.state_dir = state_dir
        self.fifo_name = fifo_name
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds
        # --systemd-cgroup: linux.cgroupsPath is "slice:prefix:name" and systemd owns it.
        self.systemd_cgroup = systemd_cgroup
        # Set by the backend before it forks: the init asks to join the cgroup first.
        self.cgroup_join = False


class CreatedInit:
    """The init process a backend set up.

    ``commit_fd`` is how it hears it was recorded; ``ack_fd`` reads its answer (EOF).
    """

    __slots__ = ("ack_fd", "commit_fd", "extra", "pid", "start_time")

    def __init__(
        self,
        pid: int,
        start_time: int,
        extra: dict[str, Any] | None = None,
        commit_fd: int = -1,
        ack_fd: int = -1,
    ) -> None:
        self.pid = pid
        self.start_time = start_time
        self.extra = extra or {}
        self.commit_fd = commit_fd
        self.ack_fd = ack_fd


class Backend:
    """The interface every platform implements."""

    platform = "none"

    def warm_up(self) -> None:
        """Start, in the background, kernel work that ``create`` or ``exec`` will wait
        for, while the caller reads and checks the request (Linux: the grace period
        of the first cgroup migration, :mod:`corral.linux.cgroups.warmup`). The
        backend waits for it before it forks."""

    def check(self, request: CreateRequest) -> None:
        """Reject, before anything is created, whatever this backend cannot apply."""
        raise NotImplementedError

    def create(self, request: CreateRequest) -> CreatedInit:
        """Set the container up and leave its init blocked opening the exec fifo.

        On failure, raise :class:`corral.errors.CreateError` having undone everything.
        """
        raise NotImplementedError

    def commit(self, init: CreatedInit) -> None:
        """The runtime has recorded the init: let it go on to wait for ``start``.

        Until then the init dies with the runtime (``PR_SET_PDEATHSIG`` on Linux), so
        a ``create`` killed half-way leaves no process without a record.
        """
        raise NotImplementedError

    def processes(self, record: Record) -> list[int]:
        """Every live process of the container, init first (for ``kill --all``)."""
        raise NotImplementedError

    def destroy(self, record: Record) -> None:
        """Undo what ``create`` left on the host, once the container's processes are gone."""
        raise NotImplementedError

    def kill_all(self, record: Record, signal: int) -> None:
        """Send ``signal`` to every process of the container (``kill --all``)."""
        from corral.core import fastos

        for pid in self.processes(record):
            try:
                fastos.kill(pid, signal)
            except ProcessLookupError:
                pass

    def is_paused(self, record: Record) -> bool:
        """Whether the container's processes are frozen (status ``paused``)."""
        return False

    def pause(self, record: Record) -> None:
        """Freeze every process of the container."""
        from corral.errors import CorralError

        raise CorralError(f"pause is not supported on {self.platform}")

    def resume(self, record: Record) -> None:
        """Thaw a paused container."""
        from corral.errors import CorralError

        raise CorralError(f"resume is not supported on {self.platform}")

    def update(self, record: Record, resources: dict[str, Any], *, where: str) -> None:
        """Apply new resource limits (a ``linux.resources`` object) to a live container;
        ``where`` is the JSON path errors name."""
        from corral.errors import CorralError

        raise CorralError(f"update is not supported on {self.platform}")

    def update_intel_rdt(self, record: Record, lines: list[str]) -> None:
        """Write new Intel RDT schemata lines for a live container (``update
        --l3-cache-schema/--mem-bw-schema``); may change ``record.extra``, which the
        caller saves."""
        from corral.errors import CorralError

        raise CorralError(f"Intel RDT is not supported on {self.platform}")

    def stats(self, record: Record) -> dict[str, Any]:
        """The container's resource usage (runc's ``events --stats`` data)."""
        from corral.errors import CorralError

        raise CorralError(f"stats are not supported on {self.platform}")


def select_backend() -> Backend:
    """The backend for this host."""
    if sys.platform.startswith("linux"):
        from corral.linux.backend import LinuxBackend

        return LinuxBackend()
    if sys.platform.startswith("freebsd"):
        from corral.freebsd.backend import FreeBSDBackend

        return FreeBSDBackend()
    from corral.errors import CorralError

    raise CorralError(f"corral does not run containers on {sys.platform} yet")
