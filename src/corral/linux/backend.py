"""The Linux backend: the parent's side of ``create``.

``create`` forks the init directly (no re-exec of the runtime, so no second
interpreter start-up and no runtime binary for a container to reach, cf.
CVE-2019-5736). Before the fork the parent enters the container's pid namespace for
its children (``unshare(CLONE_NEWPID)`` or ``setns`` on a given path) so the child is
born as its pid 1, then returns to its own. The child reports over a pipe
(:mod:`corral.core.handshake`): ``{"ready": true}`` or ``{"error": "..."}``, and,
when the config has ``prestart`` or ``createRuntime`` hooks, first the ``hooks``
request once its mounts are made: the parent runs those hooks here, in the runtime's
namespaces, from the bundle directory, with the state's ``pid`` the init's as this
process sees it, then lets the init go on. On an error, a failing hook or silence the
parent kills and reaps the child and raises :class:`~corral.errors.CreateError` (a
:class:`~corral.core.hooks.HookError` names the hook); the mounts lived in the child's
mount namespace, so nothing is left behind.

The container's cgroup (:mod:`corral.linux.cgroups`) is made and given its limits
before the fork; the init's first request, ``cgroup-join``, has the parent write its
pid into it; on any failure, and on ``destroy``, what is left in it is killed and it is
removed. ``pause``, ``resume``, ``kill --all``, ``processes``, ``update`` and ``stats``
go through the manager rebuilt from the record's ``extra["cgroup"]``.
"""

from __future__ import annotations

from corral.backend import Backend, CreatedInit
from corral.core import fastos
from corral.core.procinfo import kill_and_reap
from corral.errors import ConfigError, CreateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from corral.backend import CreateRequest
    from corral.core.state import Record
    from corral.linux.cgroups.manager import CgroupManager
    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Namespace, Spec


SIGKILL = 9


