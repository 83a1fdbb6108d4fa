"""The D-Bus wire format of corral.linux.dbus against bytes worked out by hand.

The expected byte strings follow the D-Bus specification's "Marshaling (Wire Format)"
and "Message Format" sections; each comment gives the offsets that justify a padding.
The connection is driven over a socketpair by a hand-written peer in a thread.
"""

from __future__ import annotations

import os
import socket
import struct
import threading

import pytest

from corral.linux import dbus
from corral.linux.dbus import Variant

# -- hand-worked layouts ------------------------------------------------------------------


def test_hello_message_bytes_match_the_specification_layout() -> None:
    message = dbus.Message(
        dbus.METHOD_CALL,
        serial=1,
        path="/org/freedesktop/DBus",
        interface="org.freedesktop.DBus",
        member="Hello",
        destination="org.freedesktop.DBus",
    )
    expected = (
        b"l\x01\x00\x01"  # little-endian, METHOD_CALL, no flags, protocol 1
        b"\x00\x00\x00\x00"  # body length 0
        b"\x01\x00\x00\x00"  # serial 1
        b"\x6d\x00\x00\x00"  # a(yv) length: 125 - 16 = 109 bytes of fields
        # offset 16: field PATH, variant signature "o", string of 21 bytes at 20
        b"\x01\x01o\x00"
        + b"\x15\x00\x00\x00"
        + b"/org/freedesktop/DBus\x00"
        # offset 46: pad to 48 (structs align to 8); INTERFACE "s", 20 bytes at 52
        + b"\x00\x00"
        + b"\x02\x01s\x00"
        + b"\x14\x00\x00\x00"
        + b"org.freedesktop.DBus\x00"
        # offset 77: pad to 80; MEMBER "s" of 5 bytes at 84
        + b"\x00\x00\x00"
        + b"\x03\x01s\x00"
        + b"\x05\x00\x00\x00"
        + b"Hello\x00"
        # offset 94: pad to 96; DESTINATION, 20 bytes at 100, ends at 125
        + b"\x00\x00"
        + b"\x06\x01s\x00"
        + b"\x14\x00\x00\x00"
        + b"org.freedesktop.DBus\x00"
        # offset 125: the header is padded to 128 (a multiple of 8); no body
        + b"\x00\x00\x00"
    )
    assert message.encode() == expected
    assert len(expected) == 128
    decoded = dbus.decode(expected)
    assert (decoded.path, decoded.interface, decoded.member, decoded.destination) == (
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "Hello",
        "org.freedesktop.DBus",
    )
    assert decoded.serial == 1
    assert decoded.body == []


def test_byte_then_uint64_pads_to_eight() -> None:
    assert dbus.marshal("yt", [1, 2]) == b"\x01" + bytes(7) + struct.pack("<Q", 2)


def test_alignment_counts_from_the_message_start_not_the_value() -> None:
    # Written at offset 4, a uint64 needs 4 bytes of padding first.
    assert dbus.marshal("t", [1], offset=4) == bytes(4) + b"\x01" + bytes(7)
    assert dbus.marshal("t", [1], offset=8) == b"\x01" + bytes(7)


def test_empty_array_of_eight_aligned_elements_keeps_its_padding() -> None:
    # The length (0) then padding to 8 for the (absent) first element.
    assert dbus.marshal("at", [[]]) == bytes(8)
    assert dbus.marshal("ai", [[]]) == bytes(4)
    # Written at offset 4, the length ends at 8, already aligned for a struct.
    assert dbus.marshal("a(ii)", [[]], offset=4) == bytes(4)
    assert dbus.marshal("a(ii)", [[]], offset=8) == bytes(8)


def test_array_length_excludes_the_padding_before_the_first_element() -> None:
    data = dbus.marshal("at", [[7, 8]])
    assert data[:4] == struct.pack("<I", 16)  # two uint64s, not 20
    assert data[4:8] == bytes(4)
    assert data[8:] == struct.pack("<QQ", 7, 8)


def test_dict_of_variants_layout() -> None:
    data = dbus.marshal("a{sv}", [{"A": Variant("u", 7)}])
    assert data == (
        b"\x10\x00\x00\x00"  # 16 bytes of entries, from offset 8 to 24
        + bytes(4)  # dict entries align to 8
        + b"\x01\x00\x00\x00A\x00"  # key "A" (offsets 8..14)
        + b"\x01u\x00"  # variant signature "u" (14..17)
        + bytes(3)  # the uint32 aligns to 20
        + b"\x07\x00\x00\x00"
    )


