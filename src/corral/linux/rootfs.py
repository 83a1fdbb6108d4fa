"""Building the container's root filesystem, in the init's new mount namespace.

Three steps, called by :mod:`corral.linux.init` around the ``createContainer`` hooks:

:func:`setup_rootfs`, still in the host's view of the filesystem:
  1. ``/`` becomes ``MS_SLAVE | MS_REC`` (or what ``linux.rootfsPropagation`` says),
     so nothing mounted here propagates back to the host;
  2. the rootfs is bind-mounted onto itself: pivot_root(2) needs a mount point;
  3. ``mounts`` in order. Each destination is resolved inside the rootfs with
     :mod:`corral.linux.paths` (missing directories, or an empty file for a file
     bind, are created there) and the mount is made onto ``/proc/self/fd/N`` of the
     ``O_PATH`` fd it resolved to, never onto a string path: a symlink swapped in
     after the check cannot redirect it (CVE-2021-30465). A bind ignores every flag
     but ``MS_REC`` on its first call, so ``ro``/``nosuid``/... need a second
     ``MS_REMOUNT | MS_BIND`` call; propagation changes and the recursive ``r*``
     attributes (mount_setattr(2)) follow, each on a fresh fd of the new mount: the
     first fd still names the directory underneath it;
  4. the default devices and ``/dev`` symlinks (:mod:`corral.linux.devices`).

:func:`enter_rootfs`: ``pivot_root(".", ".")`` and a lazy unmount of the old root
(pivot_root(2), NOTES), or ``MS_MOVE`` + chroot for ``--no-pivot``.

:func:`finish_rootfs`, inside the new root: ``readonlyPaths``, ``maskedPaths``,
``root.readonly`` and the final ``rootfsPropagation`` of ``/``.

``proc``, ``sysfs`` and ``cgroup`` filesystems go only onto real directories: with a
symlink at ``/proc`` an image could have procfs mounted over a path the host's
security profile does not guard (CVE-2019-19921). A ``cgroup`` mount gets the host's
layout: one ``cgroup2`` on a unified host; on a v1 or hybrid host a tmpfs with one
directory per hierarchy, each a fresh mount in a cgroup namespace (its root is the
container's cgroup) or else a bind of the process's own cgroup directory.
"""

from __future__ import annotations

import errno
import os
import stat

from corral.linux import mountinfo
from corral.linux.devices import create_devices
from corral.linux.mountopts import PROPAGATION_OPTIONS, bind_source, parse_options
from corral.linux.paths import (
    create_file_in_root,
    mkdir_all_in_root,
    open_in_root,
)
from corral.linux.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_MOVE,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_UNBINDABLE,
    RESOLVE_NO_SYMLINKS,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.linux.mountopts import MountOptions
    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Mount, Spec

AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
_PATH_FLAGS = os.O_PATH | os.O_CLOEXEC
_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
# Filesystems a symlinked destination must never redirect (CVE-2019-19921).
REAL_DIRECTORY_TYPES = frozenset(("proc", "sysfs", "cgroup", "cgroup2"))
# The per-mount flags a bind remount must repeat: in a user namespace the kernel locks
# them (EPERM when cleared), and statvfs(3) reports them with the same bit values.
_KEPT_FLAGS = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME
_MASK_FLAGS = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
_HOST_CGROUP = "/sys/fs/cgroup"


def fd_path(fd: int) -> str:
    """The magic link that makes a syscall taking a path act on ``fd``'s file."""
    return f"/proc/self/fd/{fd}"


# -- before pivot_root ---------------------------------------------------------------


def root_propagation(spec: Spec) -> int:
    """The propagation ``/`` gets before the mounts: rslave unless configured.

    ``unbindable`` becomes ``private`` until :func:`finish_rootfs`: an unbindable
    ``/`` would refuse the bind of the rootfs and of every volume under it.
    """
    name = spec.linux.rootfs_propagation if spec.linux else ""
    if not name:
        return MS_SLAVE | MS_REC
    change = PROPAGATION_OPTIONS[name]
    if change & MS_UNBINDABLE:
        change = (change & ~MS_UNBINDABLE) | MS_PRIVATE
    return change