class LinuxBackend(Backend):
    platform = "linux"

    def warm_up(self) -> None:
        from corral.linux.cgroups import warmup

        warmup.start()

    def check(self, request: CreateRequest) -> None:
        from corral.linux.check import check_config

        check_config(request)

    def create(self, request: CreateRequest) -> CreatedInit:
        manager = _make_cgroup(request)
        try:
            init = self._create(request, manager)
        except BaseException:
            if manager is not None:
                _remove_cgroup(manager)
            raise
        if manager is not None:
            init.extra["cgroup"] = manager.to_record()
        return init

    def _create(self, request: CreateRequest, manager: CgroupManager | None) -> CreatedInit:
        import os

        from corral.core import handshake
        from corral.linux import syscalls as sc_
        from corral.linux.cgroups import warmup

        warmup.finish()  # before any fork (no thread may run then)
        sc = sc_.Syscalls()
        spec = request.spec
        assert spec.linux is not None
        ns_fds = _open_namespace_paths(spec.linux.namespaces)
        console_fd = -1
        if spec.process is not None and spec.process.terminal and request.console_socket:
            # Connected now: an init in a user namespace may not reach the socket's path.
            from corral.linux.terminal import connect_early

            console_fd = connect_early(request.console_socket)
        pid_ns = spec.linux.namespace("pid")
        own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        commit_read, commit_write = os.pipe2(os.O_CLOEXEC)
        user_ns = spec.linux.namespace("user")
        if user_ns is not None:
            from corral.linux import idmap, userns

            trees: dict[int, int] = {}
            try:
                if user_ns.path:
                    userns.check_joined_mappings(sc, spec, ns_fds["user"])
                uid_maps, gid_maps = userns.user_mappings(spec)
                trees = idmap.prepare_idmapped_mounts(sc, spec, request.bundle)
                state_fd = os.open(request.state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

                def child() -> NoReturn:
                    os.close(read_fd)
                    os.close(commit_write)
                    from corral.linux.init import run_init

                    run_init(sc, request, write_fd, commit_read, {}, state_fd=state_fd, trees=trees)

                try:
                    pid = userns.spawn_in_user_namespace(
                        sc, spec.linux.namespaces, ns_fds, uid_maps, gid_maps, child
                    )
                finally:
                    os.close(state_fd)
            except BaseException:
                os.close(read_fd)
                os.close(commit_write)
                raise
            finally:
                os.close(own_pid_ns)
                os.close(write_fd)
                os.close(commit_read)
                if console_fd >= 0:
                    os.close(console_fd)
                for fd in [*ns_fds.values(), *trees.values()]:
                    os.close(fd)
        else:
            trees2: dict[int, int] = {}
            if _wants_idmapped_mounts(spec):
                from corral.linux import idmap as idmap_

                trees2 = idmap_.prepare_idmapped_mounts(sc, spec, request.bundle)
            try:
                if pid_ns is not None and pid_ns.path:
                    sc.setns(ns_fds.pop("pid"), sc_.CLONE_NEWPID, pid_ns.path)
                elif pid_ns is not None:
                    sc.unshare(sc_.CLONE_NEWPID)
                pid = os.fork()
                if pid == 0:  # the container's init
                    os.close(read_fd)
                    os.close(commit_write)
                    from corral.linux.init import run_init

                    run_init(
                        sc,
                        request,
                        write_fd,
                        commit_read,
                        ns_fds,
                        trees=trees2,
                        console_fd=console_fd,
                    )
                for fd in trees2.values():
                    os.close(fd)
                if pid_ns is not None:
                    sc.setns(own_pid_ns, sc_.CLONE_NEWPID, "/proc/self/ns/pid")
            finally:
                os.close(own_pid_ns)
                os.close(write_fd)
                os.close(commit_read)
                if console_fd >= 0:
                    os.close(console_fd)
                for fd in ns_fds.values():
                    os.close(fd)
        rdt_group, rdt_groups = "", list[str]()
        try:
            answer = handshake.serve_requests(
                read_fd,
                commit_write,
                {
                    handshake.HOOKS: lambda: _run_runtime_hooks(request, pid),
                    handshake.TIME_OFFSETS: lambda: _write_time_offsets(request, pid),
                    handshake.NET_DEVICES: lambda: _move_net_devices(request, pid),
                    **_seccomp_handlers(sc, request, pid),
                    **_cgroup_handlers(manager, pid),
                },
            )
            if answer.get("ready") is not True:
                message = answer.get("error") or "container init exited during setup"
                raise CreateError(str(message))
            from corral.core.procinfo import read_start_time

            start_time = read_start_time(pid)
            if start_time is None:
                raise CreateError("container init exited during setup")
            if spec.raw.get("linux", {}).get("intelRdt") is not None:
                from corral.linux.intelrdt import apply_intel_rdt

                # The init is ready and waits for start: it and its children go in.
                rdt_group, rdt_groups = apply_intel_rdt(spec, request.container_id, pid)
        except BaseException:
            # Also on KeyboardInterrupt in a program using the API: the init must not
            # be left waiting for an answer that will not come.
            os.close(read_fd)
            os.close(commit_write)
            kill_and_reap(pid)
            raise
        extra: dict[str, object] = {"ownPidNamespace": bool(pid_ns and not pid_ns.path)}
        if rdt_group:
            extra["intelRdtGroup"] = rdt_group  # where update writes schemata
        if rdt_groups:
            extra["intelRdtGroups"] = rdt_groups  # removed on delete (config-linux.md)
        return CreatedInit(pid, start_time, extra, commit_fd=commit_write, ack_fd=read_fd)

    def commit(self, init: CreatedInit) -> None:
        from corral.core import handshake

        handshake.commit(init.commit_fd, init.ack_fd)

    def processes(self, record: Record) -> list[int]:
        from corral.core.procinfo import children_of

        manager = _manager(record)
        if manager is not None:
            found = manager.pids()
            if record.pid in found:
                found.remove(record.pid)
                found.insert(0, record.pid)
            return found
        if record.extra.get("ownPidNamespace"):
            return [record.pid, *_same_pid_namespace(record.pid)]
        return [record.pid, *children_of(record.pid)]

    def destroy(self, record: Record) -> None:
        # Every mount lives in the container's own mount namespace and goes with it.
        # The poststop hooks are the core's.
        groups = record.extra.get("intelRdtGroups")
        if isinstance(groups, list):
            from corral.linux.intelrdt import remove_intel_rdt

            remove_intel_rdt([str(path) for path in groups])
        manager = _manager(record)
        if manager is not None:
            _remove_cgroup(manager)

    # -- through the container's cgroup -----------------------------------------------

    def kill_all(self, record: Record, signal: int) -> None:
        manager = _manager(record)
        if manager is None:
            super().kill_all(record, signal)
        else:
            manager.kill_all(signal)

    def is_paused(self, record: Record) -> bool:
        doc = record.extra.get("cgroup")
        if not isinstance(doc, dict):
            return False
        from corral.linux.cgroups import is_frozen_record

        return is_frozen_record(doc)

    def pause(self, record: Record) -> None:
        _require_manager(record, "pause").freeze()

    def resume(self, record: Record) -> None:
        _require_manager(record, "resume").thaw()

    def update(self, record: Record, resources: dict[str, Any], *, where: str) -> None:
        _require_manager(record, "update").apply(resources, where=where, update=True)

    def update_intel_rdt(self, record: Record, lines: list[str]) -> None:
        from corral.linux.intelrdt import find_resctrl, update_schemata

        group = record.extra.get("intelRdtGroup")
        group, created = update_schemata(
            find_resctrl(),
            group if isinstance(group, str) else "",
            record.id,
            [] if group else self.processes(record),
            lines,
        )
        record.extra["intelRdtGroup"] = group
        if created:
            made = record.extra.get("intelRdtGroups")
            record.extra["intelRdtGroups"] = [*(made if isinstance(made, list) else []), *created]

    def stats(self, record: Record) -> dict[str, Any]:
        from corral.linux.cgroups.stats import read_stats

        return read_stats(_require_manager(record, "stats"))


def _manager(record: Record) -> CgroupManager | None:
    """The container's cgroup manager, from its record (None: created without one)."""
    doc = record.extra.get("cgroup")
    if not isinstance(doc, dict):
        return None
    from corral.linux.cgroups.manager import manager_from_record

    return manager_from_record(doc)


def _require_manager(record: Record, action: str) -> CgroupManager:
    manager = _manager(record)
    if manager is None:
        from corral.errors import CorralError

        raise CorralError(f"{action}: container {record.id} has no cgroup")
    return manager


def _make_cgroup(request: CreateRequest) -> CgroupManager | None:
    """Create the container's cgroup and write its limits, before the init exists;
    the init joins it first thing (``cgroup_join``). A host without any cgroup
    filesystem runs a container that asks for no cgroup setting without one."""
    from corral.errors import CorralError
    from corral.linux.cgroups.manager import manager_for

    linux = request.spec.raw.get("linux") or {}
    resources = linux.get("resources")
    try:
        manager = manager_for(request.spec, request.container_id, systemd=request.systemd_cgroup)
    except CorralError as error:
        if (
            linux.get("cgroupsPath")
            or resources
            or request.systemd_cgroup
            or "no cgroup filesystem" not in str(error)
        ):
            raise
        return None
    manager.create()
    try:
        manager.apply(resources if isinstance(resources, dict) else {})
    except BaseException:
        manager.destroy()
        raise
    request.cgroup_join = True
    return manager


def _cgroup_handlers(manager: CgroupManager | None, pid: int) -> dict[str, Callable[[], object]]:
    """The init's first request: the parent moves it into the container's cgroup
    (so it works from a user namespace too, and before the init's cgroup namespace)."""
    if manager is None:
        return {}
    from corral.linux.cgroups import JOIN_REQUEST

    return {JOIN_REQUEST: lambda: manager.add_process(pid)}


def _remove_cgroup(manager: CgroupManager, timeout: float = 5.0) -> None:
    """Kill what is left in the cgroup, wait until it is empty, and remove it."""
    import time

    from corral.errors import CorralError

    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        left = manager.pids()
        if not left:
            break
        if time.monotonic() > deadline:
            raise CorralError(f"cgroup of the container still has processes {left} after SIGKILL")
        manager.kill_all(SIGKILL)  # thaws a frozen cgroup, so the signal acts
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    manager.destroy()


def _seccomp_handlers(
    sc: Syscalls, request: CreateRequest, pid: int
) -> dict[str, Callable[[], object]]:
    """The init's request to send its seccomp listener to ``listenerPath``; imported
    only for a config with a profile."""
    if (request.spec.raw.get("linux") or {}).get("seccomp") is None:
        return {}
    from corral.linux import seccomp_notify

    return {seccomp_notify.REQUEST: lambda: seccomp_notify.hand_over_from_init(sc, request, pid)}


def _run_runtime_hooks(request: CreateRequest, init_pid: int) -> None:
    """``prestart`` (deprecated) then ``createRuntime``, while the init waits before
    ``pivot_root`` (config.md); from the bundle directory, where runc runs them."""
    from corral.core.hooks import run_hooks
    from corral.linux.init import hook_state

    hooks = request.spec.hooks
    if not hooks:
        return
    state = hook_state(request, "creating", init_pid)
    run_hooks(hooks.prestart, state, kind="prestart", cwd=request.bundle)
    run_hooks(hooks.create_runtime, state, kind="createRuntime", cwd=request.bundle)


def _open_namespace_paths(namespaces: list[Namespace]) -> dict[str, int]:
    """Open each namespace given by path now, so a bad path fails before the fork."""
    import os

    fds: dict[str, int] = {}
    for index, ns in enumerate(namespaces):
        if not ns.path:
            continue
        try:
            fds[ns.type] = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            for fd in fds.values():
                os.close(fd)
            raise ConfigError(
                f"linux.namespaces[{index}].path", f"{ns.path}: {error.strerror}"
            ) from None
    return fds


def _same_pid_namespace(init_pid: int) -> list[int]:
    """Processes (other than init) that live in init's pid namespace."""
    try:
        target = fastos.readlink(f"/proc/{init_pid}/ns/pid")
    except OSError:
        return []
    found = []
    for name in fastos.listdir("/proc"):
        if not name.isdigit() or int(name) == init_pid:
            continue
        try:
            if fastos.readlink(f"/proc/{name}/ns/pid") == target:
                found.append(int(name))
        except OSError:
            continue
    return found


def _write_time_offsets(request: CreateRequest, pid: int) -> None:
    """The init unshared a time namespace inside a user namespace: its own proc files
    are root's (it is non-dumpable), so the parent writes the offsets (as runc does)."""
    from corral.linux.timens import write_time_offsets

    write_time_offsets(request.spec, pid)


def _move_net_devices(request: CreateRequest, pid: int) -> None:
    """linux.netDevices: the init's network namespace exists; the interfaces are in
    the runtime's, so the parent moves them (corral.linux.netdevices)."""
    from corral.linux.netdevices import apply_net_devices

    apply_net_devices(request.spec, pid)


def _wants_idmapped_mounts(spec: Spec) -> bool:
    """Whether any mount is idmapped (corral.linux.idmap is imported only then)."""
    return any({"idmap", "ridmap"} & set(mount.options) for mount in spec.mounts) or any(
        isinstance(raw, dict) and bool(raw.get("uidMappings") or raw.get("gidMappings"))
        for raw in spec.raw.get("mounts") or []
    )