def test_basic_types_layout() -> None:
    assert dbus.marshal("b", [True]) == b"\x01\x00\x00\x00"
    assert dbus.marshal("n", [-2]) == b"\xfe\xff"
    assert dbus.marshal("yq", [1, 0x0203]) == b"\x01\x00\x03\x02"
    assert dbus.marshal("x", [-1]) == b"\xff" * 8
    assert dbus.marshal("d", [1.0]) == struct.pack("<d", 1.0)
    assert dbus.marshal("s", ["ab"]) == b"\x02\x00\x00\x00ab\x00"
    assert dbus.marshal("o", ["/a"]) == b"\x02\x00\x00\x00/a\x00"
    assert dbus.marshal("g", ["a(sv)"]) == b"\x05a(sv)\x00"
    assert dbus.marshal("v", [Variant("y", 9)]) == b"\x01y\x00\x09"
    assert dbus.marshal("(yy)", [(1, 2)]) == b"\x01\x02"
    assert dbus.marshal("y(y)", [1, (2,)]) == b"\x01" + bytes(7) + b"\x02"


# -- round trips --------------------------------------------------------------------------

START_TRANSIENT_UNIT = (
    "ssa(sv)a(sa(sv))",
    [
        "corral-abc.scope",
        "fail",
        [
            ("Description", Variant("s", "corral container abc")),
            ("Slice", Variant("s", "system.slice")),
            ("PIDs", Variant("au", [1234])),
            ("Delegate", Variant("b", True)),
            ("MemoryMax", Variant("t", 1 << 30)),
            ("CPUQuotaPerSecUSec", Variant("t", 2**64 - 1)),
            ("AllowedCPUs", Variant("ay", [3])),
            ("DeviceAllow", Variant("a(ss)", [("/dev/null", "rwm"), ("char-pts", "rw")])),
        ],
        [],
    ],
)


@pytest.mark.parametrize(
    ("signature", "values"),
    [
        START_TRANSIENT_UNIT,
        ("a{sv}", [{"x": Variant("v", Variant("as", ["a", "b"])), "y": Variant("ai", [])}]),
        ("aa{sa(tt)}", [[{"k": [(1, 2), (3, 4)]}, {}]]),
        (
            "ybnqiuxtdsog",
            [
                255,
                False,
                -3,
                65535,
                -(2**31),
                2**32 - 1,
                -(2**63),
                2**64 - 1,
                -0.5,
                "é",
                "/o/p",
                "a{sv}",
            ],
        ),
        ("(ua(sv))av", [(5, [("a", Variant("(ii)", (1, 2)))]), [Variant("t", 1)]]),
    ],
)
@pytest.mark.parametrize("offset", [0, 8])
def test_round_trip(signature: str, values: list[object], offset: int) -> None:
    data = dbus.marshal(signature, values, offset=offset)
    decoded, end = dbus.unmarshal(signature, bytes(offset) + data, offset)
    assert decoded == values
    assert end == offset + len(data)


def test_whole_message_round_trip_keeps_every_field() -> None:
    message = dbus.Message(
        dbus.SIGNAL,
        serial=77,
        flags=dbus.FLAG_NO_REPLY_EXPECTED,
        path="/org/freedesktop/systemd1",
        interface="org.freedesktop.systemd1.Manager",
        member="JobRemoved",
        sender=":1.5",
        destination=":1.9",
        signature="uoss",
        body=[12, "/org/freedesktop/systemd1/job/12", "corral-abc.scope", "done"],
    )
    decoded = dbus.decode(message.encode())
    for name in dbus.Message.__slots__:
        assert getattr(decoded, name) == getattr(message, name), name


