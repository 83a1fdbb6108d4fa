"""The part of :mod:`os` the frequent commands use, without importing :mod:`os`.

``import os`` costs ~0.85 ms (it builds ``os.environ`` and pulls in
``_collections_abc``, ``posixpath`` and ``stat``), a fifth of what runc needs for a
whole ``corral state``. :mod:`posix` is the built-in C module ``os`` wraps and costs
nothing, so ``state``, ``start``, ``kill``, ``delete`` and ``list`` use it through
this module; the few path helpers they need are written out below. Code that only
``create`` runs keeps using :mod:`os`.
"""

from __future__ import annotations

from posix import (
    O_APPEND,
    O_CLOEXEC,
    O_CREAT,
    O_DIRECTORY,
    O_NONBLOCK,
    O_RDONLY,
    O_TRUNC,
    O_WRONLY,
    WEXITSTATUS,
    WIFEXITED,
    WIFSIGNALED,
    WTERMSIG,
    chmod,
    close,
    getcwd,
    geteuid,
    getpid,
    kill,
    listdir,
    mkdir,
    mkfifo,
    open,
    read,
    readlink,
    rename,
    rmdir,
    stat,
    unlink,
    waitpid,
    write,
)

__all__ = [
    "O_APPEND", "O_CLOEXEC", "O_CREAT", "O_DIRECTORY", "O_NONBLOCK", "O_RDONLY", "O_TRUNC",
    "O_WRONLY", "WEXITSTATUS", "WIFEXITED", "WIFSIGNALED", "WTERMSIG", "absolute", "chmod",
    "close", "exists", "fold", "getcwd", "geteuid", "getpid", "is_dir", "kill", "listdir", "mkdir",
    "mkfifo", "open", "read", "readlink", "rename", "rmdir", "stat", "tell", "unlink",
    "waitpid", "write",
]  # fmt: skip

_S_IFMT = 0o170000
_S_IFDIR = 0o040000


def exists(path: str) -> bool:
    try:
        stat(path)
    except (OSError, ValueError):
        return False
    return True


def is_dir(path: str) -> bool:
    try:
        return stat(path).st_mode & _S_IFMT == _S_IFDIR
    except (OSError, ValueError):
        return False


def absolute(path: str) -> str:
    """Like ``os.path.abspath``: made absolute against the cwd, ``.`` and ``..`` folded."""
    return fold(path if path.startswith("/") else getcwd() + "/" + path)


def fold(path: str) -> str:
    """Fold ``.``, ``..`` and repeated slashes of a path read from "/" (lexically:
    no symlink is looked at, and ``..`` never climbs above "/")."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return "/" + "/".join(parts)


def tell(text: str) -> None:
    """Write ``text`` to stderr, unbuffered; a stderr that takes nothing is no error.

    Clients do not always give the runtime a stderr to write to: containerd's shim
    runs ``create`` of a pod sandbox with a read-only ``/dev/null`` there (EBADF on
    write), and reads the ``--log`` file instead. ``sys.stderr`` would keep the line in
    its buffer and fail again at exit, which Python turns into exit status 120.
    """
    data = text.encode(errors="replace")
    try:
        while data:
            data = data[write(2, data) :]
    except OSError:
        pass
