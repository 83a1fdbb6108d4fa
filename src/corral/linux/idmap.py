"""Idmapped mounts: ``mounts[].uidMappings``/``gidMappings`` and the ``idmap``/``ridmap``
options (config.md, "Mounts"; mount_setattr(2), Linux 5.12).

An idmapped mount shows the files of its source with their owners translated: with a
mapping ``{containerID: 1000, hostID: 0, size: 1}`` a file that uid 1000 owns on disk
appears owned by uid 0 through the mount, and a file uid 0 creates through it is
stored as 1000. ``containerID`` is the id on disk, ``hostID`` the id it shows as
(in the kernel's terms: the on-disk id is mapped *down* through the mount's user
namespace; Documentation/filesystems/idmappings.rst). With the container's own user
namespace mapping, container root sees the image's root-owned files as its own.

**The rules** (:func:`check_idmapped_mounts`, pure). config.md: ``uidMappings`` and
``gidMappings`` come together; ``idmap``/``ridmap`` without them use the container's
user namespace mapping (a MAY that runc implements), and without a user namespace
either they are an error. As runc: only bind mounts can be idmapped, mappings without
either option mean ``idmap`` (the options are a SHOULD), and a later ``idmap`` or
``ridmap`` wins over an earlier one. ``ridmap`` idmaps every mount of an ``rbind``
tree; ``idmap`` only its top.

**How.** The kernel sets MOUNT_ATTR_IDMAP only on a *detached* mount, and only for a
caller privileged over the filesystem (CAP_SYS_ADMIN in the user namespace of its
superblock: the host's, for a disk). So it happens in the parent, before the fork,
where corral is still host root, and before it enters a pid namespace for its
children, as its helper process must not become that namespace's pid 1
(:func:`prepare_idmapped_mounts`):

1. a user namespace with the mapping: :func:`corral.linux.userns.open_user_namespace`
   (a helper unshares it, the maps are written, its ``/proc/<pid>/ns/user`` is opened,
   it is killed), one per distinct mapping; or the joined user namespace's path;
2. ``open_tree(source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC [| AT_RECURSIVE for rbind])``:
   a detached copy of the source mount (tree);
3. ``mount_setattr(tree, "", AT_EMPTY_PATH [| AT_RECURSIVE for ridmap], MOUNT_ATTR_IDMAP,
   userns_fd)``.

The init inherits the tree fds across the fork and, when it reaches that mount in
``mounts`` order, attaches the tree with ``move_mount(tree, "", target_fd, "",
MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)`` (:func:`attach_tree`) instead of
its bind mount(2); the ``target_fd`` is the ``O_PATH`` fd of the destination resolved in
the rootfs, as for every mount (CVE-2021-30465). Attaching needs privilege only over
the container's mount namespace, which the init has even inside its user namespace.
:func:`apply_idmapped_mount` does steps 1-3 and the attach in one process.
"""

from __future__ import annotations

import errno
import os

from corral.errors import ConfigError, CreateError
from corral.linux.userns import IDMapping, check_map, open_user_namespace, parse_mappings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Mount, Spec

# <linux/mount.h>, <fcntl.h>
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_IDMAP = 0x100000

# The options this module handles; never passed to mount(2). Value: idmap recursively.
IDMAP_OPTIONS = {"idmap": False, "ridmap": True}


class IdmappedMount:
    """What :func:`prepare_idmapped_mounts` builds for one entry of ``mounts``.

    ``userns_path`` is set (and the mappings empty) when the mount takes the mapping of
    a user namespace the container joins by path.
    """

    __slots__ = (
        "gid_mappings",
        "index",
        "recursive_idmap",
        "recursive_tree",
        "source",
        "uid_mappings",
        "userns_path",
    )

    def __init__(
        self,
        index: int,
        source: str,
        *,
        recursive_tree: bool,
        recursive_idmap: bool,
        uid_mappings: list[IDMapping],
        gid_mappings: list[IDMapping],
        userns_path: str = "",
    ) -> None:
        self.index = index
        self.source = source
        self.recursive_tree = recursive_tree
        self.recursive_idmap = recursive_idmap
        self.uid_mappings = uid_mappings
        self.gid_mappings = gid_mappings
        self.userns_path = userns_path

    def __repr__(self) -> str:
        return (
            f"IdmappedMount({self.index}, {self.source!r}, tree_rec={self.recursive_tree}, "
            f"idmap_rec={self.recursive_idmap}, uid={self.uid_mappings}, "
            f"gid={self.gid_mappings}, userns_path={self.userns_path!r})"
        )


