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
