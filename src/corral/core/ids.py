"""Container id validation.

An id becomes a directory name under the runtime root, so it must not be able to
name anything else: only ``[A-Za-z0-9_.+-]``, not ``.`` or ``..``, at most 255 bytes
(NAME_MAX). runc accepts the same alphabet; containerd uses 64 hex digits.
"""

from __future__ import annotations

from corral.errors import InvalidIdError

_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")
MAX_ID_LENGTH = 255


def validate_id(container_id: str) -> str:
    """Return ``container_id`` unchanged, or raise :class:`InvalidIdError` saying why."""
    if not container_id:
        raise InvalidIdError("container id cannot be empty")
    if len(container_id) > MAX_ID_LENGTH:
        raise InvalidIdError(f"invalid container id: longer than {MAX_ID_LENGTH} characters")
    if container_id in (".", "..") or not _ALLOWED.issuperset(container_id):
        shown = container_id.encode("unicode_escape").decode("ascii")
        raise InvalidIdError(f'invalid container id "{shown}": use only letters, digits and "_.+-"')
    return container_id