def idmapped_mounts(spec: Spec, bundle: str) -> list[IdmappedMount]:
    """The idmapped entries of ``mounts``, checked; see the module docstring for the rules.

    Pure but for joining a relative bind source to ``bundle``. Raises ConfigError.
    """
    from corral.linux.mountopts import bind_source
    from corral.linux.userns import user_mappings

    raw_mounts = spec.raw.get("mounts")
    planned = []
    for index, mount in enumerate(spec.mounts):
        raw = raw_mounts[index] if isinstance(raw_mounts, list) else None
        entry = _idmapped_mount(spec, index, mount, raw if isinstance(raw, dict) else {})
        if entry is None:
            continue
        if not entry.uid_mappings and not entry.userns_path:
            # The container's own mapping (check_user_namespace validated it).
            entry.uid_mappings, entry.gid_mappings = user_mappings(spec)
        entry.source = bind_source(mount.source, bundle)
        planned.append(entry)
    return planned


def check_idmapped_mounts(spec: Spec) -> None:
    """Raise ConfigError for an idmapped mount that cannot be made (no system calls)."""
    idmapped_mounts(spec, "")


def _idmapped_mount(
    spec: Spec, index: int, mount: Mount, raw: dict[str, object]
) -> IdmappedMount | None:
    where = f"mounts[{index}]"
    uid_maps = parse_mappings(raw.get("uidMappings"), f"{where}.uidMappings")
    gid_maps = parse_mappings(raw.get("gidMappings"), f"{where}.gidMappings")
    option_index = -1
    recursive_idmap = False
    for position, option in enumerate(mount.options):
        if option in IDMAP_OPTIONS:
            option_index, recursive_idmap = position, IDMAP_OPTIONS[option]
    if option_index < 0 and not uid_maps and not gid_maps:
        return None
    if uid_maps or gid_maps:
        # config.md: each MUST come with the other.
        if not uid_maps:
            raise ConfigError(f"{where}.uidMappings", "required with gidMappings")
        if not gid_maps:
            raise ConfigError(f"{where}.gidMappings", "required with uidMappings")
        check_map(uid_maps, f"{where}.uidMappings")
        check_map(gid_maps, f"{where}.gidMappings")
    what = f"{where}.options[{option_index}]" if option_index >= 0 else f"{where}.uidMappings"
    name = mount.options[option_index] if option_index >= 0 else "uidMappings"
    if "remount" in mount.options:
        raise ConfigError(what, f'"{name}": an existing mount cannot be idmapped (remount)')
    if "bind" not in mount.options and "rbind" not in mount.options:
        raise ConfigError(what, f'"{name}": only bind mounts can be idmapped ("bind" or "rbind")')
    if not mount.source:
        raise ConfigError(f"{where}.source", "a bind mount needs a source")
    userns_path = ""
    if not uid_maps:
        user_ns = spec.linux.namespace("user") if spec.linux is not None else None
        if user_ns is None:
            raise ConfigError(
                what,
                f'"{name}" needs {where}.uidMappings and gidMappings, '
                "or a user namespace to take the mapping from",
            )
        userns_path = user_ns.path
    return IdmappedMount(
        index,
        mount.source,
        # As in mountopts.parse_options: "rbind" sets MS_REC, and no option clears it.
        recursive_tree="rbind" in mount.options,
        recursive_idmap=recursive_idmap,
        uid_mappings=uid_maps,
        gid_mappings=gid_maps,
        userns_path=userns_path,
    )


# -- system calls ------------------------------------------------------------------------


