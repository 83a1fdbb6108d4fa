"""Process facts on FreeBSD, from ``sysctl kern.proc`` (no procfs needed).

``struct kinfo_proc`` (sys/user.h) is read through ``sysctl(3)`` with the MIB
``{CTL_KERN, KERN_PROC, KERN_PROC_PID, pid}``, or ``KERN_PROC_PROC`` for every process.
Its layout is fixed by ``KINFO_PROC_SIZE`` (1088 bytes on amd64 and arm64); new fields
are carved out of spare space, so the offsets below hold on FreeBSD 12 to 15. A
record whose ``ki_structsize`` differs is refused rather than misread.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

CTL_KERN = 1
KERN_PROC = 14
KERN_PROC_PID = 1
KERN_PROC_PROC = 8
KINFO_PROC_SIZE = 1088  # amd64, arm64
SZOMB = 5  # ki_stat of a zombie

# Offsets in struct kinfo_proc (LP64).
_OFF_STRUCTSIZE = 0
_OFF_PID = 72
_OFF_PPID = 76
_OFF_START = 336  # struct timeval ki_start
_OFF_STAT = 388
_OFF_JID = 592


class KinfoProc:
    """The few fields corral reads from one ``struct kinfo_proc``."""

    __slots__ = ("jid", "pid", "ppid", "start_time", "state")

    def __init__(self, pid: int, ppid: int, start_time: int, state: int, jid: int) -> None:
        self.pid = pid
        self.ppid = ppid
        self.start_time = start_time  # microseconds since the epoch
        self.state = state
        self.jid = jid


def decode(record: bytes) -> KinfoProc:
    """Decode one ``struct kinfo_proc`` (pure: unit-tested with made-up records)."""
    (size,) = struct.unpack_from("=i", record, _OFF_STRUCTSIZE)
    if size != KINFO_PROC_SIZE or len(record) < KINFO_PROC_SIZE:
        raise ValueError(f"kinfo_proc of {size} bytes; corral knows the {KINFO_PROC_SIZE}-byte one")
    pid, ppid = struct.unpack_from("=ii", record, _OFF_PID)
    seconds, microseconds = struct.unpack_from("=qq", record, _OFF_START)
    (state,) = struct.unpack_from("=b", record, _OFF_STAT)
    (jid,) = struct.unpack_from("=i", record, _OFF_JID)
    return KinfoProc(pid, ppid, seconds * 1_000_000 + microseconds, state, jid)


def split(buffer: bytes) -> Iterator[KinfoProc]:
    """The records of a ``KERN_PROC_PROC`` answer, one per process."""
    for offset in range(0, len(buffer) - KINFO_PROC_SIZE + 1, KINFO_PROC_SIZE):
        yield decode(buffer[offset : offset + KINFO_PROC_SIZE])


def _sysctl(mib: list[int]) -> bytes:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    name = (ctypes.c_int * len(mib))(*mib)
    size = ctypes.c_size_t(0)
    if libc.sysctl(name, len(mib), None, ctypes.byref(size), None, 0) != 0:
        raise OSError(ctypes.get_errno(), "sysctl kern.proc")
    buffer = ctypes.create_string_buffer(size.value + KINFO_PROC_SIZE * 8)
    size = ctypes.c_size_t(len(buffer))
    if libc.sysctl(name, len(mib), buffer, ctypes.byref(size), None, 0) != 0:
        raise OSError(ctypes.get_errno(), "sysctl kern.proc")
    return buffer.raw[: size.value]


def process(pid: int) -> KinfoProc | None:
    """The live process ``pid``, or None."""
    try:
        data = _sysctl([CTL_KERN, KERN_PROC, KERN_PROC_PID, pid])
    except OSError:
        return None  # ESRCH: no such process
    if not data:
        return None
    return decode(data)


def read_start_time(pid: int) -> int | None:
    """The start time of a live (non-zombie) ``pid``, or None (as the Linux one)."""
    info = process(pid)
    if info is None or info.state == SZOMB:
        return None
    return info.start_time


def jail_processes(jid: int) -> list[int]:
    """Every live process whose jail is ``jid``."""
    return [
        info.pid
        for info in split(_sysctl([CTL_KERN, KERN_PROC, KERN_PROC_PROC]))
        if info.jid == jid and info.state != SZOMB
    ]
