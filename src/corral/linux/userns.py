"""User namespaces: the uid/gid mappings, and the fork chain that puts the init in one.

**Mappings.** ``linux.uidMappings``/``gidMappings`` are lists of ``{containerID, hostID,
size}``. :func:`check_user_namespace` validates them before anything is created, with
the kernel's own rules (user_namespaces(7), "User and group ID mappings") so that a bad
map is a ``ConfigError`` naming the field rather than an ``EINVAL`` from a write to
``/proc/<pid>/uid_map``: each range non-empty, not reaching id 4294967295 (``(uid_t)
-1``, which the kernel never maps), no two ranges overlapping on either side, at most
340 lines (Linux 4.15; 5 before), all written in one ``write(2)`` shorter than a page.
As runc does, a new user namespace needs both maps and must map container root (the
chain below becomes uid 0 in it), and the process's uid, gid and additional gids must
be mapped; mappings without a ``user`` namespace are an error; with a namespace given
by ``path`` they are allowed only if they are the mappings that namespace already has
(containerd and CRI-O send both), which :func:`check_joined_mappings` verifies at
create time since it has to look at the namespace.

**Writing the maps.** :func:`write_id_maps` is the parent's side: ``gid_map`` then
``uid_map`` of the child, each in one write. ``/proc/<pid>/setgroups`` is left at
"allow": user_namespaces(7) requires "deny" only when an *unprivileged* process writes
``gid_map`` (since Linux 3.19, CVE-2014-8989: dropping a group could open files whose
group permissions deny it). Here root picked the mapping, and "deny" would make
``process.user.additionalGids`` impossible, since setgroups(2) would always fail in
the container. runc leaves it at "allow" too. ``deny_setgroups=True`` is there for an
unprivileged corral.

**The fork chain** (:func:`spawn_in_user_namespace`). A pid namespace belongs to the
user namespace its creator was in, and the container's must belong to the container's
user namespace (mounting its procfs needs CAP_SYS_ADMIN there). The parent cannot
enter a new user namespace and come back (setns(2) never goes to an ancestor), and a
process never changes its own pid namespace, hence two forks:

1. the parent makes itself a child subreaper and forks the *first child*;
2. the first child: parent-death signal, non-dumpable (it is the host's Python, in
   namespaces a container may share; CVE-2019-5736), ``privileged_setup`` if given
   (still privileged on the host: rlimits above the hard limit, a negative oom score),
   then ``setns`` for the namespaces given by path except ``user``; EPERM ones wait
   (runc's order: outside namespaces while privileged, the user one, then the rest);
3. it joins the user namespace by path, or unshares a new one and asks the parent
   for its maps ("map"); the parent writes them and answers one byte;
4. it becomes root in it (``setgroups([])``, ``setresgid(0)``, ``setresuid(0)``): the
   host's supplementary groups are dropped, and files it creates get container root;
5. the deferred ``setns``; then ``unshare(CLONE_NEWPID)`` for a new pid namespace,
   now owned by the user namespace;
6. it forks the *init*, which is pid 1 of the new pid namespace, sends its host pid
   ("pid N"), and exits;
7. the parent reaps the first child. Being a subreaper, it is now the init's parent
   (runc's clone(CLONE_PARENT) gets the same); it stops being a subreaper and sends
   the init one byte, after which the init runs ``child`` (``run_init``). The init
   waits for that byte because a parent-death signal set earlier would have fired
   when the first child exited.

Every function here that forks (the chain, :func:`open_user_namespace`,
:func:`namespace_mappings`) must run before the parent enters a pid namespace for its
children: the helper would be that namespace's pid 1, and after it exits nothing can
be forked there (ENOMEM). They raise RuntimeError instead.

Any failure in the first child reaches the parent as "error <line>" and becomes a
:class:`~corral.errors.CreateError`; nothing is left running. The other new
namespaces (mount, network, ipc, uts, cgroup) are left to the init, which is inside
the user namespace by then, so they belong to it; :func:`namespaces_for_init` lists
them.
"""

from __future__ import annotations

import errno
import os

from corral.errors import ConfigError, CreateError
from corral.linux import syscalls as sc_
from corral.spec.reader import UINT32_MAX, Fields, expect, join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Namespace, Spec

# Linux 4.15 raised the number of lines of uid_map/gid_map from 5 to 340
# (UID_GID_MAP_MAX_EXTENTS); user_namespaces(7).
MAX_MAP_LINES = 340
# The kernel takes one write, at offset 0, shorter than a page (map_write()).
MIN_PAGE_SIZE = 4096
SIGKILL = 9