def open_idmapped_tree(
    sc: Syscalls,
    source: str,
    userns_fd: int,
    *,
    recursive_tree: bool,
    recursive_idmap: bool,
) -> int:
    """A detached copy of the mount at ``source``, idmapped by the user namespace
    ``userns_fd``: an fd (close-on-exec) for :func:`attach_tree`."""
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive_tree else 0)
    try:
        tree = sc.open_tree(AT_FDCWD, source, flags)
    except OSError as error:
        hint = " (needs Linux 5.2)" if error.errno == errno.ENOSYS else ""
        raise OSError(error.errno, f"open_tree {source}: {_reason(error)}{hint}") from None
    try:
        setattr_flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive_idmap else 0)
        sc.mount_setattr_idmap(tree, "", setattr_flags, userns_fd)
    except OSError as error:
        os.close(tree)
        raise OSError(
            error.errno, f"idmapping {source}: {_reason(error)}{_setattr_hint(error, source)}"
        ) from None
    return tree


def _setattr_hint(error: OSError, source: str) -> str:
    if error.errno == errno.ENOSYS:
        return " (idmapped mounts need Linux 5.12)"
    if error.errno == errno.EINVAL:
        return (
            f" (the filesystem of {source} does not support idmapped mounts on this kernel: "
            "ext4, xfs, btrfs since 5.12, tmpfs since 6.3...)"
        )
    if error.errno == errno.EPERM:
        return " (needs CAP_SYS_ADMIN over the filesystem: do it before the user namespace)"
    return ""


def _reason(error: OSError) -> str:
    return os.strerror(error.errno) if error.errno else str(error)


def attach_tree(sc: Syscalls, tree_fd: int, target_fd: int, what: str) -> None:
    """Attach the detached mount ``tree_fd`` onto the directory (or file) ``target_fd``."""
    try:
        sc.move_mount(tree_fd, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
    except OSError as error:
        raise OSError(error.errno, f"move_mount {what}: {_reason(error)}") from None


def apply_idmapped_mount(
    sc: Syscalls,
    source: str,
    target_fd: int,
    uid_mappings: list[IDMapping],
    gid_mappings: list[IDMapping],
    recursive: bool,
) -> None:
    """Bind ``source`` onto ``target_fd`` idmapped, all in this process.

    This process must be privileged over the source's filesystem (the host's root user
    namespace, for a disk) and over the target's mount namespace. ``recursive`` clones
    and idmaps the whole tree under ``source`` (``rbind`` + ``ridmap``).
    """
    userns_fd = open_user_namespace(sc, uid_mappings, gid_mappings)
    try:
        tree = open_idmapped_tree(
            sc, source, userns_fd, recursive_tree=recursive, recursive_idmap=recursive
        )
    finally:
        os.close(userns_fd)
    try:
        attach_tree(sc, tree, target_fd, source)
    finally:
        os.close(tree)


def prepare_idmapped_mounts(sc: Syscalls, spec: Spec, bundle: str) -> dict[int, int]:
    """The parent's side: ``{index in mounts: detached idmapped tree fd}``.

    Call it before forking the init, while privileged on the host. The fds are
    close-on-exec; the init attaches them (:func:`attach_tree`), the parent closes its
    copies once the init is forked. Raises CreateError naming the mount.
    """
    trees: dict[int, int] = {}
    userns_fds: dict[object, int] = {}
    try:
        for entry in idmapped_mounts(spec, bundle):
            key: object = entry.userns_path or (
                tuple(m.key() for m in entry.uid_mappings),
                tuple(m.key() for m in entry.gid_mappings),
            )
            try:
                if key not in userns_fds:
                    userns_fds[key] = _userns_fd(sc, entry)
                trees[entry.index] = open_idmapped_tree(
                    sc,
                    entry.source,
                    userns_fds[key],
                    recursive_tree=entry.recursive_tree,
                    recursive_idmap=entry.recursive_idmap,
                )
            except (OSError, CreateError) as error:
                message = error.strerror if isinstance(error, OSError) else str(error)
                raise CreateError(f"mounts[{entry.index}]: {message or error}") from None
    except BaseException:
        for fd in trees.values():
            os.close(fd)
        raise
    finally:
        for fd in userns_fds.values():
            os.close(fd)
    return trees


def _userns_fd(sc: Syscalls, entry: IdmappedMount) -> int:
    if entry.userns_path:
        try:
            return os.open(entry.userns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            raise OSError(error.errno, f"{entry.userns_path}: {_reason(error)}") from None
    return open_user_namespace(sc, entry.uid_mappings, entry.gid_mappings)