def setup_rootfs(
    sc: Syscalls, spec: Spec, rootfs: str, bundle: str, trees: dict[int, int] | None = None
) -> None:
    """Mount the rootfs, ``spec.mounts`` and the default devices; see the module doc.

    ``trees`` maps a mount's index to a detached idmapped tree (corral.linux.idmap) to
    attach instead of a plain bind mount.
    """
    rootfs = os.path.join(bundle, rootfs)
    propagation = root_propagation(spec)
    _mount(sc, None, "/", None, propagation, None, "propagation of /")
    if propagation & MS_SHARED or not propagation & MS_REC:
        # pivot_root(2) fails with EINVAL while the rootfs's parent mount or "/" is
        # shared, and a non-recursive change left the host's submounts as they were.
        _make_parent_private(sc, rootfs, root_too=bool(propagation & MS_SHARED))
    _mount(sc, rootfs, rootfs, None, MS_BIND | MS_REC, None, f"bind {rootfs} on itself")
    root_fd = os.open(rootfs, _PATH_DIR)
    try:
        for index, mount in enumerate(spec.mounts):
            options = parse_options(mount.options, f"mounts[{index}].options", mount.type)
            try:
                mount_one(sc, root_fd, spec, mount, options, bundle, (trees or {}).get(index, -1))
            except OSError as error:
                message = f"mounts[{index}]: {error.strerror or error}"
                raise type(error)(error.errno, message) from None
        # linux.devices first: a configured node wins over a default one.
        from corral.linux.devices import create_config_devices, in_user_namespace

        create_config_devices(sc, root_fd, spec, in_userns=in_user_namespace(spec))
        create_devices(sc, root_fd, spec)
    finally:
        os.close(root_fd)


def mount_one(
    sc: Syscalls,
    root_fd: int,
    spec: Spec,
    mount: Mount,
    options: MountOptions,
    bundle: str,
    tree: int = -1,
) -> None:
    """Apply one entry of ``mounts``, its destination resolved inside ``root_fd``."""
    dest = mount.destination
    remount = bool(options.flags & MS_REMOUNT)
    source = bind_source(mount.source, bundle) if options.bind else mount.source or mount.type
    # 1. Where: an fd of the destination, created inside the root if missing.
    if remount:
        fd = open_in_root(sc, root_fd, dest, _PATH_FLAGS)
    elif options.bind and not os.path.isdir(source):
        fd = create_file_in_root(sc, root_fd, dest)
    elif mount.type in REAL_DIRECTORY_TYPES:
        try:
            fd = mkdir_all_in_root(sc, root_fd, dest, resolve=RESOLVE_NO_SYMLINKS)
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            raise OSError(
                errno.ELOOP,
                f"{dest} goes through a symbolic link in the rootfs; "
                f"{mount.type} must be mounted on a real directory",
            ) from None
    else:
        fd = mkdir_all_in_root(sc, root_fd, dest)
    # 2. The mount itself. After it, `fd` still names the directory underneath.
    top_fd = -1
    try:
        target = fd_path(fd)
        if remount:
            flags = options.flags | (MS_BIND if options.bind else 0)
            _mount(sc, None, target, None, flags, options.data or None, f"remount {dest}")
            top_fd, fd = fd, -1
        elif mount.type == "cgroup" and not options.bind:
            _mount_cgroup(sc, root_fd, spec, dest, target, options)
        elif tree >= 0:
            from corral.linux.idmap import attach_tree

            attach_tree(sc, tree, fd, dest)
            os.close(tree)
        elif options.bind:
            bind_flags = options.flags & (MS_BIND | MS_REC)
            _mount(sc, source, target, None, bind_flags, None, f"bind {source} on {dest}")
        else:
            what = f"{mount.type} on {dest}"
            data = options.data
            if (spec.raw.get("linux") or {}).get("mountLabel"):
                # linux.mountLabel: the SELinux context= option (checked against the host
                # by corral.linux.lsm before anything is created).
                from corral.linux.lsm import label_mount_data, mount_label

                data = label_mount_data(mount_label(spec), mount.type, data, bind=False)
            flags = options.flags
            if options.copy_up:
                # The copy needs a writable tmpfs; "ro" comes with a remount after it.
                flags &= ~MS_RDONLY
            try:
                _mount(sc, source, target, mount.type, flags, data or None, what)
                if options.copy_up:
                    _copy_up_into(sc, root_fd, fd, dest, options)
            except PermissionError:
                if mount.type != "sysfs":
                    raise
                # Without a network namespace of its own (and in a user namespace) the
                # kernel refuses a new sysfs; the host's, read through a bind, will do.
                _mount(sc, "/sys", target, None, MS_BIND | MS_REC, None, f"bind /sys on {dest}")
                sysfs_flags = options.flags | MS_NOSUID | MS_NODEV | MS_NOEXEC
                _remount_bind_at(sc, root_fd, dest, sysfs_flags, options.cleared)
        # 3. What acts on the new mount: a fresh fd reaches it, not the one underneath.
        needs_remount = options.bind and not remount and options.remount_flags
        if not (needs_remount or options.propagation or options.attr_set or options.attr_clr):
            return
        if top_fd < 0:
            top_fd = open_in_root(sc, root_fd, dest, _PATH_FLAGS)
        if needs_remount:
            _remount_bind(sc, top_fd, dest, options.remount_flags, options.cleared)
        for change in options.propagation:
            _mount(sc, None, fd_path(top_fd), None, change, None, f"propagation of {dest}")
        if options.attr_set or options.attr_clr:
            try:
                sc.mount_setattr(
                    top_fd, "", AT_EMPTY_PATH | AT_RECURSIVE, options.attr_set, options.attr_clr
                )
            except OSError as error:
                hint = " (recursive options need Linux 5.12)" if error.errno == errno.ENOSYS else ""
                raise OSError(
                    error.errno, f"mount_setattr {dest}: {_reason(error)}{hint}"
                ) from None
    finally:
        if fd >= 0:
            os.close(fd)
        if top_fd >= 0:
            os.close(top_fd)


