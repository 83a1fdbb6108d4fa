"""Resolving container paths inside the root filesystem, never outside it.

Mount destinations come from the config and name paths inside the container, but the
rootfs is an ordinary host directory that may hold symlinks such as ``/etc -> /`` or
``/dev -> ../../..``. Joining strings and letting the kernel follow those links would
mount over host paths. So every lookup goes through :func:`open_in_root`:
``openat2(2)`` with ``RESOLVE_IN_ROOT`` treats the rootfs fd as ``/`` for the whole
walk, symlinks and ``..`` included, and ``RESOLVE_NO_MAGICLINKS`` refuses the
``/proc/<pid>/fd`` style links that could point anywhere.

Kernels before 5.6 have no ``openat2``: the same resolution is then done in user space,
one ``O_PATH | O_NOFOLLOW`` component at a time, with symlink targets read and
re-resolved from the root (40 links at most, as the kernel allows). It cannot tell
magic links from ordinary ones, but as it follows their text, not the kernel's
jump, the result still stays inside the root.

:func:`mkdir_all_in_root` creates what is missing with ``mkdirat`` on the fd of the
parent it resolved, never on a string path, so a symlink swapped in between the
lookup and the ``mkdir`` cannot redirect it (the lesson of CVE-2021-30465).
"""

from __future__ import annotations

import errno
import os
import stat

from corral.linux.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.linux.syscalls import Syscalls

IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_MAX_SYMLINKS = 40  # the kernel's limit (MAXSYMLINKS), so both resolvers agree on ELOOP

# None until the first call finds out whether the kernel has openat2(2).
_have_openat2: bool | None = None


def open_in_root(sc: Syscalls, root_fd: int, path: str, flags: int, *, resolve: int = 0) -> int:
    """Open ``path`` as if ``root_fd`` were ``/``: symlinks and ``..`` cannot leave it.

    ``resolve`` adds ``RESOLVE_*`` flags; ``RESOLVE_NO_SYMLINKS`` refuses any symlink
    on the way (``ELOOP``). The result is close-on-exec.
    """
    global _have_openat2
    if _have_openat2 is not False:
        try:
            fd = sc.openat2(root_fd, path or "/", flags, 0, IN_ROOT | resolve)
        except OSError as error:
            if error.errno != errno.ENOSYS:
                raise
            _have_openat2 = False
        else:
            _have_openat2 = True
            return fd
    return _open_by_walking(root_fd, path, flags, no_symlinks=bool(resolve & RESOLVE_NO_SYMLINKS))


