"""The FreeBSD backend: OCI containers as jails (the parent's side of ``create``).

``create`` does, in order, each step undone in reverse if a later one fails:

1. mounts into the root filesystem, on the host (:mod:`corral.freebsd.mounts`);
2. the jail, with ``jail_set(2)`` and ``persist`` so it outlives its processes until
   ``delete`` (parameters from :mod:`corral.freebsd.params`);
3. networking: ``vnetInterfaces`` moved in, ``interface`` aliases added
   (:mod:`corral.freebsd.vnet`);
4. resource limits as rctl(8) rules (:mod:`corral.freebsd.rctl`);
5. the ``prestart``, ``createRuntime`` and ``createContainer`` hooks;
6. the entrypoint, forked from this process (:mod:`corral.freebsd.entrypoint`),
   which attaches to the jail and waits on the exec fifo.

What ``delete`` must undo is kept in the state record's ``extra``: the jail id, the
mounted targets, the moved interfaces and aliases. ``delete`` removes the jail
(``jail_remove(2)`` kills every process in it), the rctl rules, the network changes
and the mounts, and goes on past a failing step, reporting it after.
"""

from __future__ import annotations

import os

from corral.backend import Backend, CreatedInit
from corral.core import handshake
from corral.core.procinfo import kill_and_reap
from corral.errors import CreateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from corral.backend import CreateRequest
    from corral.core.state import Record
    from corral.freebsd.mounts import MountStep
    from corral.freebsd.syscalls import FreeBSDSyscalls

JAIL_CREATE = 0x01
MNT_RDONLY = 0x01  # sys/mount.h


