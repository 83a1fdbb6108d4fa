"""The cgroupfs driver: a container's cgroup as directories and files.

On a **v2** host the cgroup is one directory of the cgroup2 tree. Before it is made,
every ancestor below the mount point gets all the controllers it offers enabled in its
``cgroup.subtree_control`` (cgroup-v2.rst, "Enabling and Disabling": a controller is
usable in a cgroup only if its parent enables it), one write for all, then one per
controller if that fails (a controller the kernel will not enable there, e.g. ``cpu``
while real-time threads run elsewhere, must not stop the others). Which of them the
container needs is checked by :meth:`FsManager.apply`, naming the field.

On a **v1** host there is one directory per mounted hierarchy (controllers and named
ones like ``name=systemd``); co-mounted controllers share it. A new ``cpuset`` cgroup
starts with empty ``cpuset.cpus`` and ``cpuset.mems`` and refuses tasks
(cgroup-v1/cpusets.rst), so each cpuset directory made here copies its parent's.

On a **hybrid** host the controllers are used in their v1 trees (B's v1 planner, the v1
devices controller, the v1 freezer), and the process also joins the same path in the
cgroup2 tree, which holds no controller: so it is where systemd-style tools and eBPF
programs look for it, ``cgroup.kill`` works, and a config on a host without the v1
``devices`` controller still gets its device rules, as an eBPF program there.

Limits are written in the order the planners give (:mod:`.v1resources`,
:mod:`.v2resources`, :mod:`.devices`) under their ordering contract
(:func:`.convert.write_plan`): a write the kernel refuses with EINVAL is retried once
after the rest of its controller's writes, as v1's memory and memory+swap limits must
be raised in one order and lowered in the other; EBUSY (a memory limit below the usage
that reclaim cannot meet) is final and names its field. A controller a field needs
but the host lacks is a :class:`~corral.errors.ConfigError` naming the field.

The container's cgroup must be empty and thawed when it is taken (config-linux.md
lets a runtime check a cgroup is "fit for purpose"). On removal the cgroup and any
sub-cgroups the container made are removed (rmdir(2), deepest first, retried while the
last processes exit), and so are the ancestors this manager created, when empty.
"""

from __future__ import annotations

from corral.core import fastos
from corral.errors import ConfigError, CorralError, CreateError
from corral.linux.cgroups.manager import CgroupManager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from corral.linux.cgroups.devices import DeviceRule
    from corral.linux.cgroups.hierarchy import Hierarchy

SIGKILL = 9
EINVAL = 22
EBUSY = 16
ENOENT = 2
FREEZE_TIMEOUT = 5.0
_PROCS = "cgroup.procs"