class IDMapping:
    """One line of a uid or gid map: ``size`` ids from ``container_id`` <-> ``host_id``."""

    __slots__ = ("container_id", "host_id", "size")

    def __init__(self, container_id: int, host_id: int, size: int) -> None:
        self.container_id = container_id
        self.host_id = host_id
        self.size = size

    def maps_container_id(self, value: int) -> bool:
        return self.container_id <= value < self.container_id + self.size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IDMapping):
            return NotImplemented
        return self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def key(self) -> tuple[int, int, int]:
        return (self.container_id, self.host_id, self.size)

    def __repr__(self) -> str:
        return f"IDMapping({self.container_id}, {self.host_id}, {self.size})"


# -- validation (pure) -------------------------------------------------------------------


def parse_mappings(value: object, path: str) -> list[IDMapping]:
    """Read a ``uidMappings``/``gidMappings`` array found at JSON path ``path``.

    Checks the types and each entry's range; :func:`check_map` checks the whole list.
    """
    if value is None:
        return []
    items = expect(value, list, path)
    mappings = []
    for index, item in enumerate(items):
        fields = Fields(item, join(path, index))
        container_id = fields.integer("containerID", required=True, minimum=0, maximum=UINT32_MAX)
        host_id = fields.integer("hostID", required=True, minimum=0, maximum=UINT32_MAX)
        size = fields.integer("size", required=True, minimum=0, maximum=UINT32_MAX)
        assert container_id is not None and host_id is not None and size is not None
        if size == 0:
            raise ConfigError(fields.at("size"), "must be at least 1")
        for key, start in (("containerID", container_id), ("hostID", host_id)):
            # The kernel refuses a range that wraps or holds 4294967295, (uid_t) -1.
            if start + size > UINT32_MAX:
                raise ConfigError(
                    fields.at(key),
                    f"ids {start}-{start + size - 1} reach {UINT32_MAX}, "
                    "which the kernel never maps",
                )
        mappings.append(IDMapping(container_id, host_id, size))
    return mappings


def check_map(mappings: list[IDMapping], path: str) -> None:
    """The kernel's rules for one whole map: no overlap, line count, one write."""
    if len(mappings) > MAX_MAP_LINES:
        raise ConfigError(
            path, f"{len(mappings)} entries; the kernel takes at most {MAX_MAP_LINES}"
        )
    for index, mapping in enumerate(mappings):
        for earlier in range(index):
            other = mappings[earlier]
            for side, start, other_start in (
                ("container", mapping.container_id, other.container_id),
                ("host", mapping.host_id, other.host_id),
            ):
                if start < other_start + other.size and other_start < start + mapping.size:
                    raise ConfigError(
                        join(path, index),
                        f"{side} ids {start}-{start + mapping.size - 1} overlap "
                        f"{join(path, earlier)}",
                    )
    text = map_lines(mappings)
    page = _page_size()
    if len(text) >= page:
        raise ConfigError(
            path,
            f"the map is {len(text)} bytes as text; the kernel takes less than {page} "
            "(fewer or shorter entries)",
        )


def _page_size() -> int:
    try:
        return max(os.sysconf("SC_PAGE_SIZE"), MIN_PAGE_SIZE)
    except (ValueError, OSError):
        return MIN_PAGE_SIZE


def user_mappings(spec: Spec) -> tuple[list[IDMapping], list[IDMapping]]:
    """``linux.uidMappings`` and ``linux.gidMappings``, parsed (empty when absent)."""
    linux = spec.raw.get("linux")
    if not isinstance(linux, dict):
        return [], []
    return (
        parse_mappings(linux.get("uidMappings"), "linux.uidMappings"),
        parse_mappings(linux.get("gidMappings"), "linux.gidMappings"),
    )


