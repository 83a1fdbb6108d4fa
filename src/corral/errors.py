"""The one exception hierarchy of corral.

Every error a user can cause ends up here, and its ``str()`` is the single line the
CLI prints after ``corral: ``. The CLI maps :class:`CorralError` to exit status 1 and
prints a traceback only with ``--debug``; anything else escaping is a bug in corral.

Message texts that clients parse are kept identical to runc's: containerd's shim
matches "does not exist" and "container not running" (containerd/go-runc).
"""

from __future__ import annotations


class CorralError(Exception):
    """Base of every error corral reports to its caller."""

    exit_code = 1


class UsageError(CorralError):
    """The command line is wrong (unknown flag, missing argument)."""


class UnknownCommandError(UsageError):
    """A subcommand corral does not have; exit status 3, as runc's CLI library gives."""

    exit_code = 3


class ConfigError(CorralError):
    """``config.json`` is malformed or asks for something corral cannot apply.

    ``path`` is the JSON path of the offending field, e.g. ``linux.namespaces[2].type``.
    """

    def __init__(self, path: str, message: str, *, source: str = "config.json") -> None:
        self.path = path
        self.message = message
        self.source = source
        where = f"{source}: {path}: " if path else f"{source}: "
        super().__init__(where + message)


class UnsupportedError(ConfigError):
    """A known spec field that corral does not (yet) apply: rejected, never ignored."""

    def __init__(self, path: str, detail: str = "") -> None:
        message = "not supported by corral" + (f" ({detail})" if detail else "")
        super().__init__(path, message)


class InvalidIdError(CorralError):
    """A container id that is empty, too long or has characters outside [A-Za-z0-9_.+-]."""


class ContainerNotFoundError(CorralError):
    """No container with that id exists under the runtime root."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        super().__init__("container does not exist")


class ContainerExistsError(CorralError):
    """``create`` of an id that is already taken."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        super().__init__(f"container with id exists: {container_id}")


class IllegalStateError(CorralError):
    """An operation that the container's status forbids (start twice, delete running...)."""


class ContainerNotRunningError(IllegalStateError):
    """Signalling a container whose init is gone."""

    def __init__(self) -> None:
        super().__init__("container not running")


class BundleError(CorralError):
    """The bundle directory, its ``config.json`` or its root filesystem cannot be used."""


class CreateError(CorralError):
    """Setting the container up failed (reported by the init process or the backend)."""


class StateError(CorralError):
    """The state directory is damaged or cannot be written."""
