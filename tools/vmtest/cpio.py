"""A writer for the "newc" cpio format the kernel unpacks as an initramfs.

Each entry is a 110-byte ASCII header (magic 070701, then 13 eight-digit hex fields), the
NUL-terminated name padded to a multiple of 4 bytes, and the data padded likewise; the
archive ends with the entry "TRAILER!!!" (Documentation/driver-api/early-userspace/
buffer-format.rst). Everything is owned by root and dated 0, so the same inputs give the
same bytes and the cache can compare them.
"""

from __future__ import annotations

import stat

S_IFDIR = stat.S_IFDIR
S_IFREG = stat.S_IFREG
S_IFLNK = stat.S_IFLNK
S_IFCHR = stat.S_IFCHR


class CpioWriter:
    """Collects entries in memory; ``getvalue()`` returns the finished archive."""

    __slots__ = ("_chunks", "_inode", "_names")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._inode = 1
        self._names: set[str] = set()

    def directory(self, name: str, mode: int = 0o755) -> None:
        self._entry(name, S_IFDIR | mode, b"", nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, S_IFCHR | mode, b"", device=(major, minor))

    def has(self, name: str) -> bool:
        return name.strip("/") in self._names

    def getvalue(self) -> bytes:
        trailer = CpioWriter()
        trailer._entry("TRAILER!!!", 0, b"", nlink=1, inode=0)
        return b"".join(self._chunks) + b"".join(trailer._chunks)

    def _entry(
        self,
        name: str,
        mode: int,
        data: bytes,
        nlink: int = 1,
        inode: int | None = None,
        device: tuple[int, int] = (0, 0),
    ) -> None:
        name = name.strip("/")
        if name in self._names:
            raise ValueError(f"cpio: {name} added twice")
        self._names.add(name)
        if inode is None:
            inode, self._inode = self._inode, self._inode + 1
        encoded = name.encode() + b"\0"
        # ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor
        # namesize check
        fields = (inode, mode, 0, 0, nlink, 0, len(data), 0, 0, *device, len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self._chunks.append(header + encoded + _padding(len(header) + len(encoded)))
        self._chunks.append(data + _padding(len(data)))


def _padding(length: int) -> bytes:
    return b"\0" * (-length % 4)