def _copy_up_into(sc: Syscalls, root_fd: int, lower_fd: int, dest: str, opts: MountOptions) -> None:
    """``tmpcopyup``: fill the tmpfs just mounted on ``dest`` with what it hides.

    ``lower_fd`` was opened before the mount, so reopening it through its magic link
    reaches the directory underneath the tmpfs (proc(5), /proc/pid/fd): no need to
    bind the old directory aside first.
    """
    reopen = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC  # no O_NOFOLLOW: a magic link
    lower = os.open(fd_path(lower_fd), reopen)
    try:
        top_fd = open_in_root(sc, root_fd, dest, _PATH_DIR)
        try:
            upper = os.open(fd_path(top_fd), reopen)
        finally:
            os.close(top_fd)
    except BaseException:
        os.close(lower)
        raise
    try:
        keys = {option.partition("=")[0] for option in opts.data.split(",")}
        copy_up(lower, upper, keep_mode="mode" not in keys, keep_owner=not keys & {"uid", "gid"})
    except OSError as error:
        raise type(error)(error.errno, f"tmpcopyup {dest}: {error.strerror or error}") from None
    finally:
        os.close(lower)
        os.close(upper)
    if opts.flags & MS_RDONLY:
        top_fd = open_in_root(sc, root_fd, dest, _PATH_FLAGS)
        try:
            flags = MS_REMOUNT | (opts.flags & ~(MS_BIND | MS_REC))
            _mount(sc, None, fd_path(top_fd), None, flags, None, f"remount {dest} read-only")
        finally:
            os.close(top_fd)


def copy_up(src_fd: int, dst_fd: int, *, keep_mode: bool = True, keep_owner: bool = True) -> None:
    """Copy the tree of directory ``src_fd`` into directory ``dst_fd``.

    Regular files, directories, symlinks, devices, fifos and sockets keep their mode,
    owner and timestamps; every name is opened relative to its parent's fd with
    ``O_NOFOLLOW``, so a symlink in the image is copied, never followed. The top
    directory gets ``src_fd``'s mode/owner (unless the tmpfs options set them) and times.
    """
    top = os.fstat(src_fd)
    _copy_entries(src_fd, dst_fd)
    if keep_owner:
        os.fchown(dst_fd, top.st_uid, top.st_gid)
    if keep_mode:  # after chown(2), which drops the set-user/group-ID bits
        os.fchmod(dst_fd, stat.S_IMODE(top.st_mode))
    os.utime(dst_fd, ns=(top.st_atime_ns, top.st_mtime_ns))