class FsManager(CgroupManager):
    """A container's cgroup on cgroupfs.

    ``relative_path`` is ``linux.cgroupsPath`` cleaned (:func:`.placement.clean_path`):
    ``/a/b`` below each mount point, or ``a/b`` below this process's own cgroup
    (``own``, by default read from ``/proc/self/cgroup``).
    """

    driver = "fs"

    def __init__(
        self, hierarchy: Hierarchy, relative_path: str, *, own: dict[str, str] | None = None
    ) -> None:
        from corral.linux.cgroups.placement import directory, read_own_cgroups

        self.hierarchy = hierarchy
        self.path = relative_path
        self.spec = None
        self.device_nodes: list[Any] | None = None
        self.created: list[str] = []
        if own is None:
            own = {} if relative_path.startswith("/") else read_own_cgroups()
        self.v1_paths: dict[str, str] = {}
        if hierarchy.mode != "v2":
            for key, mount_point in hierarchy.v1_roots.items():
                self.v1_paths[key] = directory(
                    relative_path, mount_point, hierarchy.mount_root(key), own.get(key)
                )
        self.unified_path: str | None = None
        if hierarchy.unified_root is not None:
            self.unified_path = directory(
                relative_path,
                hierarchy.unified_root,
                hierarchy.mount_root(""),
                own.get(""),
                pure_v2=hierarchy.mode == "v2",
            )

    # -- the record ---------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        doc = {
            "driver": self.driver,
            "hierarchy": self.hierarchy.to_record(),
            "path": self.path,
            "unifiedPath": self.unified_path,
            "v1Paths": dict(self.v1_paths),
            "created": list(self.created),
        }
        nodes = self.device_nodes
        if self.spec is not None:
            from corral.linux.cgroups import devices

            # update rebuilds the manager from this record, without the config: the
            # allow rules of its linux.devices nodes go with it.
            nodes = devices.rules_to_record(devices.config_device_rules(self.spec))
        if nodes is not None:
            doc["deviceNodes"] = nodes
        return doc

    @classmethod
    def from_record(cls, doc: dict[str, Any]) -> FsManager:
        manager = cls.__new__(cls)
        manager.load_record(doc)
        return manager

    def load_record(self, doc: dict[str, Any]) -> None:
        """Restore the fields :meth:`to_record` wrote (a subclass adds its own)."""
        from corral.linux.cgroups.hierarchy import Hierarchy

        self.hierarchy = Hierarchy.from_record(doc["hierarchy"])
        self.path = str(doc.get("path", ""))
        self.spec = None
        unified = doc.get("unifiedPath")
        self.unified_path = str(unified) if unified else None
        self.v1_paths = {str(k): str(v) for k, v in (doc.get("v1Paths") or {}).items()}
        self.created = [str(path) for path in doc.get("created") or []]
        nodes = doc.get("deviceNodes")
        # Parsed only by an update of the device rules (devices.rules_from_record).
        self.device_nodes = list(nodes) if isinstance(nodes, list) else None

    # -- directories --------------------------------------------------------------------

    def directories(self) -> list[tuple[str, str]]:
        """(cgroup directory, its hierarchy's mount point), each directory once."""
        seen: dict[str, str] = {}
        for key, path in self.v1_paths.items():
            seen.setdefault(path, self.hierarchy.v1_roots[key])
        if self.unified_path is not None and self.hierarchy.unified_root is not None:
            seen.setdefault(self.unified_path, self.hierarchy.unified_root)
        return list(seen.items())

    def primary(self) -> str:
        """The directory whose tree lists every process of the container."""
        if self.unified_path is not None:
            return self.unified_path  # v2, or hybrid (where every process joins it too)
        for key in ("freezer", "pids", "memory"):
            if key in self.v1_paths:
                return self.v1_paths[key]
        return next(iter(self.v1_paths.values()))

    def create(self) -> None:
        existed = fastos.is_dir(self.primary())
        try:
            for path, mount_point in self.directories():
                cpuset = path == self.v1_paths.get("cpuset")
                self._make(path, mount_point, cpuset=cpuset)
            if existed:
                self._check_fit()
        except BaseException:
            self._remove_created()
            raise

    def _make(self, path: str, mount_point: str, *, cpuset: bool) -> None:
        pure_v2 = self.hierarchy.mode == "v2"
        relative = path[len(mount_point.rstrip("/")) :].strip("/")
        current = mount_point.rstrip("/")
        for part in relative.split("/") if relative else []:
            if pure_v2:
                enable_controllers(current)
            parent, current = current, f"{current}/{part}"
            try:
                fastos.mkdir(current, 0o755)
            except FileExistsError:
                continue
            except OSError as error:
                raise CreateError(f"creating cgroup {current}: {error.strerror}") from None
            self.created.append(current)
            if cpuset:
                copy_cpuset(parent, current)

    def _check_fit(self) -> None:
        found = self.pids()
        if found:
            raise CreateError(
                f"cgroup {self.primary()} already has {len(found)} process(es): "
                "a new container needs an empty cgroup"
            )
        if self.is_frozen():
            raise CreateError(f"cgroup {self.primary()} is frozen: thaw it first")

    # -- limits ---------------------------------------------------------------------

    def apply(
        self, resources: dict[str, Any], *, where: str = "linux.resources", update: bool = False
    ) -> None:
        writes = self.plan(resources, where=where)
        rules = self.device_rules(resources, where=where, update=update)
        if update and isinstance(resources.get("memory"), dict):
            self._check_memory_update(resources, where)
        write_all(writes)
        if rules is not None:
            self._apply_devices(rules)

    def plan(
        self, resources: dict[str, Any], *, where: str = "linux.resources"
    ) -> list[tuple[str, str, str, str]]:
        """(directory, file, value, JSON path) for every limit but the device rules;
        a controller a field needs and the host lacks is a ConfigError naming it."""
        writes: list[tuple[str, str, str, str]] = []
        if self.hierarchy.mode == "v2":
            from corral.linux.cgroups.v2resources import plan_v2

            assert self.unified_path is not None
            try:
                present: set[str] | None = set(fastos.listdir(self.unified_path))
            except OSError:
                present = None
            planned = plan_v2(resources, where=where, files=present)
            available = set(read_text(f"{self.unified_path}/cgroup.controllers").split())
            for name, value, path in planned:
                controller = name.split(".", 1)[0]
                if controller != "cgroup" and controller not in available:
                    raise ConfigError(
                        path,
                        f"the {controller} controller is not enabled for {self.unified_path} "
                        f"(it offers: {' '.join(sorted(available)) or 'none'})",
                    )
                writes.append((self.unified_path, name, value, path))
            return writes
        from corral.linux.cgroups.v1resources import plan_v1

        files: set[str] = set()
        for listed, _mount_point in self.directories():
            try:
                files.update(fastos.listdir(listed))
            except OSError:
                continue
        for controller, name, value, path in plan_v1(resources, where=where, files=files):
            directory = self.v1_paths.get(controller)
            if directory is None:
                raise ConfigError(path, f"the {controller} controller is not mounted on this host")
            writes.append((directory, name, value, path))
        return writes

    def _check_memory_update(self, resources: dict[str, Any], where: str) -> None:
        from corral.linux.cgroups.convert import check_memory_update

        if self.hierarchy.mode == "v2":
            assert self.unified_path is not None
            usage_file = f"{self.unified_path}/memory.current"
        elif "memory" in self.v1_paths:
            usage_file = f"{self.v1_paths['memory']}/memory.usage_in_bytes"
        else:
            return
        try:
            usage = int(read_text(usage_file) or "0")
        except (OSError, ValueError):
            return
        check_memory_update(resources, usage, where=where)

    def device_rules(
        self, resources: dict[str, Any], *, where: str = "linux.resources", update: bool = False
    ) -> list[DeviceRule] | None:
        """The device rules ``apply`` gives the cgroup, checked; None to leave them.

        At create they come from the config. On ``update`` (a manager rebuilt from the
        record, without the config) only a ``devices`` member changes them, combined
        with the record's ``linux.devices`` nodes; the caller passes the container's
        merged resources, so rules it does not mention stay. A manager without a
        config and not updating (tests, ``plan`` users) writes none.
        """
        from corral.linux.cgroups import devices

        if update and "devices" not in resources:
            return None
        if self.spec is not None:
            rules = devices.effective_rules(self.spec, resources, where=where)
        elif not update:
            return None
        else:
            if self.device_nodes is None:
                raise CorralError(
                    f"{where}.devices: the state of this container does not list its "
                    "linux.devices nodes (made by an older corral): its device rules "
                    "cannot be updated"
                )
            try:
                nodes = devices.rules_from_record(self.device_nodes)
            except (ValueError, TypeError) as error:
                raise CorralError(f"container state: {error}") from None
            rules = devices.combine_rules(nodes, resources, where=where)
        # What neither hierarchy can express is refused before any limit is written.
        devices.device_state(rules)
        return rules

    def _apply_devices(self, rules: list[DeviceRule]) -> None:
        from corral.linux.cgroups import devices

        devices_dir = self.v1_paths.get("devices")
        if devices_dir is not None:
            # Only the difference from the cgroup's current state is written: rules both
            # states share are never denied for an instant, re-applying the same rules
            # (containerd sends them with every update) writes nothing, and there is no
            # "a" reset, which the kernel refuses in a cgroup with children (EINVAL).
            try:
                current: str | None = read_text(f"{devices_dir}/devices.list")
            except OSError:
                current = None
            try:
                entries = devices.plan_v1_devices(rules, current)
            except ValueError:  # a devices.list this model does not know: reset instead
                entries = devices.plan_v1_devices(rules)
            for name, value in entries:
                try:
                    _write(f"{devices_dir}/{name}", value)
                except OSError as error:
                    raise CorralError(
                        f'device rules: writing "{value}" to {devices_dir}/{name}: {error.strerror}'
                    ) from None
        elif self.unified_path is not None:
            try:
                devices.apply_v2_devices(self.unified_path, rules)
            except OSError as error:
                raise CorralError(
                    f"device rules: attaching the eBPF program to {self.unified_path}: "
                    f"{error.strerror}"
                ) from None
        else:
            raise CreateError("no devices controller: the v1 devices hierarchy is not mounted")

    # -- processes ------------------------------------------------------------------

    def add_process(self, pid: int) -> None:
        for path, _mount_point in self.directories():
            try:
                write_pid(path, pid)
            except OSError as error:
                raise CreateError(f"joining cgroup {path}: {error.strerror}") from None

    def pids(self) -> list[int]:
        found: set[int] = set()
        for directory in walk(self.primary()):
            try:
                text = read_text(f"{directory}/{_PROCS}")
            except FileNotFoundError:
                continue
            found.update(int(word) for word in text.split())
        return sorted(found)

    def _freezer(self) -> tuple[str, str] | None:
        """("v1", freezer dir) or ("v2", unified dir), whichever can freeze; else None."""
        if self.hierarchy.mode != "v2" and "freezer" in self.v1_paths:
            return "v1", self.v1_paths["freezer"]
        if self.unified_path is not None and fastos.exists(f"{self.unified_path}/cgroup.freeze"):
            return "v2", self.unified_path
        return None

    def freeze(self) -> None:
        freezer = self._freezer()
        if freezer is None:
            raise CorralError(
                "cannot pause: neither the v1 freezer controller nor cgroup v2's "
                "cgroup.freeze is available"
            )
        kind, path = freezer
        if kind == "v1":

            def frozen() -> bool:
                # FREEZING can stall on a task in uninterruptible sleep: asking again
                # retries the tasks left (cgroup-v1/freezer-subsystem.rst).
                _write(f"{path}/freezer.state", "FROZEN")
                return read_text(f"{path}/freezer.state") == "FROZEN"

            done = _poll(frozen)
        else:
            _write(f"{path}/cgroup.freeze", "1")
            done = _poll(lambda: "frozen 1" in read_text(f"{path}/cgroup.events").splitlines())
        if not done:
            self.thaw()
            raise CorralError(f"cgroup {path} did not freeze within {FREEZE_TIMEOUT:g} s")

    def thaw(self) -> None:
        freezer = self._freezer()
        if freezer is None:
            return
        kind, path = freezer
        if kind == "v1":
            _write(f"{path}/freezer.state", "THAWED")
        else:
            _write(f"{path}/cgroup.freeze", "0")

    def is_frozen(self) -> bool:
        freezer = self._freezer()
        if freezer is None:
            return False
        return frozen_state(*freezer)

    def kill_all(self, signal: int) -> None:
        if (
            signal == SIGKILL
            and self.unified_path is not None
            and fastos.exists(f"{self.unified_path}/cgroup.kill")
        ):
            # Linux 5.14: the kernel kills the whole tree, forks in flight included.
            _write(f"{self.unified_path}/cgroup.kill", "1")
            return
        frozen_before = self.is_frozen()
        can_freeze = self._freezer() is not None
        if can_freeze and not frozen_before:
            # Frozen, no process can fork a child that would miss the signal.
            self.freeze()
        try:
            for pid in self.pids():
                try:
                    fastos.kill(pid, signal)
                except ProcessLookupError:
                    pass
        finally:
            # A v1-frozen task acts on SIGKILL only once thawed; other signals find the
            # cgroup as it was.
            if can_freeze and (not frozen_before or signal == SIGKILL):
                self.thaw()

    def destroy(self) -> None:
        failures = []
        leaves = [path for path, _mount_point in self.directories()]
        for path in leaves:
            try:
                remove_tree(path)
            except OSError as error:
                failures.append(f"{path}: {error.strerror}")
        for path in reversed(self.created):
            if path not in leaves:
                try:
                    _rmdir(path)
                except OSError:
                    pass  # not empty: another container's cgroup lives there too
        if failures:
            raise CorralError("removing cgroup " + "; ".join(failures))
        self.created = []

    def _remove_created(self) -> None:
        for path in reversed(self.created):
            try:
                _rmdir(path)
            except OSError:
                pass
        self.created = []