def check_user_namespace(spec: Spec) -> None:
    """Validate the user namespace section of ``spec``; raise ConfigError naming the field."""
    uid_maps, gid_maps = user_mappings(spec)
    check_map(uid_maps, "linux.uidMappings")
    check_map(gid_maps, "linux.gidMappings")
    user_ns = spec.linux.namespace("user") if spec.linux is not None else None
    if user_ns is None:
        for path, maps in (("linux.uidMappings", uid_maps), ("linux.gidMappings", gid_maps)):
            if maps:
                raise ConfigError(path, 'needs a user namespace (linux.namespaces has no "user")')
        return
    if user_ns.path:
        # Allowed only if they are the namespace's own: check_joined_mappings, at create.
        return
    for path, maps in (("linux.uidMappings", uid_maps), ("linux.gidMappings", gid_maps)):
        if not maps:
            raise ConfigError(path, "required to create a user namespace (or give its path)")
    # The fork chain becomes uid and gid 0 in the new namespace (as runc does).
    for path, maps, what in (
        ("linux.uidMappings", uid_maps, "uid"),
        ("linux.gidMappings", gid_maps, "gid"),
    ):
        if not _maps(maps, 0):
            raise ConfigError(path, f"container {what} 0 (root) is not mapped")
    process = spec.process
    if process is None:
        return
    user = process.user
    if not _maps(uid_maps, user.uid):
        raise ConfigError("process.user.uid", f"{user.uid} is not mapped by linux.uidMappings")
    if not _maps(gid_maps, user.gid):
        raise ConfigError("process.user.gid", f"{user.gid} is not mapped by linux.gidMappings")
    for index, gid in enumerate(user.additional_gids):
        if not _maps(gid_maps, gid):
            raise ConfigError(
                f"process.user.additionalGids[{index}]", f"{gid} is not mapped by linux.gidMappings"
            )


def _maps(mappings: list[IDMapping], container_id: int) -> bool:
    return any(mapping.maps_container_id(container_id) for mapping in mappings)


def map_lines(mappings: list[IDMapping]) -> str:
    """The text for ``/proc/<pid>/uid_map`` (or ``gid_map``): one line per mapping."""
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)


def parse_map_file(text: str) -> list[IDMapping]:
    """The mappings in the text of a ``/proc/<pid>/uid_map`` as the kernel prints it."""
    mappings = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3:
            mappings.append(IDMapping(int(fields[0]), int(fields[1]), int(fields[2])))
    return mappings


def namespaces_for_init(namespaces: list[Namespace]) -> list[Namespace]:
    """What the init still creates after :func:`spawn_in_user_namespace`: the new
    namespaces other than ``user`` and ``pid`` (every ``path`` one is joined already)."""
    return [ns for ns in namespaces if not ns.path and ns.type not in ("user", "pid")]


# -- the parent writes the maps -------------------------------------------------------------


def write_id_maps(
    pid: int,
    uid_mappings: list[IDMapping],
    gid_mappings: list[IDMapping],
    *,
    deny_setgroups: bool = False,
) -> None:
    """Write the maps of process ``pid``'s (new, still unmapped) user namespace.

    Raises OSError naming the file and, for the usual errors, the likely cause.
    """
    if deny_setgroups:
        _write_proc(f"/proc/{pid}/setgroups", "deny\n")
    _write_proc(f"/proc/{pid}/gid_map", map_lines(gid_mappings))
    _write_proc(f"/proc/{pid}/uid_map", map_lines(uid_mappings))


def _write_proc(path: str, text: str) -> None:
    data = text.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.EIO, "short write")
        finally:
            os.close(fd)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        hint = ""
        if error.errno == errno.EPERM and path.endswith("_map"):
            hint = (
                " (written once only; the host ids must be mapped in corral's own user "
                "namespace, where corral needs CAP_SETUID/CAP_SETGID)"
            )
        elif error.errno == errno.EINVAL and path.endswith("_map"):
            hint = " (overlapping ranges, or more entries than this kernel takes)"
        raise OSError(error.errno, f"writing {path}: {reason}{hint}") from None


# -- short-lived helper processes -----------------------------------------------------------