_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _copy_entries(src_fd: int, dst_fd: int) -> None:
    for name in os.listdir(src_fd):
        info = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
        mode = info.st_mode
        times = (info.st_atime_ns, info.st_mtime_ns)
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dst_fd)
            child_src = os.open(name, _DIR_READ, dir_fd=src_fd)
            try:
                child_dst = os.open(name, _DIR_READ, dir_fd=dst_fd)
                try:
                    _copy_entries(child_src, child_dst)
                    _set_attributes(child_dst, info)
                    os.utime(child_dst, ns=times)  # last: filling it changed its mtime
                finally:
                    os.close(child_dst)
            finally:
                os.close(child_src)
        elif stat.S_ISREG(mode):
            source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                target = os.open(name, flags, 0o600, dir_fd=dst_fd)
                try:
                    _copy_data(source, target, info.st_size)
                    _set_attributes(target, info)
                    os.utime(target, ns=times)
                finally:
                    os.close(target)
            finally:
                os.close(source)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=src_fd), name, dir_fd=dst_fd)
            os.chown(name, info.st_uid, info.st_gid, dir_fd=dst_fd, follow_symlinks=False)
            os.utime(name, ns=times, dir_fd=dst_fd, follow_symlinks=False)
        else:  # devices, fifos, sockets: mknod(2) makes each of them
            os.mknod(name, mode, info.st_rdev, dir_fd=dst_fd)
            os.chown(name, info.st_uid, info.st_gid, dir_fd=dst_fd, follow_symlinks=False)
            os.chmod(name, stat.S_IMODE(mode), dir_fd=dst_fd)
            os.utime(name, ns=times, dir_fd=dst_fd, follow_symlinks=False)


def _set_attributes(fd: int, info: os.stat_result) -> None:
    os.fchown(fd, info.st_uid, info.st_gid)
    os.fchmod(fd, stat.S_IMODE(info.st_mode))  # after chown(2), which drops setuid bits


def _copy_data(source: int, target: int, size: int) -> None:
    """copy_file_range(2) in the kernel; a plain read/write loop where it is refused."""
    copied = 0
    try:
        while copied < size:
            count = os.copy_file_range(source, target, size - copied)
            if count == 0:
                break
            copied += count
        return
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    os.lseek(source, copied, os.SEEK_SET)
    os.lseek(target, copied, os.SEEK_SET)
    while chunk := os.read(source, 1 << 20):
        os.write(target, chunk)


def _mount(
    sc: Syscalls,
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None,
    what: str,
) -> None:
    """mount(2), with an error that names the container path, not ``/proc/self/fd/N``."""
    try:
        sc.mount(source, target, fstype, flags, data)
    except OSError as error:
        raise type(error)(error.errno, f"mount {what}: {_reason(error)}") from None


def _reason(error: OSError) -> str:
    return os.strerror(error.errno) if error.errno else str(error)


def mount_flags_of(fd: int | str) -> int:
    """The per-mount ``MS_*`` flags of the mount ``fd`` is on (statvfs(3) ``f_flag``)."""
    reported = os.statvfs(fd).f_flag
    flags = reported & _KEPT_FLAGS  # ST_RDONLY..ST_NODIRATIME have the MS_* values
    if reported & os.ST_RELATIME:
        flags |= MS_RELATIME
    return flags


def _remount_bind(sc: Syscalls, top_fd: int, dest: str, flags: int, cleared: int) -> None:
    """Give the bind mount ``top_fd`` is the root of its flags: ``MS_REMOUNT | MS_BIND``.

    In a user namespace the kernel refuses (EPERM) to drop flags the source mount had
    (``nosuid``, ``nodev``, ``noexec``, atime: mount_namespaces(7), "locked"); then
    retry keeping those the config did not clear itself.
    """
    target = fd_path(top_fd)
    try:
        sc.mount(None, target, None, MS_REMOUNT | MS_BIND | flags, None)
        return
    except PermissionError:
        locked = mount_flags_of(top_fd) & ~cleared & ~MS_RDONLY
    if flags & (MS_NOATIME | MS_RELATIME | MS_STRICTATIME):
        locked &= ~(MS_NOATIME | MS_RELATIME)
    _mount(sc, None, target, None, MS_REMOUNT | MS_BIND | flags | locked, None, f"remount {dest}")


def _remount_bind_at(sc: Syscalls, root_fd: int, dest: str, flags: int, cleared: int) -> None:
    top_fd = open_in_root(sc, root_fd, dest, _PATH_FLAGS)
    try:
        _remount_bind(sc, top_fd, dest, flags, cleared)
    finally:
        os.close(top_fd)


