"""Which cgroup filesystems this host mounts, from ``/proc/self/mountinfo``.

A host is in one of three layouts (kernel Documentation/admin-guide/cgroup-v2.rst,
"Mounting"; systemd calls them unified, legacy and hybrid):

``v2``
    one ``cgroup2`` filesystem (usually at ``/sys/fs/cgroup``) and no v1 controller;
``v1``
    one ``cgroup`` filesystem per controller or group of co-mounted controllers
    (``/sys/fs/cgroup/cpu,cpuacct``), and maybe named hierarchies (``name=systemd``);
``hybrid``
    both: the controllers in v1 trees, plus a ``cgroup2`` tree (``/sys/fs/cgroup/unified``)
    that holds the processes but (usually) no controller.

:func:`detect` reads the mount table once. Each mount's *root* (mountinfo field 4) is
kept too: inside a container the cgroupfs may be a subtree of the host's, and the
paths of ``/proc/self/cgroup`` are then relative to the hierarchy's root, not to the
mount point (cgroups(7), "/proc/[pid]/cgroup").

A hierarchy mounted twice (a bind mount) counts once: the first mount found, as in runc.
"""

from __future__ import annotations

from corral.errors import CorralError
from corral.linux import mountinfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Super-block options of a v1 "cgroup" mount that are not controllers (cgroups(7) and
# Documentation/admin-guide/cgroup-v1/cgroups.rst, "Mounting").
_V1_OPTIONS = frozenset(
    ("rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "all", "none")
)
# Where a cgroup2 tree is expected; one of these wins over other cgroup2 mounts.
_PREFERRED_UNIFIED = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")


class Hierarchy:
    """The host's cgroup mounts.

    ``v1_roots`` maps each v1 controller (and named hierarchy, ``"name=systemd"``) to
    its mount point; co-mounted controllers map to the same one. ``mount_roots`` maps
    the same keys, and ``""`` for the cgroup2 tree, to the hierarchy path each mount
    shows (``"/"`` unless a subtree is mounted).
    """

    __slots__ = ("mode", "mount_roots", "unified_root", "v1_roots")

    def __init__(
        self,
        mode: str,
        unified_root: str | None,
        v1_roots: dict[str, str],
        mount_roots: dict[str, str] | None = None,
    ) -> None:
        self.mode = mode
        self.unified_root = unified_root
        self.v1_roots = v1_roots
        self.mount_roots = mount_roots or {}

    def __repr__(self) -> str:
        return f"Hierarchy({self.mode!r}, {self.unified_root!r}, {self.v1_roots!r})"

    def mount_root(self, key: str) -> str:
        """The hierarchy path mounted for ``key`` (a v1 controller, or "" for cgroup2)."""
        return self.mount_roots.get(key, "/")

    def to_record(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "unifiedRoot": self.unified_root,
            "v1Roots": dict(self.v1_roots),
            "mountRoots": dict(self.mount_roots),
        }

    @classmethod
    def from_record(cls, doc: dict[str, Any]) -> Hierarchy:
        return cls(
            str(doc["mode"]),
            doc.get("unifiedRoot"),
            {str(k): str(v) for k, v in (doc.get("v1Roots") or {}).items()},
            {str(k): str(v) for k, v in (doc.get("mountRoots") or {}).items()},
        )


def parse_mountinfo(text: str) -> Hierarchy:
    """The cgroup layout described by the text of a ``mountinfo`` file."""
    v1_roots: dict[str, str] = {}
    mount_roots: dict[str, str] = {}
    unified: list[tuple[str, str]] = []
    controllers_seen = False
    for mount_point, root, fstype, super_options in mountinfo.parse(text):
        if fstype == "cgroup2":
            unified.append((mount_point, root))
        elif fstype == "cgroup":
            for option in super_options.split(","):
                if option in _V1_OPTIONS or option.startswith("release_agent="):
                    continue
                if option not in v1_roots:
                    v1_roots[option] = mount_point
                    mount_roots[option] = root
                controllers_seen = controllers_seen or not option.startswith("name=")
    unified_root = None
    if unified:
        preferred = [entry for entry in unified if entry[0] in _PREFERRED_UNIFIED]
        unified_root, mount_roots[""] = (preferred or unified)[0]
    if unified_root is not None and not controllers_seen:
        # Only named v1 hierarchies beside cgroup2: every controller is in the v2 tree.
        return Hierarchy("v2", unified_root, {}, {"": mount_roots[""]})
    if unified_root is not None:
        return Hierarchy("hybrid", unified_root, v1_roots, mount_roots)
    if not v1_roots:
        raise CorralError("no cgroup filesystem is mounted (none in /proc/self/mountinfo)")
    return Hierarchy("v1", None, v1_roots, mount_roots)


_detected: dict[str, Hierarchy] = {}


def detect(mountinfo: str = "/proc/self/mountinfo") -> Hierarchy:
    """This process's cgroup layout (cached per file: it does not change under us)."""
    found = _detected.get(mountinfo)
    if found is None:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as file:
            found = _detected[mountinfo] = parse_mountinfo(file.read())
    return found