class _Pipe:
    """One direction of a line protocol: ``send`` lines, ``receive`` them one by one."""

    __slots__ = ("buffer", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def send(self, line: str) -> None:
        data = (line.replace("\n", " ") + "\n").encode()
        while data:
            data = data[os.write(self.fd, data) :]

    def receive(self) -> str:
        """The next line, or "" once the other side closed without one."""
        while b"\n" not in self.buffer:
            chunk = os.read(self.fd, 4096)
            if not chunk:
                return ""
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode(errors="replace")


def _reap(pid: int) -> int:
    """Wait for child ``pid``; its wait status (0 if it was already gone)."""
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _error_text(error: BaseException) -> str:
    from corral.core.handshake import error_message

    return error_message(error)


def _forks_in_own_pid_namespace() -> None:
    """Refuse to fork helpers after ``unshare(CLONE_NEWPID)``: the first child would be
    that namespace's pid 1, and once it exits nothing can be forked there (ENOMEM)."""
    try:
        own = os.readlink("/proc/self/ns/pid")
    except OSError:
        return  # no /proc: nothing to compare
    try:
        mismatch = os.readlink("/proc/self/ns/pid_for_children") != own
    except FileNotFoundError:
        # ENOENT: a new pid namespace with no process in it yet (namespaces(7)),
        # unless the kernel predates the link (Linux 4.12).
        mismatch = "pid_for_children" in os.listdir("/proc/self/ns")
    if mismatch:
        raise RuntimeError(
            "corral.linux.userns forks helpers: call it before entering a pid namespace "
            "for children (unshare or setns of CLONE_NEWPID)"
        )


def _hold_namespace(sc: Syscalls, enter: Callable[[], None]) -> tuple[int, _Pipe]:
    """Fork a helper that runs ``enter`` (unshare or setns a user namespace) and then
    waits; return its pid and the pipe that keeps it waiting (close it to let it go).

    Raises CreateError with the helper's message if ``enter`` failed.
    """
    _forks_in_own_pid_namespace()
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(report_r)
            os.close(hold_w)
            sc.prctl(sc_.PR_SET_PDEATHSIG, SIGKILL)
            enter()
            _Pipe(report_w).send("ok")
            os.read(hold_r, 1)  # until the parent closes its end (or dies)
            os._exit(0)
        except BaseException as error:
            try:
                _Pipe(report_w).send("error " + _error_text(error))
            finally:
                os._exit(1)
    os.close(report_w)
    os.close(hold_r)
    try:
        answer = _Pipe(report_r).receive()
    finally:
        os.close(report_r)
    if answer != "ok":
        os.close(hold_w)
        _kill_and_reap(pid)
        raise CreateError(answer[len("error ") :] if answer else "helper process died")
    return pid, _Pipe(hold_w)


def open_user_namespace(
    sc: Syscalls, uid_mappings: list[IDMapping], gid_mappings: list[IDMapping]
) -> int:
    """A new user namespace with these maps, as an fd (``O_CLOEXEC``); no process in it.

    A helper unshares it, the maps are written, ``/proc/<pid>/ns/user`` is opened and
    the helper is killed: the fd alone keeps the namespace. Used for idmapped mounts
    (mount_setattr(2) takes the idmapping as a user namespace fd).
    """
    pid, hold = _hold_namespace(sc, lambda: sc.unshare(sc_.CLONE_NEWUSER))
    try:
        write_id_maps(pid, uid_mappings, gid_mappings)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(hold.fd)
        _kill_and_reap(pid)


def namespace_mappings(
    sc: Syscalls, user_fd: int, path: str
) -> tuple[list[IDMapping], list[IDMapping]]:
    """The uid and gid maps of the user namespace ``user_fd`` (opened from ``path``),
    seen from corral's own.

    A helper joins it; the parent reads the helper's ``/proc/<pid>/uid_map``, whose
    host column the kernel gives relative to the reader's user namespace, which is what
    the config's ``hostID`` means.
    """
    pid, hold = _hold_namespace(sc, lambda: sc.setns(user_fd, sc_.CLONE_NEWUSER, path))
    try:
        maps = []
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", encoding="ascii") as file:
                maps.append(parse_map_file(file.read()))
        return maps[0], maps[1]
    finally:
        os.close(hold.fd)
        _kill_and_reap(pid)


def check_joined_mappings(sc: Syscalls, spec: Spec, user_fd: int) -> None:
    """Mappings given with a user namespace ``path`` must be that namespace's own.

    ``user_fd`` is the namespace, opened by the backend. runc (1.2 and later) accepts
    the pair only then, because containerd and CRI-O send both; different ones could
    not apply. The order of the lines does not matter to the kernel.
    """
    uid_mappings, gid_mappings = user_mappings(spec)
    assert spec.linux is not None
    path = next(ns.path for ns in spec.linux.namespaces if ns.type == "user")
    if not uid_mappings and not gid_mappings:
        return
    actual_uid, actual_gid = namespace_mappings(sc, user_fd, path)
    for field, given, actual in (
        ("linux.uidMappings", uid_mappings, actual_uid),
        ("linux.gidMappings", gid_mappings, actual_gid),
    ):
        if given and sorted(m.key() for m in given) != sorted(m.key() for m in actual):
            shown = ", ".join(f"{m.container_id} {m.host_id} {m.size}" for m in actual)
            raise ConfigError(
                field,
                f"differs from the maps of the user namespace {path} ({shown or 'none'}); "
                "give the path or the mappings, not both",
            )


# -- the fork chain ------------------------------------------------------------------------


class UserNamespacePlan:
    """What the first child of :func:`spawn_in_user_namespace` enters, in order."""

    __slots__ = ("children_flags", "joins", "user_fd", "user_path")

    def __init__(
        self,
        joins: list[tuple[str, int, str]],
        user_fd: int | None,
        user_path: str,
        children_flags: int,
    ) -> None:
        self.joins = joins  # (type, fd, path) of the non-user namespaces given by path
        self.user_fd = user_fd  # None: unshare a new user namespace
        self.user_path = user_path
        self.children_flags = children_flags  # unshared last: CLONE_NEWPID

    def __repr__(self) -> str:
        return (
            f"UserNamespacePlan(joins={self.joins!r}, user_fd={self.user_fd!r}, "
            f"children_flags={self.children_flags:#x})"
        )


def plan_user_namespace(namespaces: list[Namespace], ns_fds: dict[str, int]) -> UserNamespacePlan:
    """Which namespaces the chain joins (fds opened by the backend) and which it creates."""
    user = next((ns for ns in namespaces if ns.type == "user"), None)
    if user is None:
        raise ValueError("spawn_in_user_namespace needs a user namespace in the config")
    joins = [
        (ns.type, ns_fds[ns.type], ns.path) for ns in namespaces if ns.path and ns.type != "user"
    ]
    pid = next((ns for ns in namespaces if ns.type == "pid"), None)
    children_flags = sc_.CLONE_NEWPID if pid is not None and not pid.path else 0
    user_fd = ns_fds["user"] if user.path else None
    return UserNamespacePlan(joins, user_fd, user.path, children_flags)


def enter_user_namespace(
    sc: Syscalls, plan: UserNamespacePlan, request_maps: Callable[[], None]
) -> None:
    """Steps 2-5 of the chain, in the first child (separate so a fake can record them).

    ``request_maps`` asks the parent to write the maps and returns once it has.
    """
    deferred = []
    for kind, fd, path in plan.joins:
        try:
            sc.setns(fd, sc_.NAMESPACE_FLAGS[kind], path)
        except PermissionError:
            deferred.append((kind, fd, path))  # maybe allowed from inside the user ns
        except OSError as error:
            raise _join_error(kind, path, error) from None
    if plan.user_fd is not None:
        try:
            sc.setns(plan.user_fd, sc_.CLONE_NEWUSER, plan.user_path)
        except OSError as error:
            raise _join_error("user", plan.user_path, error) from None
    else:
        try:
            sc.unshare(sc_.CLONE_NEWUSER)
        except OSError as error:
            raise CreateError(f"creating the user namespace: {_unshare_reason(error)}") from None
        request_maps()
    _become_root(sc, plan.user_path)
    for kind, fd, path in deferred:
        try:
            sc.setns(fd, sc_.NAMESPACE_FLAGS[kind], path)
        except OSError as error:
            raise _join_error(kind, path, error) from None
    if plan.children_flags:
        try:
            sc.unshare(plan.children_flags)
        except OSError as error:
            raise CreateError(f"creating the pid namespace: {_reason(error)}") from None


def _become_root(sc: Syscalls, user_path: str) -> None:
    where = f"the user namespace {user_path}" if user_path else "the new user namespace"
    try:
        sc.setgroups([])
    except PermissionError:
        pass  # a joined namespace whose setgroups is "deny": no groups to drop anyway
    try:
        sc.setresgid(0, 0, 0)
        sc.setresuid(0, 0, 0)
    except OSError as error:
        reason = _reason(error)
        if error.errno == errno.EINVAL:
            reason = "container root (0) is not mapped"
        raise CreateError(f"becoming root in {where}: {reason}") from None


def _reason(error: OSError) -> str:
    return os.strerror(error.errno) if error.errno else str(error)


def _unshare_reason(error: OSError) -> str:
    reason = _reason(error)
    if error.errno == errno.ENOSPC:
        reason += " (user.max_user_namespaces reached)"
    elif error.errno == errno.EPERM:
        reason += " (corral is in a chroot, or user namespaces are disabled here)"
    return reason


def _join_error(kind: str, path: str, error: OSError) -> CreateError:
    return CreateError(f"joining the {kind} namespace {path}: {_reason(error)}")


def spawn_in_user_namespace(
    sc: Syscalls,
    namespaces: list[Namespace],
    ns_fds: dict[str, int],
    uid_mappings: list[IDMapping],
    gid_mappings: list[IDMapping],
    child: Callable[[], NoReturn],
    *,
    privileged_setup: Callable[[], None] | None = None,
    deny_setgroups: bool = False,
) -> int:
    """Start ``child`` in the container's user (and pid) namespace; return its host pid.

    ``namespaces`` is ``linux.namespaces`` (it must have a ``user`` entry); ``ns_fds``
    the fds the backend opened for the ``path`` ones (the caller still closes its
    copies); the mappings are written for a new user namespace. ``child`` runs in the
    init, our child, after every join and the new user and pid namespaces; it must not
    return. See the module docstring for the chain; raises CreateError with the first
    child's message if it failed, having left no process behind.
    """
    plan = plan_user_namespace(namespaces, ns_fds)
    _forks_in_own_pid_namespace()
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    first = init_pid = -1
    sc.prctl(sc_.PR_SET_CHILD_SUBREAPER, 1)
    try:
        first = os.fork()
        if first == 0:
            os.close(report_r)
            os.close(go_w)
            _first_child(sc, plan, report_w, go_r, child, privileged_setup)
        os.close(report_w)
        os.close(go_r)
        report_w = go_r = -1
        report = _Pipe(report_r)
        while True:
            line = report.receive()
            if line == "map":
                try:
                    write_id_maps(first, uid_mappings, gid_mappings, deny_setgroups=deny_setgroups)
                except OSError as error:
                    raise CreateError(f"user namespace: {error.strerror or error}") from None
                try:
                    os.write(go_w, b"A")
                except BrokenPipeError:
                    pass  # it died: its error line or EOF comes next
            elif line.startswith("pid "):
                init_pid = int(line[len("pid ") :])
                break
            elif line.startswith("error "):
                raise CreateError(line[len("error ") :])
            else:
                raise CreateError("the first child of the user namespace chain died")
        status = _reap(first)
        first = -1
        if status != 0:
            raise CreateError("the first child of the user namespace chain failed")
    except BaseException:
        os.close(go_w)  # an init waiting for its byte reads EOF and exits
        if first > 0:
            _kill_and_reap(first)
        if init_pid > 0:
            _kill_and_reap(init_pid)  # reparented to us: the first child is gone
        raise
    finally:
        sc.prctl(sc_.PR_SET_CHILD_SUBREAPER, 0)
        for fd in (report_r, report_w, go_r):
            if fd >= 0:
                os.close(fd)
    try:
        os.write(go_w, b"G")
    finally:
        os.close(go_w)
    return init_pid


def _first_child(
    sc: Syscalls,
    plan: UserNamespacePlan,
    report_w: int,
    go_r: int,
    child: Callable[[], NoReturn],
    privileged_setup: Callable[[], None] | None,
) -> NoReturn:
    report = _Pipe(report_w)
    try:
        sc.prctl(sc_.PR_SET_PDEATHSIG, SIGKILL)
        sc.prctl(sc_.PR_SET_DUMPABLE, 0)
        if privileged_setup is not None:
            privileged_setup()

        def request_maps() -> None:
            report.send("map")
            if os.read(go_r, 1) != b"A":
                os._exit(1)  # the parent failed or died: it reports, we go

        enter_user_namespace(sc, plan, request_maps)
        for _, fd, _ in plan.joins:
            os.close(fd)
        if plan.user_fd is not None:
            os.close(plan.user_fd)
        pid = os.fork()
        if pid == 0:
            _init_child(report_w, go_r, child)
        report.send(f"pid {pid}")
        os._exit(0)
    except BaseException as error:
        try:
            report.send("error " + _error_text(error))
        finally:
            os._exit(1)


def _init_child(report_w: int, go_r: int, child: Callable[[], NoReturn]) -> NoReturn:
    try:
        os.close(report_w)
        # Until this byte the first child may still be our parent: a parent-death
        # signal set now would fire when it exits.
        if os.read(go_r, 1) != b"G":
            os._exit(1)
        os.close(go_r)
        child()
    finally:
        os._exit(1)
