"""Where a container's cgroup goes: ``linux.cgroupsPath`` to directories.

config-linux.md ("Cgroups Path"): an absolute value is taken relative to the cgroups
mount point; a relative one MAY be taken relative to a runtime-determined location;
without a value the runtime MAY pick a default. corral follows runc 1.1 (checked by
running it on this kind of host) so that both runtimes put a container in the same
place:

* absolute ``/a/b``: ``<mount point>/a/b`` in every hierarchy;
* relative ``a/b``: under this process's own cgroup of each hierarchy
  (``/proc/self/cgroup``); on a pure v2 host under the *parent* of its own cgroup,
  since its own one holds processes and so, by v2's "no internal processes" rule
  (cgroup-v2.rst), may not enable controllers for a child;
* no value: the relative path ``<container id>``.

The own cgroup is translated through the mount's root (a cgroupfs in a container may
show a subtree of the hierarchy). ``..`` components are refused: runc silently clamps
them, but a path that points somewhere else than it reads is a config error here.

With ``--systemd-cgroup`` the value is ``slice:prefix:name`` (runc's syntax), parsed by
:func:`parse_systemd_path`; the systemd driver turns it into a unit.
"""

from __future__ import annotations

from corral.errors import ConfigError, CorralError

FIELD = "linux.cgroupsPath"
DEFAULT_SLICE = "system.slice"
DEFAULT_SCOPE_PREFIX = "corral"


def clean_path(value: str, container_id: str) -> str:
    """``linux.cgroupsPath`` (or its default) normalised: ``/a/b`` or ``a/b``."""
    if not value:
        return container_id
    if "\x00" in value:
        raise ConfigError(FIELD, "must not contain a NUL byte")
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ConfigError(FIELD, f'"{value}": ".." components are not allowed')
    joined = "/".join(parts)
    if value.startswith("/"):
        return "/" + joined
    if not joined:
        raise ConfigError(FIELD, f'"{value}" names no cgroup')
    return joined


def parse_own_cgroups(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as a map: each v1 controller (or ``name=X``) and ``""``
    (the v2 tree, line ``0::/path``) to the process's cgroup path (cgroups(7))."""
    own: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        number, controllers, path = fields
        if number == "0" and controllers == "":
            own[""] = path
            continue
        for name in controllers.split(","):
            if name:
                own[name] = path
    return own


def read_own_cgroups(pid: int | str = "self") -> dict[str, str]:
    with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="surrogateescape") as file:
        return parse_own_cgroups(file.read())


def directory(
    path: str, mount_point: str, mount_root: str, own: str | None, *, pure_v2: bool = False
) -> str:
    """The directory of cgroup ``path`` (from :func:`clean_path`) in one hierarchy.

    ``own`` is this process's cgroup in that hierarchy (needed for a relative path).
    """
    mount_point = mount_point.rstrip("/") or "/"
    if path.startswith("/"):
        return _join(mount_point, path)
    if own is None:
        raise CorralError(
            f"cgroup {mount_point}: this process is not in it (/proc/self/cgroup), "
            f"so the relative {FIELD} {path!r} has no base"
        )
    base = own.rstrip("/") or "/"
    if pure_v2 and base != "/":
        base = base.rsplit("/", 1)[0] or "/"
    root = mount_root.rstrip("/")
    if root and base != root and not base.startswith(root + "/"):
        raise CorralError(
            f"cgroup {mount_point}: this process's cgroup {own} is outside the mounted "
            f"subtree {mount_root}, so the relative {FIELD} {path!r} has no base"
        )
    return _join(_join(mount_point, base[len(root) :]), path)


def _join(head: str, tail: str) -> str:
    tail = tail.strip("/")
    if not tail:
        return head
    return f"{head.rstrip('/')}/{tail}"


def parse_systemd_path(value: str, container_id: str) -> tuple[str, str, str]:
    """``slice:prefix:name`` (runc's form for its systemd driver) -> its three parts.

    An empty value means ``system.slice:corral:<id>``; an empty slice is
    ``system.slice``, as for runc. The slice must be a slice unit's name.
    """
    if not value:
        return DEFAULT_SLICE, DEFAULT_SCOPE_PREFIX, container_id
    parts = value.split(":")
    if len(parts) != 3:
        raise ConfigError(
            FIELD,
            f'expected "slice:prefix:name" with --systemd-cgroup, not "{value}"',
        )
    slice_name, prefix, name = parts
    if not slice_name:
        slice_name = DEFAULT_SLICE
    if "/" in slice_name or not slice_name.endswith(".slice"):
        raise ConfigError(FIELD, f'"{slice_name}" is not a slice unit name (like "system.slice")')
    if not name:
        raise ConfigError(FIELD, f'"{value}": the name part is empty')
    if "/" in name or "/" in prefix:
        raise ConfigError(FIELD, f'"{value}": the prefix and name must not contain "/"')
    return slice_name, prefix, name