def _big_endian_reply() -> bytes:
    # A METHOD_RETURN in big-endian byte order, built field by field: body "a{sv}" of
    # {"V": <<["a"]>>} (a variant holding a variant holding an array of strings).
    body = (
        b"\x00\x00\x00\x1a"  # the one entry spans offsets 8 to 34: 26 bytes
        + bytes(4)
        + b"\x00\x00\x00\x01V\x00"  # key (8..14)
        + b"\x01v\x00"  # outer variant signature "v" (14..17)
        + b"\x02as\x00"  # inner variant signature "as" (17..21)
        + bytes(3)  # the array's length aligns to 24
        + b"\x00\x00\x00\x06"  # 6 bytes of strings (28..34)
        + b"\x00\x00\x00\x01a\x00"
    )
    fields = (
        b"\x05\x01u\x00" + b"\x00\x00\x00\x03"  # REPLY_SERIAL 3 (16..24)
        b"\x08\x01g\x00" + b"\x05a{sv}\x00"  # SIGNATURE (24..35)
    )
    head = b"B\x02\x00\x01" + struct.pack(">III", len(body), 9, len(fields)) + fields
    return head + bytes(-len(head) % 8) + body


def test_big_endian_reply_with_nested_variants() -> None:
    message = dbus.decode(_big_endian_reply())
    assert message.type == dbus.METHOD_RETURN
    assert message.reply_serial == 3
    assert message.serial == 9
    assert message.body == [{"V": Variant("v", Variant("as", ["a"]))}]


def test_message_length_reads_the_fixed_header() -> None:
    data = _big_endian_reply()
    assert dbus.message_length(data[:16]) == len(data)


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize("signature", ["a", "(", "()", "a{vs}", "a{s}", "a{sss}", "z", "(i"])
def test_bad_signatures_are_refused(signature: str) -> None:
    with pytest.raises(dbus.ProtocolError):
        dbus.split_signature(signature)


def test_split_signature() -> None:
    assert dbus.split_signature("sa{sv}(ia(ss))v") == ["s", "a{sv}", "(ia(ss))", "v"]


@pytest.mark.parametrize(
    ("signature", "data"),
    [
        ("b", b"\x02\x00\x00\x00"),  # booleans are 0 or 1
        ("yt", b"\x01\x01" + bytes(6) + bytes(8)),  # non-zero padding
        ("s", b"\x05\x00\x00\x00ab\x00"),  # truncated string
        ("s", b"\x02\x00\x00\x00abX"),  # no NUL terminator
        ("ai", b"\x08\x00\x00\x00\x01\x00\x00\x00"),  # array longer than the data
        ("ai", b"\x03\x00\x00\x00\x01\x00\x00\x00"),  # element overruns the length
        ("v", b"\x02yy\x00\x01\x01"),  # a variant holds one complete type
    ],
)
def test_malformed_data_is_refused(signature: str, data: bytes) -> None:
    with pytest.raises(dbus.ProtocolError):
        dbus.unmarshal(signature, data)


def test_marshal_refuses_wrong_values() -> None:
    with pytest.raises(dbus.ProtocolError):
        dbus.marshal("b", [1])
    with pytest.raises(dbus.ProtocolError):
        dbus.marshal("y", [256])
    with pytest.raises(dbus.ProtocolError):
        dbus.marshal("s", ["a\0b"])
    with pytest.raises(dbus.ProtocolError):
        dbus.marshal("v", ["not a variant"])
    with pytest.raises(dbus.ProtocolError):
        dbus.marshal("ss", ["only one"])


def test_parse_address() -> None:
    assert dbus.parse_address("unix:path=/run/dbus/system_bus_socket") == [
        "/run/dbus/system_bus_socket"
    ]
    assert dbus.parse_address("tcp:host=x,port=1;unix:abstract=a%2cb,guid=00") == [b"\0a,b"]
    assert dbus.parse_address("unix:path=/tmp/a%20b;unix:path=/c") == ["/tmp/a b", "/c"]
    with pytest.raises(dbus.DBusError):
        dbus.parse_address("unix:path=/tmp/%zz")


def test_system_bus_address_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SYSTEM_BUS_ADDRESS", raising=False)
    assert dbus.system_bus_address() == "unix:path=/var/run/dbus/system_bus_socket"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/tmp/x")
    assert dbus.system_bus_address() == "unix:path=/tmp/x"


# -- the connection, against a hand-written peer ------------------------------------------


