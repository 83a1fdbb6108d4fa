"""The OCI lifecycle: create, start, state, kill, delete, run, list.

:class:`Runtime` is corral's Python API and what the CLI calls. It owns the state
store and the status machine; everything that touches the kernel goes to the
platform backend. A container's status is derived, not trusted from the record:

============  ==========================================================
creating      the record says so (``create`` has not finished)
created       the init lives and the exec fifo still exists
running       the init lives and the fifo is gone (``start`` removed it)
paused        running or created, and the backend says its processes are frozen
stopped       the init is gone, or its pid now belongs to another process
============  ==========================================================

Only a record with a ``cgroup`` (the Linux backend's) can be paused, so ``state`` asks
the backend only then.

A failed ``create`` leaves nothing: the init is killed and reaped, the backend
undoes its work, and the state directory is removed.
"""

from __future__ import annotations

from corral import OCI_VERSION
from corral.core import fastos
from corral.core import state as st
from corral.core.ids import validate_id
from corral.core.procinfo import is_alive, read_start_time, wait_for_exit
from corral.errors import (
    BundleError,
    ConfigError,
    ContainerNotRunningError,
    CorralError,
    IllegalStateError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable
    from typing import Any

    from corral.backend import Backend
    from corral.spec.model import Spec

DEFAULT_ROOT = "/run/corral"
SIGKILL = 9
WNOHANG = 1


class Runtime:
    """Containers under one state root.

    >>> rt = Runtime(root="/run/corral")            # doctest: +SKIP
    >>> rt.create("c1", bundle="/srv/c1")           # doctest: +SKIP
    >>> rt.start("c1"); rt.state("c1")["status"]    # doctest: +SKIP
    'running'
    """

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        backend: Backend | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.store = st.StateStore(root)
        self._backend = backend
        self.warn = warn or _warn_on_stderr

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from corral.backend import select_backend

            self._backend = select_backend()
        return self._backend

    # -- queries -------------------------------------------------------------------

    def status(self, record: st.Record) -> str:
        if record.stored_status == st.CREATING:
            return st.CREATING
        if not is_alive(record.pid, record.start_time):
            return st.STOPPED
        if record.extra.get("cgroup") and self.backend.is_paused(record):
            return st.PAUSED
        fifo = f"{self.store.directory(record.id)}/{st.FIFO_NAME}"
        return st.CREATED if fastos.exists(fifo) else st.RUNNING

    def state(self, container_id: str) -> dict[str, Any]:
        """The container's state as runc prints it (a superset of the OCI state)."""
        return self._describe(self.store.load(container_id))

    def _describe(self, record: st.Record) -> dict[str, Any]:
        status = self.status(record)
        result: dict[str, Any] = {
            "ociVersion": record.oci_version,
            "id": record.id,
            "pid": record.pid if status in _LIVE else 0,
            "status": status,
            "bundle": record.bundle,
            "rootfs": record.rootfs,
            "created": record.created,
            "owner": record.owner,
        }
        if record.annotations:
            result["annotations"] = record.annotations
        return result

    def list(self) -> list[dict[str, Any]]:
        """The state of every container under the root, by id."""
        found = []
        for container_id in self.store.ids():
            try:
                found.append(self.state(container_id))
            except CorralError:
                continue  # created or deleted while we looked
        return found

    # -- create ---------------------------------------------------------------------

    def create(
        self,
        container_id: str,
        bundle: str,
        *,
        pid_file: str | None = None,
        console_socket: str | None = None,
        no_pivot: bool = False,
        no_new_keyring: bool = False,
        preserve_fds: int = 0,
        systemd_cgroup: bool = False,
    ) -> dict[str, Any]:
        """Set a container up with its init waiting for :meth:`start`.

        ``systemd_cgroup`` (``--systemd-cgroup``): systemd owns the container's cgroup
        and ``linux.cgroupsPath`` is ``slice:prefix:name``.
        """
        from corral.backend import CreateRequest

        validate_id(container_id)
        # The kernel's part of placing the init in its cgroup, begun while the config
        # is read and checked (corral.linux.cgroups.warmup).
        self.backend.warm_up()
        bundle = fastos.absolute(bundle)
        spec = load_bundle_config(bundle)
        import os

        if spec.process is not None and "LISTEN_FDS" in os.environ:
            from corral.core.run import listen_fds

            # systemd socket activation (runc's rule): the caller's LISTEN_FDS go through.
            preserve_fds, listen_env = listen_fds(os.environ, preserve_fds)
            spec.process.env.extend(listen_env)
        request = CreateRequest(
            container_id=container_id,
            bundle=bundle,
            rootfs=resolve_rootfs(spec, bundle),
            spec=spec,
            state_dir=self.store.directory(container_id),
            fifo_name=st.FIFO_NAME,
            console_socket=console_socket,
            no_pivot=no_pivot,
            no_new_keyring=no_new_keyring,
            preserve_fds=preserve_fds,
            systemd_cgroup=systemd_cgroup,
        )
        backend = self.backend
        backend.check(request)
        self.store.claim(container_id)
        record = st.Record(
            id=container_id,
            bundle=bundle,
            rootfs=request.rootfs,
            oci_version=OCI_VERSION,  # the version the state complies with: corral's
            created=_now_rfc3339(),
            owner=_user_name(fastos.geteuid()),
            annotations=spec.annotations,
        )
        init = None
        try:
            self.store.save(record)
            from corral.core.fifo import make_fifo

            make_fifo(f"{request.state_dir}/{st.FIFO_NAME}")
            init = backend.create(request)
            record.pid, record.start_time = init.pid, init.start_time
            record.extra = init.extra
            resources = (spec.raw.get("linux") or {}).get("resources")
            if record.extra.get("cgroup") and isinstance(resources, dict):
                # What `update` lays its fields over (runc keeps the whole config too).
                record.extra["resources"] = resources
            if spec.hooks:
                # poststart and poststop run from later calls: keep them with the record.
                record.extra["hooks"] = spec.raw["hooks"]
            record.stored_status = st.CREATED
            self.store.save(record)
            if pid_file:
                write_pid_file(pid_file, init.pid)
            backend.commit(init)
        except BaseException:
            if init is not None:
                _kill_and_wait(init.pid, init.start_time)
                backend.destroy(record)
            self.store.remove(container_id)
            raise
        return self._describe(record)

    def run(
        self,
        container_id: str,
        bundle: str,
        *,
        detach: bool = False,
        pid_file: str | None = None,
        no_pivot: bool = False,
        no_new_keyring: bool = False,
        preserve_fds: int = 0,
        systemd_cgroup: bool = False,
    ) -> int:
        """Create and start; unless ``detach``, wait, delete and return the exit status
        (128 + the signal number when the program was killed by one)."""
        from corral.core.run import run_container

        return run_container(
            self,
            container_id,
            bundle,
            detach=detach,
            pid_file=pid_file,
            no_pivot=no_pivot,
            no_new_keyring=no_new_keyring,
            preserve_fds=preserve_fds,
            systemd_cgroup=systemd_cgroup,
        )

    # -- start, kill, delete ------------------------------------------------------

    def start(self, container_id: str) -> None:
        """Release the init to exec the user's program."""
        from corral.core.fifo import release_init

        lock = self.store.lock(container_id)
        try:
            record = self.store.load(container_id)
            status = self.status(record)
            if status == st.RUNNING:
                raise IllegalStateError("cannot start an already running container")
            if status == st.STOPPED:
                raise IllegalStateError("cannot start a container that has stopped")
            if status != st.CREATED:
                raise IllegalStateError(f"cannot start a container in the {status} state")
            fifo = f"{self.store.directory(container_id)}/{st.FIFO_NAME}"
            release_init(fifo, lambda: is_alive(record.pid, record.start_time))
            # config.md: a failing poststart hook is a warning; the lifecycle goes on.
            self._run_hooks(record, "poststart", st.RUNNING)
        finally:
            self.store.unlock(lock)

    def kill(self, container_id: str, signal: int = 15, *, all: bool = False) -> None:
        """Send ``signal`` to the init (or, with ``all``, to every process of the container)."""
        lock = self.store.lock(container_id)
        try:
            record = self.store.load(container_id)
            status = self.status(record)
            if status not in _LIVE:
                if all and record.extra.get("cgroup"):
                    # As runc: --all still reaches what is left in a stopped container's
                    # cgroup (containerd's shim relies on it to end the other processes
                    # when the container shares the host's pid namespace); none is no error.
                    self._kill_leftovers(record, signal)
                    return
                raise ContainerNotRunningError()
            if all:
                self.backend.kill_all(record, signal)
                return
            try:
                fastos.kill(record.pid, signal)
            except ProcessLookupError:
                raise ContainerNotRunningError() from None
            if status == st.PAUSED and signal == SIGKILL:
                # The v1 freezer holds even SIGKILL until the cgroup thaws; as runc, thaw
                # it, so that `kill ID 9` ends a paused container too.
                self.backend.resume(record)
        finally:
            self.store.unlock(lock)

    def _kill_leftovers(self, record: st.Record, signal: int) -> None:
        """Signal the processes still in a stopped container's cgroup, if any."""
        try:
            if not self.backend.processes(record):
                return
        except OSError:
            return  # the cgroup is gone (systemd removes an empty unit's)
        self.backend.kill_all(record, signal)

    def delete(self, container_id: str, *, force: bool = False) -> None:
        """Remove a stopped container; ``force`` kills a running one first."""
        validate_id(container_id)
        if not self.store.exists(container_id):
            from corral.errors import ContainerNotFoundError

            raise ContainerNotFoundError(container_id)
        lock = self.store.lock(container_id)
        try:
            try:
                record = self.store.load(container_id)
            except CorralError:
                if not force:
                    raise
                self.store.remove(container_id)  # a create that died half-way
                return
            status = self.status(record)
            if status in (st.RUNNING, st.PAUSED) and not force:
                raise IllegalStateError(
                    f"cannot delete container {container_id} that is not stopped: {status}"
                )
            if status in _LIVE:
                # A created container is deleted without --force, as runc does: its init
                # has not run any user code yet. A paused one is thawed after the SIGKILL
                # (the v1 freezer holds even fatal signals until then).
                self.backend.kill_all(record, SIGKILL)
                if status == st.PAUSED:
                    self.backend.resume(record)
                if not wait_for_exit(record.pid, record.start_time, timeout=10.0):
                    raise IllegalStateError(f"container {container_id} init did not exit")
            try:
                self.backend.destroy(record)
            except CorralError as error:
                if not force:
                    raise  # the record stays, so a second delete can try again
                # --force: what could not be undone is reported, and the container is
                # forgotten all the same, or a half-undone one could never be deleted.
                self.warn(f"{error}; forgetting container {container_id} anyway (--force)")
            _reap_if_child(record.pid)
            self._run_hooks(record, "poststop", st.STOPPED)
            self.store.remove(container_id)
        finally:
            self.store.unlock(lock)

    # -- pause, resume, update, stats, processes -----------------------------------

    def pause(self, container_id: str) -> None:
        """Freeze every process of a running (or created) container."""
        lock = self.store.lock(container_id)
        try:
            record = self.store.load(container_id)
            if self.status(record) not in (st.CREATED, st.RUNNING):
                raise ContainerNotRunningError()
            self.backend.pause(record)
        finally:
            self.store.unlock(lock)

    def resume(self, container_id: str) -> None:
        """Thaw a paused container."""
        lock = self.store.lock(container_id)
        try:
            record = self.store.load(container_id)
            if self.status(record) != st.PAUSED:
                raise IllegalStateError("container not paused")
            self.backend.resume(record)
        finally:
            self.store.unlock(lock)

    def update(
        self,
        container_id: str,
        resources: dict[str, Any],
        *,
        where: str = "linux.resources",
        source: str = "update",
        intel_rdt: builtins.list[str] | None = None,
    ) -> None:
        """Apply new limits (a ``linux.resources`` object) to a live container.

        ``resources`` is laid over the container's current ones (the config's at
        create, as changed by earlier updates) and the backend applies the MERGED
        document, as runc does: cgroup v2 writes some limits from two fields
        (``memory.swap.max`` = swap - limit, ``cpu.max`` = quota and period), so
        ``--memory-swap`` alone needs the current memory limit and ``--cpu-quota``
        alone must keep a custom period. A config error names the field under
        ``where`` and says it comes from ``source``, not from ``config.json``.

        ``intel_rdt`` are new schemata lines for the container's Intel RDT group; they
        go first, so that a host without the resource fails before anything changed."""
        lock = self.store.lock(container_id)
        try:
            record = self.store.load(container_id)
            if self.status(record) not in _LIVE:
                raise ContainerNotRunningError()
            if intel_rdt:
                self.backend.update_intel_rdt(record, intel_rdt)
                self.store.save(record)  # a group made for it is removed on delete
            current = record.extra.get("resources")
            merged = merge_resources(current if isinstance(current, dict) else {}, resources)
            try:
                self.backend.update(record, resources_to_apply(merged, resources), where=where)
            except ConfigError as error:
                if error.source != "config.json":
                    raise
                # The cgroup code names config.json by default; this document is the
                # update's (--resources or the flags) over the container's resources.
                raise ConfigError(error.path, error.message, source=source) from None
            record.extra["resources"] = merged
            self.store.save(record)
        finally:
            self.store.unlock(lock)

    def stats(self, container_id: str) -> dict[str, Any]:
        """The container's resource usage (runc's ``events --stats`` data)."""
        record = self.store.load(container_id)
        if self.status(record) not in _LIVE:
            raise ContainerNotRunningError()
        return self.backend.stats(record)

    def processes(self, container_id: str) -> builtins.list[int]:
        """The pids (as this process sees them) of every process of the container."""
        record = self.store.load(container_id)
        if self.status(record) == st.CREATING:
            return []
        return self.backend.processes(record)

    def _run_hooks(self, record: st.Record, kind: str, status: str) -> None:
        """Run the record's ``kind`` hooks; their failures are warnings (config.md)."""
        document = record.extra.get("hooks")
        if not isinstance(document, dict) or not document.get(kind):
            return
        from corral.core.hooks import run_hooks
        from corral.spec.hooks import parse_hooks
        from corral.spec.reader import Fields

        state: dict[str, Any] = {
            "ociVersion": record.oci_version,
            "id": record.id,
            "status": status,
            "bundle": record.bundle,
            "annotations": record.annotations,
        }
        if status == st.RUNNING:
            state["pid"] = record.pid
        hooks = parse_hooks(Fields(document, "hooks")).of(kind)
        # runc runs the runtime's hooks from the bundle directory.
        run_hooks(hooks, state, kind=kind, warn=self.warn, cwd=record.bundle)


_LIVE = (st.CREATED, st.RUNNING, st.PAUSED)


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``change`` laid over ``base``: objects merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in change.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merged[key] = _merge(old, value)
        else:
            merged[key] = value
    return merged


def merge_resources(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``change`` (an update) laid over a container's ``linux.resources``.

    One rule beyond the merge, runc's: a memory limit made unlimited (-1) with no word
    on swap makes swap unlimited too, rather than keep a memory+swap limit that now
    has no memory limit under it (v1 refuses it, v2 cannot convert it).
    """
    merged = _merge(base, change)
    memory, changed = merged.get("memory"), change.get("memory")
    if (
        isinstance(memory, dict)
        and isinstance(changed, dict)
        and changed.get("limit") == -1
        and changed.get("swap") is None
    ):
        memory.pop("swap", None)
    return merged


def resources_to_apply(merged: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """What an update writes: the merged resources, but while ``cpu.idle`` is 1 without
    the shares the update does not give itself.

    The kernel refuses a weight for an idle group (EINVAL, kernel/sched/fair.c
    sched_group_set_shares) and sets it back to the default when idle goes to 0, so
    the shares stay in the record and are written again (after ``cpu.idle``, the
    planners' order with the EINVAL retry) by the update that clears idle.
    """
    cpu, changed = merged.get("cpu"), change.get("cpu")
    if not (isinstance(cpu, dict) and cpu.get("idle") == 1 and "shares" in cpu):
        return merged
    if isinstance(changed, dict) and changed.get("shares") is not None:
        return merged
    applied = dict(merged)
    applied["cpu"] = {key: value for key, value in cpu.items() if key != "shares"}
    return applied


def _warn_on_stderr(message: str) -> None:
    from corral.core.fastos import tell

    tell(f"corral: warning: {message}\n")


def load_bundle_config(bundle: str) -> Spec:
    """Read and validate ``<bundle>/config.json``."""
    from corral.core import jsonio
    from corral.spec.model import parse_config

    path = f"{bundle}/config.json"
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        if not fastos.is_dir(bundle):
            raise BundleError(f"bundle {bundle}: no such directory") from None
        raise BundleError(f"bundle {bundle}: config.json: no such file") from None
    except OSError as error:
        raise BundleError(f"{path}: {error.strerror}") from None
    try:
        document = jsonio.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise ConfigError("", f"not valid JSON: {error}") from None
    _merge_extension(bundle, document)
    return parse_config(document)


def _merge_extension(bundle: str, document: object) -> None:
    """Fold runj's ``runj.ext.json`` into the config, when the bundle has one."""
    from corral.core import jsonio

    try:
        with open(f"{bundle}/runj.ext.json", "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return
    from corral.spec.runjext import EXTENSION_FILE, merge_runj_extension

    try:
        extension = jsonio.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise ConfigError("", f"not valid JSON: {error}", source=EXTENSION_FILE) from None
    if isinstance(document, dict):
        merge_runj_extension(document, extension)


def resolve_rootfs(spec: Spec, bundle: str) -> str:
    """``root.path``, relative to the bundle unless absolute; it must be a directory."""
    if spec.root is None:
        raise ConfigError("root", "required field is missing")
    import os

    path = spec.root.path
    rootfs = os.path.normpath(path if path.startswith("/") else f"{bundle}/{path}")
    if not fastos.is_dir(rootfs):
        reason = "is not a directory" if fastos.exists(rootfs) else "does not exist"
        raise ConfigError("root.path", f"root filesystem {rootfs} {reason}")
    return os.path.realpath(rootfs)


def write_pid_file(path: str, pid: int) -> None:
    """Write the pid atomically, as clients read it as soon as create returns."""
    import os

    path = fastos.absolute(path)
    temporary = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{fastos.getpid()}"
    with open(temporary, "w") as file:
        file.write(str(pid))
    fastos.rename(temporary, path)


def _kill_and_wait(pid: int, start_time: int) -> None:
    if is_alive(pid, start_time):
        try:
            fastos.kill(pid, SIGKILL)
        except ProcessLookupError:
            return
    try:
        fastos.waitpid(pid, 0)  # our child when create fails: reap it
    except ChildProcessError:
        wait_for_exit(pid, start_time, timeout=10.0)


def _reap_if_child(pid: int) -> None:
    """A program using the Python API is the init's parent: collect the zombie."""
    try:
        fastos.waitpid(pid, WNOHANG)
    except ChildProcessError:
        pass


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _now_rfc3339() -> str:
    import time

    now = time.time_ns()
    seconds, nanos = divmod(now, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


__all__ = ["DEFAULT_ROOT", "Runtime", "read_start_time"]