# -- file helpers -------------------------------------------------------------------------


def read_text(path: str) -> str:
    fd = fastos.open(path, fastos.O_RDONLY | fastos.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = fastos.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        fastos.close(fd)
    return b"".join(chunks).decode().strip()


def _write(path: str, value: str) -> None:
    # O_TRUNC as runc does: cgroupfs ignores it, and it matters on a plain file (tests).
    fd = fastos.open(path, fastos.O_WRONLY | fastos.O_TRUNC | fastos.O_CLOEXEC)
    try:
        fastos.write(fd, value.encode())
    finally:
        fastos.close(fd)


def write_all(writes: list[tuple[str, str, str, str]]) -> None:
    """Write (directory, file, value, JSON path) under the planners' ordering
    contract (:func:`.convert.write_plan`): a write refused with EINVAL while a later
    write of the same controller follows is retried once after that controller's
    last one (limits that must stay ordered, e.g. v1 memory <= memory+swap); any
    other refusal, EBUSY included, is final and names its field at once."""
    from corral.linux.cgroups.convert import WriteFailed, write_plan

    try:
        write_plan(writes, _controller_of, _write_item)
    except WriteFailed as failed:
        directory, name, value, path = failed.item
        raise _write_error(directory, name, value, path, failed.error) from None


def _controller_of(item: tuple[str, str, str, str]) -> str:
    # One v2 directory holds every controller's files: the file name's prefix tells them
    # apart (memory.max, cpu.max); on v1 the directory alone would do.
    directory, name, _value, _path = item
    return f"{directory}/{name.split('.', 1)[0]}"


def _write_item(item: tuple[str, str, str, str]) -> None:
    directory, name, value, _path = item
    _write(f"{directory}/{name}", value)


# Why the kernel refuses a limit with EBUSY: memory.limit_in_bytes below what the
# cgroup uses, when reclaim cannot bring the usage under it (cgroup-v1/memory.rst,
# mm/memcontrol.c mem_cgroup_resize_max); memsw likewise.
_BUSY_REASONS = {
    "memory.limit_in_bytes": "the cgroup uses more memory than this and it cannot be reclaimed",
    "memory.memsw.limit_in_bytes": (
        "the cgroup uses more memory+swap than this and it cannot be reclaimed"
    ),
}


def _write_error(directory: str, name: str, value: str, path: str, error: OSError) -> ConfigError:
    if error.errno == ENOENT:
        return ConfigError(path, f"{directory}/{name} does not exist on this host")
    message = f'writing "{value}" to {directory}/{name}: {error.strerror}'
    reason = _BUSY_REASONS.get(name) if error.errno == EBUSY else None
    if reason is not None:
        message += f" ({reason})"
    return ConfigError(path, message)


def write_pid(directory: str, pid: int) -> None:
    """Add ``pid`` to the cgroup; EINVAL (a task still in TASK_NEW) is retried."""
    import time

    for attempt in range(5):
        try:
            _write(f"{directory}/{_PROCS}", str(pid))
            return
        except OSError as error:
            if error.errno != EINVAL or attempt == 4:
                raise
            time.sleep(0.03)


def enable_controllers(directory: str) -> None:
    """Enable in ``directory``'s subtree_control every controller it offers."""
    try:
        offered = read_text(f"{directory}/cgroup.controllers").split()
        enabled = set(read_text(f"{directory}/cgroup.subtree_control").split())
    except FileNotFoundError:
        return
    missing = [name for name in offered if name not in enabled]
    if not missing:
        return
    target = f"{directory}/cgroup.subtree_control"
    try:
        _write(target, " ".join("+" + name for name in missing))
    except OSError:
        for name in missing:
            try:
                _write(target, "+" + name)
            except OSError:
                pass  # apply() names the field that needed it, if one does


def copy_cpuset(parent: str, child: str) -> None:
    """A new v1 cpuset cgroup takes its parent's CPUs and memory nodes."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        try:
            if read_text(f"{child}/{name}"):
                continue
            value = read_text(f"{parent}/{name}")
        except FileNotFoundError:
            continue
        if value:
            _write(f"{child}/{name}", value)


def frozen_state(kind: str, path: str) -> bool:
    """Whether a freeze was asked of the cgroup (v1 ``freezer.state``, v2 ``cgroup.freeze``)."""
    try:
        if kind == "v1":
            return read_text(f"{path}/freezer.state") != "THAWED"
        return read_text(f"{path}/cgroup.freeze") == "1"
    except OSError:
        return False


def walk(top: str) -> list[str]:
    """``top`` and every directory below it."""
    found = [top]
    index = 0
    while index < len(found):
        directory = found[index]
        index += 1
        try:
            names = fastos.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            continue
        found.extend(
            f"{directory}/{name}" for name in sorted(names) if fastos.is_dir(f"{directory}/{name}")
        )
    return found


def _rmdir(path: str) -> None:
    fastos.rmdir(path)


def remove_tree(path: str, *, attempts: int = 6) -> None:
    """rmdir ``path`` and its sub-cgroups, deepest first; EBUSY (processes still
    exiting) is retried with a growing delay. A missing directory is fine."""
    import time

    delay = 0.01
    for attempt in range(attempts):
        try:
            for directory in reversed(walk(path)):
                try:
                    _rmdir(directory)
                except FileNotFoundError:
                    pass
            return
        except OSError as error:
            if error.errno != EBUSY or attempt == attempts - 1:
                raise
            time.sleep(delay)
            delay *= 2


def _poll(done: Callable[[], bool]) -> bool:
    import time

    deadline = time.monotonic() + FREEZE_TIMEOUT
    delay = 0.001
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True
