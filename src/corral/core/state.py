"""The state store: one directory per container under the runtime root.

Layout of ``<root>/<id>/``:

``state.json``
    The container's record (:class:`Record`), replaced atomically (write a temporary
    file in the same directory, then ``rename(2)``), so a reader sees the old or the new
    record, never half of one, and readers need no lock.
``exec.fifo``
    The named pipe the init blocks on until ``start`` (see :mod:`corral.core.fifo`).

Creating the directory with ``mkdir(2)`` is what claims an id: it fails with EEXIST
for the loser of two concurrent ``create`` calls. Operations that change a container
(start, kill, delete) hold an exclusive ``flock(2)`` on the directory for their
duration, so two ``start`` calls cannot both release the init.
"""

from __future__ import annotations

from corral.core import fastos, jsonio
from corral.core.ids import validate_id
from corral.errors import ContainerExistsError, ContainerNotFoundError, StateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STATE_FILE = "state.json"
FIFO_NAME = "exec.fifo"

# Status values. "creating" is stored while create runs; the others are derived from
# the record and the process (see Record.status()).
CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"  # running, with every process frozen (pause); derived from the cgroup
STOPPED = "stopped"


class Record:
    """What corral remembers about a container between calls."""

    __slots__ = (
        "annotations",
        "bundle",
        "created",
        "extra",
        "id",
        "oci_version",
        "owner",
        "pid",
        "rootfs",
        "start_time",
        "stored_status",
    )

    def __init__(
        self,
        *,
        id: str,
        bundle: str,
        rootfs: str,
        oci_version: str,
        created: str,
        pid: int = 0,
        start_time: int = 0,
        stored_status: str = CREATING,
        owner: str = "",
        annotations: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.id = id
        self.bundle = bundle
        self.rootfs = rootfs
        self.oci_version = oci_version
        self.created = created
        self.pid = pid
        self.start_time = start_time
        self.stored_status = stored_status
        self.owner = owner
        self.annotations = annotations or {}
        # Backend-specific facts (namespaces created, mounts to undo...).
        self.extra = extra or {}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ociVersion": self.oci_version,
            "status": self.stored_status,
            "pid": self.pid,
            "startTime": self.start_time,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
            "annotations": self.annotations,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(
            id=data["id"],
            bundle=data["bundle"],
            rootfs=data["rootfs"],
            oci_version=data["ociVersion"],
            created=data["created"],
            pid=data["pid"],
            start_time=data["startTime"],
            stored_status=data["status"],
            owner=data.get("owner", ""),
            annotations=data.get("annotations") or {},
            extra=data.get("extra") or {},
        )


class StateStore:
    """The runtime root directory (``--root``, default ``/run/corral``)."""

    def __init__(self, root: str) -> None:
        self.root = fastos.absolute(root)

    def directory(self, container_id: str) -> str:
        return f"{self.root}/{validate_id(container_id)}"

    def claim(self, container_id: str) -> str:
        """Create the container's directory; fail if the id is taken."""
        path = self.directory(container_id)
        try:
            fastos.mkdir(path, 0o711)
        except FileExistsError:
            raise ContainerExistsError(container_id) from None
        except FileNotFoundError:
            # First use of this root: make it private (runc uses 0700 too).
            import os

            os.makedirs(self.root, 0o700, exist_ok=True)
            try:
                fastos.mkdir(path, 0o711)
            except FileExistsError:
                raise ContainerExistsError(container_id) from None
        return path

    def exists(self, container_id: str) -> bool:
        return fastos.is_dir(self.directory(container_id))

    def load(self, container_id: str) -> Record:
        path = self.directory(container_id) + "/" + STATE_FILE
        try:
            with open(path, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            if fastos.is_dir(self.directory(container_id)):
                # Claimed but the record is not written yet: create is under way.
                raise StateError(f"container {container_id} is being created") from None
            raise ContainerNotFoundError(container_id) from None
        try:
            return Record.from_json(jsonio.loads(data))
        except (ValueError, KeyError, TypeError) as error:
            raise StateError(f"{path}: damaged state file: {error}") from None

    def save(self, record: Record) -> None:
        """Replace the record atomically."""
        directory = self.directory(record.id)
        temporary = f"{directory}/.{STATE_FILE}.{fastos.getpid()}"
        data = jsonio.dumps(record.to_json()).encode()
        fd = fastos.open(
            temporary, fastos.O_WRONLY | fastos.O_CREAT | fastos.O_TRUNC | fastos.O_CLOEXEC, 0o600
        )
        try:
            fastos.write(fd, data)
        finally:
            fastos.close(fd)
        fastos.rename(temporary, f"{directory}/{STATE_FILE}")

    def ids(self) -> list[str]:
        try:
            names = fastos.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(name for name in names if fastos.is_dir(f"{self.root}/{name}"))

    def lock(self, container_id: str) -> int:
        """Take the container's exclusive lock; release it with :meth:`unlock`."""
        import fcntl

        try:
            fd = fastos.open(
                self.directory(container_id),
                fastos.O_RDONLY | fastos.O_DIRECTORY | fastos.O_CLOEXEC,
            )
        except FileNotFoundError:
            raise ContainerNotFoundError(container_id) from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    @staticmethod
    def unlock(fd: int) -> None:
        fastos.close(fd)

    def remove(self, container_id: str) -> None:
        """Delete the container's directory and everything in it."""
        directory = self.directory(container_id)
        try:
            names = fastos.listdir(directory)
        except FileNotFoundError:
            return
        for name in names:
            try:
                fastos.unlink(f"{directory}/{name}")
            except IsADirectoryError:
                import shutil

                shutil.rmtree(f"{directory}/{name}")
            except FileNotFoundError:
                pass
        try:
            fastos.rmdir(directory)
        except FileNotFoundError:
            pass