def _make_parent_private(sc: Syscalls, rootfs: str, *, root_too: bool) -> None:
    """Make the mount holding ``rootfs`` (and ``/`` if asked) private, for pivot_root."""
    real = os.path.realpath(rootfs)
    parent = "/"
    for mount_point, _root, _fstype, _options in mountinfo.read():
        if (real == mount_point or real.startswith(mount_point.rstrip("/") + "/")) and len(
            mount_point
        ) > len(parent):
            parent = mount_point
    _mount(sc, None, parent, None, MS_PRIVATE, None, f"propagation of {parent}")
    if root_too and parent != "/":
        _mount(sc, None, "/", None, MS_PRIVATE, None, "propagation of /")


# -- cgroup mounts ---------------------------------------------------------------------


def _mount_cgroup(
    sc: Syscalls, root_fd: int, spec: Spec, dest: str, target: str, options: MountOptions
) -> None:
    """A ``cgroup`` mount as the host has it (see the module doc)."""
    flags = options.flags
    in_cgroupns = bool(spec.linux and spec.linux.namespace("cgroup"))
    if os.path.exists(_HOST_CGROUP + "/cgroup.controllers"):  # unified (v2-only) host
        what = f"cgroup2 on {dest}"
        try:
            _mount(sc, "cgroup2", target, "cgroup2", flags, None, what)
        except PermissionError:
            _mount(sc, _HOST_CGROUP, target, None, MS_BIND | MS_REC, None, what)
            _remount_bind_at(sc, root_fd, dest, flags, options.cleared)
        return
    base_flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    _mount(sc, "tmpfs", target, "tmpfs", base_flags, "mode=755", f"tmpfs on {dest}")
    own = _own_cgroups() if not in_cgroupns else {}
    tmpfs_fd = open_in_root(sc, root_fd, dest, _PATH_DIR)
    done: set[str] = set()
    try:
        for mount_point, mount_root, fstype, super_options in mountinfo.read():
            parent, _, name = mount_point.rpartition("/")
            if parent != _HOST_CGROUP or fstype not in ("cgroup", "cgroup2") or name in done:
                continue  # a hierarchy mounted there twice is listed twice
            done.add(name)
            os.mkdir(name, 0o755, dir_fd=tmpfs_fd)
            sub_fd = os.open(name, _PATH_DIR | os.O_NOFOLLOW, dir_fd=tmpfs_fd)
            try:
                sub = fd_path(sub_fd)
                sub_dest = f"{dest}/{name}"
                data = ",".join(o for o in super_options.split(",") if o not in ("rw", "ro"))
                fresh = in_cgroupns
                if fresh:
                    try:
                        _mount(
                            sc, fstype, sub, fstype, flags, data or None, f"{fstype} on {sub_dest}"
                        )
                    except PermissionError:
                        fresh = False
                if not fresh:
                    key = "" if fstype == "cgroup2" else _controllers(super_options)
                    source = _cgroup_dir(mount_point, mount_root, own.get(key, ""))
                    _mount(
                        sc,
                        source,
                        sub,
                        None,
                        MS_BIND | MS_REC,
                        None,
                        f"bind {source} on {sub_dest}",
                    )
                    _remount_bind_at(sc, root_fd, sub_dest, flags, options.cleared)
            finally:
                os.close(sub_fd)
            if "," in name:  # co-mounted controllers ("cpu,cpuacct"): a link per name
                for alias in name.split(","):
                    try:
                        os.symlink(name, alias, dir_fd=tmpfs_fd)
                    except FileExistsError:
                        pass
        if flags & MS_RDONLY:
            remount = MS_REMOUNT | MS_BIND | MS_RDONLY | base_flags
            _mount(sc, None, fd_path(tmpfs_fd), None, remount, None, f"remount {dest} read-only")
    finally:
        os.close(tmpfs_fd)


def _controllers(super_options: str) -> str:
    """The key /proc/self/cgroup uses for a v1 hierarchy: its controllers, sorted."""
    names = [o for o in super_options.split(",") if o in _V1_CONTROLLERS or o.startswith("name=")]
    return ",".join(sorted(names))