class FreeBSDBackend(Backend):
    platform = "freebsd"

    def __init__(
        self,
        sc: FreeBSDSyscalls | None = None,
        run: Callable[[list[str]], None] | None = None,
        jail_processes: Callable[[int], list[int]] | None = None,
    ) -> None:
        # Tests pass a recording fake for the system calls and the commands.
        self._sc = sc
        self._run = run
        self._jail_processes = jail_processes

    @property
    def sc(self) -> FreeBSDSyscalls:
        if self._sc is None:
            from corral.freebsd.syscalls import FreeBSDSyscalls

            self._sc = FreeBSDSyscalls()
        return self._sc

    def run(self, argv: list[str]) -> None:
        if self._run is not None:
            self._run(argv)
            return
        from corral.freebsd.vnet import run_command

        run_command(argv)

    # -- create ----------------------------------------------------------------------

    def check(self, request: CreateRequest) -> None:
        from corral.freebsd import mounts, params, process, rctl, vnet

        spec = request.spec
        params.check_freebsd(spec)
        jail = spec.freebsd.jail if spec.freebsd is not None else None
        params.jail_name(request.container_id, jail.parent if jail else None)  # a usable name?
        vnet.check_network(spec)
        process.check_process(spec)
        mounts.check_mounts(spec, request.bundle)
        rctl.check_rctl(spec)
        if spec.process is not None and spec.process.terminal:
            _check_terminal(request)

    def create(self, request: CreateRequest) -> CreatedInit:
        from corral.freebsd import mounts, params, rctl, vnet

        spec = request.spec
        jail = spec.freebsd.jail if spec.freebsd is not None else None
        # A jail with a parent is named "<parent>.<id>" (jail(8), "Hierarchical Jails").
        name = params.jail_name(request.container_id, jail.parent if jail else None)
        undo: list[tuple[str, Callable[[], object]]] = []
        extra: dict[str, Any] = {"jailName": name}
        try:
            steps = mounts.plan_mounts(spec, request.rootfs, request.bundle)
            root_mount = []
            if spec.root is not None and spec.root.readonly:
                root_mount = self._readonly_root(request.rootfs, steps)
                undo.append(("root", lambda: mounts.unmount_all(self.sc, root_mount)))
            mounted = mounts.apply_mounts(self.sc, steps, run=self.run)
            extra["mounts"] = root_mount + mounted
            undo.append(("mounts", lambda: mounts.unmount_all(self.sc, mounted)))

            jail_params = params.jail_params(spec, name, request.rootfs)
            jid = self.sc.jail_set(jail_params, JAIL_CREATE)
            extra["jid"] = jid
            undo.append(("jail", lambda: self.sc.jail_remove(jid)))

            if jail is not None:
                network = vnet.attach_network(self.run, name, jail)
                extra["network"] = network
                undo.append(("network", lambda: vnet.detach_network(self.run, name, network)))

            rules = rctl.rctl_rules(spec.annotations, name)
            if rules:
                rctl.apply_rctl(self.sc, rules)
                extra["rctl"] = True
                undo.append(("rctl", lambda: rctl.remove_rctl(self.sc, name)))

            self._create_hooks(request, jid)
            init = self._start_entrypoint(request, jid)
        except BaseException:
            _undo(undo)
            raise
        init.extra.update(extra)
        return init

    def _readonly_root(self, rootfs: str, steps: list[MountStep]) -> list[str]:
        """``root.readonly``: a read-only nullfs view of the rootfs over itself, the
        jail's root. The mount points are made first, while the rootfs is writable."""
        from corral.freebsd import mounts

        for step in steps:
            mounts.make_destination(step.rootfs, step.destination, is_file=step.is_file)
        try:
            self.sc.nmount("nullfs", rootfs, [("target", rootfs), ("ro", None)], MNT_RDONLY)
        except OSError as error:
            raise CreateError(f"root.readonly: {handshake.error_message(error)}") from None
        return [rootfs]

    def _state(self, request: CreateRequest, status: str, pid: int = 0) -> dict[str, Any]:
        from corral import OCI_VERSION

        state: dict[str, Any] = {
            "ociVersion": OCI_VERSION,
            "id": request.container_id,
            "status": status,
            "bundle": request.bundle,
            "annotations": request.spec.annotations,
        }
        if pid:
            state["pid"] = pid
        return state

    def _create_hooks(self, request: CreateRequest, jid: int) -> None:
        hooks = request.spec.hooks
        if not hooks:
            return
        from corral.core.hooks import run_hooks

        state = self._state(request, "creating")
        # prestart is deprecated, and runs where createRuntime does (config.md).
        bundle = request.bundle  # where runc runs the runtime's hooks from
        run_hooks(hooks.prestart, state, kind="prestart", cwd=bundle)
        run_hooks(hooks.create_runtime, state, kind="createRuntime", cwd=bundle)
        if hooks.create_container:
            self._in_jail(
                jid, lambda: run_hooks(hooks.create_container, state, kind="createContainer")
            )

    def _in_jail(self, jid: int, action: Callable[[], object]) -> None:
        """Run ``action`` in a child attached to the jail (the container's namespace)."""
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            try:
                self.sc.jail_attach(jid)
                action()
            except BaseException as error:  # the parent must hear of every failure
                handshake.report_error(write_fd, error)
                os._exit(1)
            os._exit(0)
        os.close(write_fd)
        try:
            answer = handshake.read_answer(read_fd)
        finally:
            os.close(read_fd)
        _, status = os.waitpid(pid, 0)
        if answer.get("error") or status != 0:
            raise CreateError(str(answer.get("error") or f"hook child exited with {status}"))

    def _start_entrypoint(self, request: CreateRequest, jid: int) -> CreatedInit:
        from corral.core.procinfo import read_start_time
        from corral.freebsd.entrypoint import EntrypointFds, run_entrypoint

        spec = request.spec
        console_fd = -1
        if spec.process is not None and spec.process.terminal and request.console_socket:
            from corral.core.console import connect_console

            console_fd = connect_console(request.console_socket)
        state_fd = os.open(request.state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        commit_read, commit_write = os.pipe2(os.O_CLOEXEC)
        start_hooks = spec.hooks.start_container if spec.hooks else []
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            os.close(commit_write)
            fds = EntrypointFds(
                sync=write_fd, commit=commit_read, state_dir=state_fd, console=console_fd
            )
            run_entrypoint(self.sc, request, jid, fds, start_hooks, self._state(request, "created"))
        for fd in (write_fd, commit_read, state_fd, console_fd):
            if fd >= 0:
                os.close(fd)
        try:
            answer = handshake.read_answer(read_fd)
        except BaseException:
            os.close(read_fd)
            os.close(commit_write)
            kill_and_reap(pid)
            raise
        start_time = read_start_time(pid) if answer.get("ready") is True else None
        if start_time is None:
            os.close(read_fd)
            os.close(commit_write)
            kill_and_reap(pid)
            raise CreateError(
                str(answer.get("error") or "container entrypoint exited during setup")
            )
        return CreatedInit(pid, start_time, {}, commit_fd=commit_write, ack_fd=read_fd)

    def commit(self, init: CreatedInit) -> None:
        handshake.commit(init.commit_fd, init.ack_fd)

    # -- kill, delete --------------------------------------------------------------

    def processes(self, record: Record) -> list[int]:
        jid = record.extra.get("jid")
        if not isinstance(jid, int):
            return [record.pid]
        if self._jail_processes is not None:
            others = self._jail_processes(jid)
        else:
            from corral.freebsd.procinfo import jail_processes

            others = jail_processes(jid)
        return [record.pid, *(pid for pid in others if pid != record.pid)]

    def destroy(self, record: Record) -> None:
        from corral.freebsd import mounts, rctl, vnet

        extra = record.extra
        name = str(extra.get("jailName", record.id))
        steps: list[tuple[str, Callable[[], object]]] = []
        if extra.get("rctl"):
            steps.append(("rctl", lambda: rctl.remove_rctl(self.sc, name)))
        if extra.get("network"):
            network = extra["network"]
            steps.append(("network", lambda: vnet.detach_network(self.run, name, network)))
        jid = extra.get("jid")
        if isinstance(jid, int):
            steps.append(("jail", lambda: _remove_jail(self.sc, jid)))
        if extra.get("mounts"):
            targets = list(extra["mounts"])
            steps.append(("mounts", lambda: mounts.unmount_all(self.sc, targets)))
        failures = _undo(list(reversed(steps)))
        if failures:
            raise CreateError("delete: " + "; ".join(failures))


def _check_terminal(request: CreateRequest) -> None:
    from corral.errors import ConfigError

    if not request.console_socket:
        raise ConfigError("process.terminal", "a terminal needs --console-socket")
    size = request.spec.raw.get("process", {}).get("consoleSize")
    if isinstance(size, dict):
        for key in ("height", "width"):
            value = size.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
                raise ConfigError(
                    f"process.consoleSize.{key}", f"{value!r} is not a size from 0 to 65535"
                )


def _remove_jail(sc: FreeBSDSyscalls, jid: int) -> None:
    import errno

    try:
        sc.jail_remove(jid)
    except OSError as error:
        if error.errno != errno.EINVAL:  # EINVAL: no such jail any more
            raise


def _undo(steps: list[tuple[str, Callable[[], object]]]) -> list[str]:
    """Run undo steps last-first, all of them, and return what failed."""
    failures: list[str] = []
    for what, step in reversed(steps):
        try:
            result = step()
        except Exception as error:  # every step must get its chance
            failures.append(f"{what}: {handshake.error_message(error)}")
            continue
        if isinstance(result, list) and result:  # unmount_all/detach return their errors
            failures.extend(f"{what}: {message}" for message in result)
    return failures
