"""The driver-neutral cgroup interface, its state-file record, and driver selection.

A :class:`CgroupManager` knows the directories of one container's cgroup: the v1
controllers' (``v1_paths``) and the cgroup2 tree's (``unified_path``); on a hybrid host
both are set. The backend calls, in this order: :meth:`~CgroupManager.create` and
:meth:`~CgroupManager.apply` before it forks the init, :meth:`~CgroupManager.add_process`
when the init asks to join, and :meth:`~CgroupManager.destroy` once every process is
gone. ``pause``, ``resume``, ``kill --all``, ``ps``, ``update`` and ``events`` rebuild
the manager from the record (:func:`manager_from_record`).

Two drivers: ``fs`` (:class:`corral.linux.cgroups.fs.FsManager`, writes cgroupfs
directly) and ``systemd`` (:mod:`corral.linux.cgroups.systemd`, asks systemd for a
transient scope first). :func:`manager_for` picks one from ``--systemd-cgroup``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.linux.cgroups.hierarchy import Hierarchy
    from corral.spec.model import Spec


class CgroupManager:
    """One container's cgroup. Subclasses implement every method."""

    driver = "none"
    # The config the device rules come from; set by manager_for (create), None in a
    # manager rebuilt from the record (update leaves the device rules alone).
    spec: Spec | None = None
    hierarchy: Hierarchy
    unified_path: str | None
    v1_paths: dict[str, str]

    def create(self) -> None:
        """Make the directories (enabling v2 controllers in the ancestors)."""
        raise NotImplementedError

    def apply(
        self, resources: dict[str, Any], *, where: str = "linux.resources", update: bool = False
    ) -> None:
        """Write ``resources`` (a ``linux.resources`` object) into the cgroup."""
        raise NotImplementedError

    def add_process(self, pid: int) -> None:
        """Move ``pid`` into the cgroup, in every hierarchy."""
        raise NotImplementedError

    def pids(self) -> list[int]:
        """Every process in the cgroup and its descendants, sorted."""
        raise NotImplementedError

    def freeze(self) -> None:
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def is_frozen(self) -> bool:
        raise NotImplementedError

    def kill_all(self, signal: int) -> None:
        """Send ``signal`` to every process in the cgroup."""
        raise NotImplementedError

    def destroy(self) -> None:
        """Remove the cgroup (its processes must be gone)."""
        raise NotImplementedError

    def to_record(self) -> dict[str, Any]:
        """A JSON-able description, from which :func:`manager_from_record` rebuilds it."""
        raise NotImplementedError


def manager_from_record(doc: dict[str, Any]) -> CgroupManager:
    """The manager a state record's ``extra["cgroup"]`` describes."""
    if doc.get("driver") == "systemd":
        from corral.linux.cgroups.systemd import SystemdManager

        return SystemdManager.from_record(doc)
    from corral.linux.cgroups.fs import FsManager

    return FsManager.from_record(doc)


def manager_for(spec: Spec, container_id: str, *, systemd: bool) -> CgroupManager:
    """The manager of a new container's cgroup (nothing is created yet).

    ``systemd`` is ``--systemd-cgroup``: ``linux.cgroupsPath`` is then
    ``slice:prefix:name`` and systemd owns the cgroup; otherwise it is a path.
    """
    from corral.linux.cgroups.hierarchy import detect

    linux = spec.raw.get("linux") or {}
    value = linux.get("cgroupsPath") or ""
    if not isinstance(value, str):
        from corral.errors import ConfigError

        raise ConfigError("linux.cgroupsPath", "must be a string")
    hierarchy = detect()
    manager: CgroupManager
    if systemd:
        from corral.linux.cgroups.systemd import systemd_manager_for

        manager = systemd_manager_for(hierarchy, value, container_id)
    else:
        from corral.linux.cgroups.fs import FsManager
        from corral.linux.cgroups.placement import clean_path

        manager = FsManager(hierarchy, clean_path(value, container_id))
    manager.spec = spec
    return manager


def check_cgroup_config(spec: Spec, container_id: str, *, systemd: bool) -> None:
    """Before anything is created: ``linux.cgroupsPath``'s form, and every
    ``linux.resources`` value through the planners, with the controllers it needs."""
    from corral.errors import ConfigError
    from corral.linux.cgroups import placement

    linux = spec.raw.get("linux") or {}
    value = linux.get("cgroupsPath") or ""
    if not isinstance(value, str):
        raise ConfigError("linux.cgroupsPath", "must be a string")
    if systemd:
        placement.parse_systemd_path(value, container_id)
    else:
        placement.clean_path(value, container_id)
    resources = linux.get("resources")
    if resources is None:
        return
    if not isinstance(resources, dict):
        raise ConfigError("linux.resources", "must be an object")
    from corral.linux.cgroups.hierarchy import detect

    hierarchy = detect()
    if hierarchy.mode == "v2":
        from corral.linux.cgroups.fs import read_text
        from corral.linux.cgroups.v2resources import plan_v2

        assert hierarchy.unified_root is not None
        offered = set(read_text(f"{hierarchy.unified_root}/cgroup.controllers").split())
        for name, _value, path in plan_v2(resources):
            controller = name.split(".", 1)[0]
            if controller != "cgroup" and controller not in offered:
                raise ConfigError(
                    path, f"the {controller} controller is not available on this host"
                )
    else:
        from corral.linux.cgroups.v1resources import plan_v1

        for controller, _name, _value, path in plan_v1(resources):
            if controller not in hierarchy.v1_roots:
                raise ConfigError(path, f"the {controller} controller is not mounted on this host")
    from corral.linux.cgroups import devices

    # The rules as a v1 controller state: refuses what neither hierarchy can express.
    devices.device_state(devices.effective_rules(spec, resources))