def mkdir_all_in_root(
    sc: Syscalls, root_fd: int, path: str, mode: int = 0o755, *, resolve: int = 0
) -> int:
    """Create the missing directories of ``path`` inside the root, like ``mkdir -p``.

    Returns an ``O_PATH | O_DIRECTORY`` fd of the result. A component that exists and
    is not a directory (a dangling symlink included) raises ``ENOTDIR`` naming it.
    """
    try:
        return open_in_root(sc, root_fd, path, _PATH_DIR, resolve=resolve)
    except OSError as error:
        if error.errno == errno.ENOTDIR:
            raise _not_a_directory(sc, root_fd, path, resolve) from None
        if error.errno != errno.ENOENT:
            raise
    parts = [part for part in path.split("/") if part and part != "."]
    # Find the deepest ancestor that exists, from the end: the parent usually does.
    existing = len(parts) - 1
    while True:
        prefix = "/" + "/".join(parts[:existing])
        try:
            fd = open_in_root(sc, root_fd, prefix, _PATH_DIR, resolve=resolve)
            break
        except OSError as error:
            if error.errno == errno.ENOTDIR:
                raise _not_a_directory(sc, root_fd, prefix, resolve) from None
            if error.errno != errno.ENOENT or existing == 0:
                raise
            existing -= 1
    try:
        for index in range(existing, len(parts)):
            name = parts[index]
            if name == "..":
                # "a/missing/../b": the kernel would fail here too (ENOENT on "missing").
                raise OSError(errno.ENOENT, f"mkdir {path}: {name} after a missing directory")
            try:
                os.mkdir(name, mode, dir_fd=fd)
            except FileExistsError:
                pass  # made meanwhile, or a dangling symlink: the open below tells which
            try:
                child = os.open(name, _PATH_DIR | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as error:
                if error.errno in (errno.ENOTDIR, errno.ELOOP):
                    where = "/" + "/".join(parts[: index + 1])
                    raise OSError(errno.ENOTDIR, _describe_non_dir(fd, name, where)) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_file_in_root(sc: Syscalls, root_fd: int, path: str) -> int:
    """Return an ``O_PATH`` fd of ``path``, creating it as an empty file if missing.

    Bind mounts of files need a file to mount onto; the parents are created as
    directories. The file is made with ``O_EXCL | O_NOFOLLOW`` in its parent's fd.
    """
    try:
        return open_in_root(sc, root_fd, path, os.O_PATH)
    except OSError as error:
        if error.errno != errno.ENOENT:
            raise
    parent, _, name = path.rstrip("/").rpartition("/")
    if name in ("", ".", ".."):
        raise OSError(errno.EISDIR, f"create {path}: not a file name")
    parent_fd = mkdir_all_in_root(sc, root_fd, parent or "/")
    try:
        flags = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(name, flags, 0o644, dir_fd=parent_fd)
        except FileExistsError:
            # A dangling symlink (or a race): never create through it.
            raise OSError(errno.EEXIST, f"create {path}: exists and cannot be opened") from None
    finally:
        os.close(parent_fd)


def _not_a_directory(sc: Syscalls, root_fd: int, path: str, resolve: int) -> OSError:
    """Find the first component of ``path`` that is not a directory, for the message."""
    parts = [part for part in path.split("/") if part and part != "."]
    for end in range(1, len(parts) + 1):
        prefix = "/" + "/".join(parts[:end])
        try:
            fd = open_in_root(sc, root_fd, prefix, _PATH_DIR, resolve=resolve)
        except OSError as error:
            if error.errno == errno.ENOTDIR:
                return OSError(errno.ENOTDIR, f"{prefix}: exists and is not a directory")
            break
        os.close(fd)
    return OSError(errno.ENOTDIR, f"{path}: a component is not a directory")


def _describe_non_dir(parent_fd: int, name: str, where: str) -> str:
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except OSError:
        return f"{where}: exists and is not a directory"
    if stat.S_ISLNK(st.st_mode):
        return f"{where}: is a symbolic link to a missing directory; not creating through it"
    return f"{where}: exists and is not a directory"


def _open_by_walking(root_fd: int, path: str, flags: int, *, no_symlinks: bool) -> int:
    """``RESOLVE_IN_ROOT`` in user space, for kernels without ``openat2`` (before 5.6)."""
    pending = [part for part in reversed(path.split("/")) if part and part != "."]
    # The directories walked through, root excluded: ".." pops one, never past the root.
    parents: list[int] = []
    current = os.open(".", _PATH_DIR, dir_fd=root_fd)
    links = 0
    try:
        while pending:
            name = pending.pop()
            if name == "..":
                if parents:
                    os.close(current)
                    current = parents.pop()
                continue
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current)
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode) and not (not pending and flags & os.O_NOFOLLOW):
                os.close(fd)
                links += 1
                if no_symlinks or links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, f"open {path}: too many levels of symbolic links")
                target = os.readlink(name, dir_fd=current)
                if target.startswith("/"):
                    for parent in parents:
                        os.close(parent)
                    parents.clear()
                    os.close(current)
                    current = os.open(".", _PATH_DIR, dir_fd=root_fd)
                pending.extend(part for part in reversed(target.split("/")) if part and part != ".")
                continue
            if pending:
                if not stat.S_ISDIR(mode):
                    os.close(fd)
                    raise OSError(errno.ENOTDIR, f"open {path}: {name} is not a directory")
                parents.append(current)
                current = fd
                continue
            if flags & os.O_PATH:
                if flags & os.O_DIRECTORY and not stat.S_ISDIR(mode):
                    os.close(fd)
                    raise OSError(errno.ENOTDIR, f"open {path}: not a directory")
                return fd
            os.close(fd)
            # Reopen for real; O_NOFOLLOW makes a symlink swapped in meanwhile fail (ELOOP).
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current)
        # The path named the root itself (or walked back up to it).
        return os.open(".", flags | os.O_CLOEXEC, dir_fd=current)
    finally:
        os.close(current)
        for parent in parents:
            os.close(parent)