class _Peer:
    """The far end of a socketpair: checks the SASL exchange, then plays a script."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.received: list[dbus.Message] = []

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def read_message(self) -> dbus.Message:
        while len(self.buffer) < 16 or len(self.buffer) < dbus.message_length(self.buffer[:16]):
            self.buffer += self.sock.recv(4096)
        total = dbus.message_length(self.buffer[:16])
        data, self.buffer = self.buffer[:total], self.buffer[total:]
        message = dbus.decode(data)
        self.received.append(message)
        return message


def _serve(peer: _Peer, replies: list[bytes]) -> None:
    uid = str(os.geteuid()).encode().hex().encode()
    assert peer.read_line() == b"\0AUTH EXTERNAL " + uid
    peer.sock.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
    assert peer.read_line() == b"BEGIN"
    call = peer.read_message()
    for reply in replies:
        peer.sock.sendall(reply.replace(b"@SERIAL@", struct.pack("<I", call.serial)))


def _signal(serial: int, job: int, result: str) -> bytes:
    return dbus.Message(
        dbus.SIGNAL,
        serial=serial,
        path="/org/freedesktop/systemd1",
        interface="org.freedesktop.systemd1.Manager",
        member="JobRemoved",
        signature="uoss",
        body=[job, f"/org/freedesktop/systemd1/job/{job}", "u.scope", result],
    ).encode()


def _run_with_peer(replies: list[bytes]) -> tuple[dbus.Connection, _Peer, threading.Thread]:
    ours, theirs = socket.socketpair()
    peer = _Peer(theirs)
    thread = threading.Thread(target=_serve, args=(peer, replies), daemon=True)
    thread.start()
    conn = dbus.Connection(ours)
    conn._authenticate()
    return conn, peer, thread


def _reply(
    kind: int, serial: int, signature: str, body: list[object], error_name: str | None = None
) -> bytes:
    # reply_serial is patched in by the peer once it knows the call's serial.
    message = dbus.Message(kind, serial=serial, reply_serial=0x40404040, signature=signature,
                           body=body, error_name=error_name)  # fmt: skip
    data = message.encode()
    return data.replace(struct.pack("<I", 0x40404040), b"@SERIAL@")


def test_call_returns_the_reply_and_queues_signals_that_come_first() -> None:
    conn, peer, thread = _run_with_peer(
        [
            _signal(1, 7, "done"),
            _reply(dbus.METHOD_RETURN, 2, "o", ["/org/freedesktop/systemd1/job/8"]),
            _signal(3, 8, "done"),
        ]
    )
    with conn:
        result = conn.call(
            "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager", "StartTransientUnit", *START_TRANSIENT_UNIT,
        )  # fmt: skip
        assert result == ["/org/freedesktop/systemd1/job/8"]
        thread.join(5)
        call = peer.received[0]
        assert call.member == "StartTransientUnit"
        assert call.signature == START_TRANSIENT_UNIT[0]
        assert call.body == START_TRANSIENT_UNIT[1]
        # The signal for job 8 arrives after the reply; the one for job 7 was queued.
        late = conn.wait_signal(lambda m: m.body[1].endswith("/8"), timeout=5)
        assert late.body[3] == "done"
        early = conn.wait_signal(lambda m: m.body[0] == 7, timeout=5)
        assert early.serial == 1


def test_error_reply_raises_with_its_name_and_text() -> None:
    conn, _peer, thread = _run_with_peer(
        [
            _reply(
                dbus.ERROR,
                5,
                "s",
                ["Unit u.scope already exists."],
                error_name="org.freedesktop.systemd1.UnitExists",
            ),
        ]
    )
    with conn, pytest.raises(dbus.DBusError) as info:
        conn.call("a.b", "/", "a.b", "M")
    thread.join(5)
    assert info.value.name == "org.freedesktop.systemd1.UnitExists"
    assert info.value.text == "Unit u.scope already exists."


def test_wait_signal_times_out() -> None:
    conn, _peer, thread = _run_with_peer([_reply(dbus.METHOD_RETURN, 2, "", [])])
    with conn:
        assert conn.call("a.b", "/", "a.b", "M") == []
        thread.join(5)
        with pytest.raises(dbus.DBusError, match="no answer"):
            conn.wait_signal(lambda m: True, timeout=0.2)


def test_authentication_refused() -> None:
    ours, theirs = socket.socketpair()

    def refuse() -> None:
        theirs.recv(4096)
        theirs.sendall(b"REJECTED EXTERNAL\r\n")

    thread = threading.Thread(target=refuse, daemon=True)
    thread.start()
    conn = dbus.Connection(ours)
    with conn, pytest.raises(dbus.DBusError, match="SASL EXTERNAL refused"):
        conn._authenticate()
    thread.join(5)
    theirs.close()
