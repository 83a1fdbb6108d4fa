"""Control groups: where a container's cgroup lives, and the drivers that manage it.

* :mod:`.hierarchy` - which cgroup filesystems this host mounts (v1, v2 or hybrid);
* :mod:`.placement` - ``linux.cgroupsPath`` (absolute, relative, default, systemd's
  ``slice:prefix:name``) turned into directories of those filesystems;
* :mod:`.manager` - the driver-neutral :class:`~.manager.CgroupManager` interface, the
  record kept in the state file, and :func:`~.manager.manager_for`;
* :mod:`.fs` - the ``cgroupfs`` driver (directories and files), which the systemd
  driver (:mod:`.systemd`) builds on;
* :mod:`.v1resources`, :mod:`.v2resources`, :mod:`.devices` - pure plans of the files
  to write for ``linux.resources``; :mod:`.stats` - reading usage back.

This file holds only what the container's init needs (it imports nothing).
"""

from __future__ import annotations

# The handshake request (corral.core.handshake) the init sends before anything else:
# the parent writes its pid into the container's cgroup, so even an init already in a
# user namespace, which may not write to the host's cgroupfs, ends up there; and it is
# there before it unshares its cgroup namespace, whose root is then the container's cgroup.
JOIN_REQUEST = "cgroup-join"


def is_frozen_record(doc: dict[str, object]) -> bool:
    """Whether the cgroup a state record describes is frozen, read without importing
    the drivers (``state`` asks this of every running container). The same rule as
    :meth:`.fs.FsManager.is_frozen`: the v1 freezer if the host has it, else v2's
    ``cgroup.freeze``."""
    from corral.core import fastos

    inner = doc.get("fs")
    if doc.get("driver") == "systemd" and isinstance(inner, dict):
        doc = inner  # the systemd driver keeps the cgroupfs description under "fs"
    hierarchy = doc.get("hierarchy")
    v1_paths = doc.get("v1Paths")
    mode = hierarchy.get("mode") if isinstance(hierarchy, dict) else None
    if mode != "v2" and isinstance(v1_paths, dict) and "freezer" in v1_paths:
        path, wanted, frozen = f"{v1_paths['freezer']}/freezer.state", b"THAWED", False
    elif isinstance(doc.get("unifiedPath"), str):
        path, wanted, frozen = f"{doc['unifiedPath']}/cgroup.freeze", b"1", True
    else:
        return False
    try:
        fd = fastos.open(path, fastos.O_RDONLY | fastos.O_CLOEXEC)
    except OSError:
        return False
    try:
        text = fastos.read(fd, 64).strip()
    finally:
        fastos.close(fd)
    # v1: anything but THAWED (FREEZING counts); v2: "1" was written.
    return (text == wanted) == frozen
