"""kinfo_proc decoding, with records laid out as FreeBSD's sys/user.h lays them out."""

from __future__ import annotations

import struct

import pytest

from corral.freebsd import procinfo


def record(pid: int, ppid: int, start: tuple[int, int], state: int, jid: int) -> bytes:
    data = bytearray(procinfo.KINFO_PROC_SIZE)
    struct.pack_into("=i", data, 0, procinfo.KINFO_PROC_SIZE)
    struct.pack_into("=ii", data, 72, pid, ppid)
    struct.pack_into("=qq", data, 336, *start)
    struct.pack_into("=b", data, 388, state)
    struct.pack_into("=i", data, 592, jid)
    return bytes(data)


def test_decode_reads_the_fields() -> None:
    info = procinfo.decode(record(4242, 1, (1_700_000_000, 250_000), 2, 7))
    assert (info.pid, info.ppid, info.state, info.jid) == (4242, 1, 2, 7)
    assert info.start_time == 1_700_000_000_250_000


def test_decode_refuses_an_unknown_layout() -> None:
    data = bytearray(record(1, 0, (0, 0), 2, 0))
    struct.pack_into("=i", data, 0, 1096)
    with pytest.raises(ValueError, match="kinfo_proc of 1096 bytes"):
        procinfo.decode(bytes(data))


def test_split_walks_every_record() -> None:
    buffer = (
        record(10, 1, (1, 0), 3, 5) + record(11, 10, (2, 0), 5, 5) + record(12, 1, (3, 0), 2, 0)
    )
    assert [(p.pid, p.jid, p.state) for p in procinfo.split(buffer)] == [
        (10, 5, 3),
        (11, 5, procinfo.SZOMB),
        (12, 0, 2),
    ]