_V1_CONTROLLERS = frozenset(
    (
        "cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer",
        "net_cls", "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc",
    )
)  # fmt: skip


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup per hierarchy (cgroups(7)): sorted controllers -> path."""
    own: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                own[",".join(sorted(controllers.split(","))) if controllers else ""] = path
    except OSError:
        pass
    return own


def _cgroup_dir(mount_point: str, mount_root: str, own: str) -> str:
    """The host directory of cgroup ``own`` in a hierarchy mounted at ``mount_point``."""
    if own and (own == mount_root or own.startswith(mount_root.rstrip("/") + "/")):
        relative = own[len(mount_root.rstrip("/")) :].lstrip("/")
        if relative:
            return f"{mount_point}/{relative}"
    return mount_point


# -- entering the root -------------------------------------------------------------------


def enter_rootfs(sc: Syscalls, rootfs: str, *, no_pivot: bool) -> None:
    """Make ``rootfs`` the process's ``/``; see the module doc."""
    os.chdir(rootfs)
    if no_pivot:
        # For a rootfs on the initramfs, where pivot_root(2) is refused (EINVAL).
        _mount(sc, rootfs, "/", None, MS_MOVE, None, f"move {rootfs} to /")
        sc.chroot(".")
    else:
        # pivot_root(2) NOTES: new_root and put_old may be the same directory; the old
        # root then sits on top of the new one at "/" and can be unmounted from there,
        # with no put_old directory needed in the image. "." must then name the OLD root:
        # the cwd still points into the new one, so hold an fd of the old root and
        # fchdir(2) to it, or the propagation change below would hit the container's
        # own mounts (and lose their "shared" propagation).
        old_root = os.open("/", _PATH_DIR)
        try:
            try:
                sc.pivot_root(".", ".")
            except OSError as error:
                raise type(error)(error.errno, f"pivot_root {rootfs}: {_reason(error)}") from None
            os.fchdir(old_root)
        finally:
            os.close(old_root)
        # rslave first: a lazy unmount of a shared old root would propagate to the host.
        _mount(sc, None, ".", None, MS_SLAVE | MS_REC, None, "propagation of the old root")
        sc.umount2(".", MNT_DETACH)
    os.chdir("/")


# -- after pivot_root ------------------------------------------------------------------


def finish_rootfs(sc: Syscalls, spec: Spec, *, root: str = "/") -> None:
    """``readonlyPaths``, ``maskedPaths``, ``root.readonly``, final ``rootfsPropagation``.

    ``root`` is "/" once pivoted; tests pass a directory.
    """
    linux = spec.linux
    if linux and (linux.readonly_paths or linux.masked_paths):
        root_fd = os.open(root, _PATH_DIR)
        try:
            # runc's order: a path both read-only and masked ends up masked.
            for path in linux.readonly_paths:
                make_readonly(sc, root_fd, path)
            for path in linux.masked_paths:
                mask(sc, root_fd, path)
        finally:
            os.close(root_fd)
    if spec.root and spec.root.readonly:
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | mount_flags_of(root)
        _mount(sc, None, root, None, flags, None, "remount / read-only")
    if linux and linux.rootfs_propagation:
        change = PROPAGATION_OPTIONS[linux.rootfs_propagation]
        _mount(sc, None, root, None, change, None, "propagation of /")


def make_readonly(sc: Syscalls, root_fd: int, path: str) -> None:
    """Bind ``path`` onto itself and remount it read-only; a missing path is skipped."""
    try:
        fd = open_in_root(sc, root_fd, path, _PATH_FLAGS)
    except FileNotFoundError:
        return
    try:
        _mount(sc, fd_path(fd), fd_path(fd), None, MS_BIND | MS_REC, None, f"bind {path}")
    finally:
        os.close(fd)
    top_fd = open_in_root(sc, root_fd, path, _PATH_FLAGS)
    try:
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | mount_flags_of(top_fd)
        _mount(sc, None, fd_path(top_fd), None, flags, None, f"remount {path} read-only")
    finally:
        os.close(top_fd)


def mask(sc: Syscalls, root_fd: int, path: str) -> None:
    """Hide ``path``: /dev/null over a file, an empty read-only tmpfs over a directory."""
    try:
        fd = open_in_root(sc, root_fd, path, _PATH_FLAGS)
    except FileNotFoundError:
        return
    try:
        target = fd_path(fd)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            _mount(sc, "tmpfs", target, "tmpfs", _MASK_FLAGS, None, f"mask {path}")
        else:
            _mount(sc, "/dev/null", target, None, MS_BIND, None, f"mask {path}")
    finally:
        os.close(fd)
