"""A minimal D-Bus client: the wire format, SASL EXTERNAL, method calls and signals.

corral talks to exactly one peer over D-Bus, systemd's ``org.freedesktop.systemd1``
(the systemd cgroup driver), so this module holds only what that needs, written from
the D-Bus specification (https://dbus.freedesktop.org/doc/dbus-specification.html):

* Marshalling is signature-directed. :func:`marshal` writes values for a signature,
  :func:`unmarshal` reads them back. Python values map as: ``y n q i u x t h`` ints,
  ``b`` bool, ``d`` float, ``s o g`` str, ``a`` list (``a{..}`` a dict), ``(..)``
  tuple, ``v`` :class:`Variant`. Every value starts at a multiple of its type's
  alignment counted from the start of the message ("Marshaling (Wire Format)"); the
  body starts 8-aligned, so a body may be marshalled from offset 0. Outgoing messages
  are little-endian; incoming ones may be either byte order.
* :class:`Message` is one message: the 12-byte fixed header, the ``a(yv)`` header
  fields padded to 8, then the body.
* :class:`Connection` connects to a bus address (``unix:path=`` or
  ``unix:abstract=``), authenticates with SASL EXTERNAL (the server reads our uid
  with SO_PEERCRED; we send it hex-encoded), says ``Hello`` to a bus daemon, and sends
  calls, waiting for the reply with the matching ``REPLY_SERIAL``. Signals that arrive
  meanwhile are queued for :meth:`Connection.wait_signal` (subscribe first with
  :meth:`Connection.add_match`).
"""

from __future__ import annotations

import _socket  # socket.py builds IntEnums on import (~5 ms); the C module is enough
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

# The system bus when DBUS_SYSTEM_BUS_ADDRESS is unset ("Well-known Message Bus
# Instances" in the specification).
DEFAULT_SYSTEM_BUS = "unix:path=/var/run/dbus/system_bus_socket"

METHOD_CALL = 1
METHOD_RETURN = 2
ERROR = 3
SIGNAL = 4

FLAG_NO_REPLY_EXPECTED = 0x1

# Header field codes ("Header Fields" table) and the type each one must carry.
FIELD_PATH = 1
FIELD_INTERFACE = 2
FIELD_MEMBER = 3
FIELD_ERROR_NAME = 4
FIELD_REPLY_SERIAL = 5
FIELD_DESTINATION = 6
FIELD_SENDER = 7
FIELD_SIGNATURE = 8
FIELD_UNIX_FDS = 9
_FIELD_TYPES = {1: "o", 2: "s", 3: "s", 4: "s", 5: "u", 6: "s", 7: "s", 8: "g", 9: "u"}

# Alignment of each type code (the "Summary of types" table): structs and dict
# entries align to 8 whatever they hold, arrays to 4 (their length), variants and
# signatures to 1.
_ALIGN = {
    "y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8,
    "h": 4, "s": 4, "o": 4, "g": 1, "a": 4, "(": 8, "{": 8, "v": 1,
}  # fmt: skip
# struct formats of the fixed-size types; BOOLEAN is a UINT32 that must be 0 or 1.
_FIXED = {"y": "B", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q", "d": "d", "h": "I"}
_BASIC = frozenset("ybnqiuxtdhsog")

# Limits from the specification: arrays hold at most 64 MiB, a message at most
# 128 MiB, a signature 255 bytes, 32 levels each of array and struct nesting.
_MAX_ARRAY = 1 << 26
_MAX_MESSAGE = 1 << 27
_MAX_SIGNATURE = 255
_MAX_DEPTH = 32


class DBusError(Exception):
    """An ERROR reply (``name`` is the D-Bus error name) or a transport failure."""

    def __init__(self, name: str, text: str = "") -> None:
        self.name = name
        self.text = text
        super().__init__(f"{name}: {text}" if text else name)


class ProtocolError(DBusError):
    """Bytes that break the wire format, or a signature that is not valid."""

    def __init__(self, text: str) -> None:
        super().__init__("corral.ProtocolError", text)


class Variant:
    """A ``v`` value: a single complete type and a value of that type."""

    __slots__ = ("signature", "value")

    def __init__(self, signature: str, value: Any) -> None:
        self.signature = signature
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Variant):
            return NotImplemented
        return self.signature == other.signature and self.value == other.value

    def __hash__(self) -> int:
        return hash((self.signature, repr(self.value)))

    def __repr__(self) -> str:
        return f"Variant({self.signature!r}, {self.value!r})"


# -- signatures ---------------------------------------------------------------------------


def _type_end(sig: str, start: int, arrays: int = 0, structs: int = 0) -> int:
    """The index just after the single complete type that starts at ``sig[start]``."""
    if start >= len(sig):
        raise ProtocolError(f"signature {sig!r} ends inside a type")
    code = sig[start]
    if code in _BASIC or code == "v":
        return start + 1
    if code == "a":
        if arrays >= _MAX_DEPTH:
            raise ProtocolError(f"signature {sig!r} nests arrays deeper than 32")
        if sig.startswith("{", start + 1):
            # A dict entry exists only as an array's element: a basic key, one value.
            key = start + 2
            if key >= len(sig) or sig[key] not in _BASIC:
                raise ProtocolError(f"signature {sig!r}: a dict key must be a basic type")
            end = _type_end(sig, key + 1, arrays + 1, structs + 1)
            if not sig.startswith("}", end):
                raise ProtocolError(f"signature {sig!r}: a dict entry holds two types")
            return end + 1
        return _type_end(sig, start + 1, arrays + 1, structs)
    if code == "(":
        if structs >= _MAX_DEPTH:
            raise ProtocolError(f"signature {sig!r} nests structs deeper than 32")
        pos = start + 1
        if sig.startswith(")", pos):
            raise ProtocolError(f"signature {sig!r} has an empty struct")
        while not sig.startswith(")", pos):
            pos = _type_end(sig, pos, arrays, structs + 1)
        return pos + 1
    raise ProtocolError(f"signature {sig!r}: unexpected {code!r}")


def split_signature(sig: str) -> list[str]:
    """The complete types of a signature, e.g. ``"sa{sv}(ii)"`` -> ``["s", "a{sv}", "(ii)"]``."""
    if len(sig.encode()) > _MAX_SIGNATURE:
        raise ProtocolError("signature longer than 255 bytes")
    types = []
    pos = 0
    while pos < len(sig):
        end = _type_end(sig, pos)
        types.append(sig[pos:end])
        pos = end
    return types


def _struct_members(sig: str) -> list[str]:
    return split_signature(sig[1:-1])


# -- marshalling --------------------------------------------------------------------------


def _pad(buf: bytearray, base: int, align: int) -> None:
    buf.extend(bytes(-(base + len(buf)) % align))


def _put(buf: bytearray, base: int, sig: str, value: Any) -> None:
    code = sig[0]
    fmt = _FIXED.get(code)
    if fmt is not None:
        _pad(buf, base, _ALIGN[code])
        try:
            buf += struct.pack("<" + fmt, value)
        except struct.error as exc:
            raise ProtocolError(f"{value!r} is not a valid {code!r} value: {exc}") from None
    elif code == "b":
        if not isinstance(value, bool):
            raise ProtocolError(f"{value!r} is not a boolean")
        _pad(buf, base, 4)
        buf += struct.pack("<I", int(value))
    elif code in "so":
        data = value.encode()
        if b"\0" in data:
            raise ProtocolError(f"{value!r}: strings may not contain NUL")
        _pad(buf, base, 4)
        buf += struct.pack("<I", len(data)) + data + b"\0"
    elif code == "g":
        data = value.encode("ascii")
        split_signature(value)
        buf += struct.pack("<B", len(data)) + data + b"\0"
    elif code == "v":
        if not isinstance(value, Variant):
            raise ProtocolError(f"{value!r} is not a Variant")
        if len(split_signature(value.signature)) != 1:
            raise ProtocolError(f"variant signature {value.signature!r} is not one type")
        _put(buf, base, "g", value.signature)
        _put(buf, base, value.signature, value.value)
    elif code == "(":
        members = _struct_members(sig)
        if len(members) != len(value):
            raise ProtocolError(f"struct {sig} needs {len(members)} values, not {len(value)}")
        _pad(buf, base, 8)
        for member, item in zip(members, value, strict=True):
            _put(buf, base, member, item)
    elif code == "a":
        element = sig[1:]
        _pad(buf, base, 4)
        at = len(buf)
        buf += b"\0\0\0\0"
        # The length counts the elements only, not the padding that aligns the first one,
        # and that padding is there even when the array is empty.
        _pad(buf, base, _ALIGN[element[0]])
        start = len(buf)
        items = value.items() if isinstance(value, dict) else value
        for item in items:
            _put(buf, base, element, item)
        length = len(buf) - start
        if length > _MAX_ARRAY:
            raise ProtocolError("array longer than 64 MiB")
        struct.pack_into("<I", buf, at, length)
    elif code == "{":
        key_sig, value_sig = split_signature(sig[1:-1])
        _pad(buf, base, 8)
        _put(buf, base, key_sig, value[0])
        _put(buf, base, value_sig, value[1])
    else:  # pragma: no cover - split_signature rejects every other code
        raise ProtocolError(f"unknown type code {code!r}")


def marshal(signature: str, values: Sequence[Any], offset: int = 0) -> bytes:
    """The wire bytes of ``values`` for ``signature``, as if written at ``offset``."""
    types = split_signature(signature)
    if len(types) != len(values):
        raise ProtocolError(f"signature {signature!r} needs {len(types)} values, not {len(values)}")
    buf = bytearray()
    for sig, value in zip(types, values, strict=True):
        _put(buf, offset, sig, value)
    return bytes(buf)


# -- unmarshalling ------------------------------------------------------------------------


class _Reader:
    """Reads values from ``data``; positions are offsets from the message's start."""

    __slots__ = ("data", "order", "pos")

    def __init__(self, data: bytes, order: str, pos: int = 0) -> None:
        self.data = data
        self.order = order
        self.pos = pos

    def align(self, align: int) -> None:
        end = self.pos + (-self.pos % align)
        if end > len(self.data):
            raise ProtocolError("message ends inside padding")
        if any(self.data[self.pos : end]):
            raise ProtocolError(f"non-zero padding at offset {self.pos}")
        self.pos = end

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise ProtocolError("message ends inside a value")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(self.order + fmt, self.take(struct.calcsize(fmt)))[0]

    def text(self, size: int) -> str:
        raw = self.take(size + 1)
        if raw[-1] != 0 or 0 in raw[:-1]:
            raise ProtocolError("string not terminated by a single NUL")
        try:
            return raw[:-1].decode()
        except UnicodeDecodeError:
            raise ProtocolError("string is not UTF-8") from None

    def get(self, sig: str, depth: int = 0) -> Any:
        if depth > 64:
            raise ProtocolError("values nested deeper than 64")
        code = sig[0]
        fmt = _FIXED.get(code)
        if fmt is not None:
            self.align(_ALIGN[code])
            return self.unpack(fmt)
        if code == "b":
            self.align(4)
            flag = self.unpack("I")
            if flag > 1:
                raise ProtocolError(f"boolean value {flag}")
            return flag == 1
        if code in "so":
            self.align(4)
            return self.text(self.unpack("I"))
        if code == "g":
            text = self.text(self.unpack("B"))
            split_signature(text)
            return text
        if code == "v":
            inner = self.get("g")
            if len(split_signature(inner)) != 1:
                raise ProtocolError(f"variant signature {inner!r} is not one type")
            return Variant(inner, self.get(inner, depth + 1))
        if code == "(":
            self.align(8)
            return tuple(self.get(member, depth + 1) for member in _struct_members(sig))
        if code == "a":
            self.align(4)
            length = self.unpack("I")
            if length > _MAX_ARRAY:
                raise ProtocolError("array longer than 64 MiB")
            element = sig[1:]
            self.align(_ALIGN[element[0]])
            end = self.pos + length
            if end > len(self.data):
                raise ProtocolError("message ends inside an array")
            items = []
            while self.pos < end:
                items.append(self.get(element, depth + 1))
            if self.pos != end:
                raise ProtocolError("array elements overrun the array's length")
            return dict(items) if element[0] == "{" else items
        if code == "{":
            self.align(8)
            key_sig, value_sig = split_signature(sig[1:-1])
            return (self.get(key_sig, depth + 1), self.get(value_sig, depth + 1))
        raise ProtocolError(f"unknown type code {code!r}")  # pragma: no cover


def unmarshal(
    signature: str, data: bytes, offset: int = 0, *, big_endian: bool = False
) -> tuple[list[Any], int]:
    """The values of ``signature`` read from ``data[offset:]``, and the offset after them."""
    reader = _Reader(data, ">" if big_endian else "<", offset)
    values = [reader.get(sig) for sig in split_signature(signature)]
    return values, reader.pos


# -- messages -----------------------------------------------------------------------------


class Message:
    """One D-Bus message: type, flags, serial, the header fields, and the body's values."""

    __slots__ = (
        "body",
        "destination",
        "error_name",
        "flags",
        "interface",
        "member",
        "path",
        "reply_serial",
        "sender",
        "serial",
        "signature",
        "type",
    )

    def __init__(
        self,
        type: int,
        *,
        serial: int = 0,
        flags: int = 0,
        path: str | None = None,
        interface: str | None = None,
        member: str | None = None,
        error_name: str | None = None,
        reply_serial: int | None = None,
        destination: str | None = None,
        sender: str | None = None,
        signature: str = "",
        body: Sequence[Any] = (),
    ) -> None:
        self.type = type
        self.serial = serial
        self.flags = flags
        self.path = path
        self.interface = interface
        self.member = member
        self.error_name = error_name
        self.reply_serial = reply_serial
        self.destination = destination
        self.sender = sender
        self.signature = signature
        self.body = list(body)

    def fields(self) -> list[tuple[int, Variant]]:
        """The header fields present, in code order, as ``a(yv)`` items."""
        values = (
            (FIELD_PATH, self.path),
            (FIELD_INTERFACE, self.interface),
            (FIELD_MEMBER, self.member),
            (FIELD_ERROR_NAME, self.error_name),
            (FIELD_REPLY_SERIAL, self.reply_serial),
            (FIELD_DESTINATION, self.destination),
            (FIELD_SENDER, self.sender),
            (FIELD_SIGNATURE, self.signature or None),
        )
        return [(code, Variant(_FIELD_TYPES[code], v)) for code, v in values if v is not None]

    def encode(self) -> bytes:
        """The message's bytes, little-endian."""
        if self.serial == 0:
            raise ProtocolError("a message's serial may not be 0")
        body = marshal(self.signature, self.body)
        head = bytearray(
            struct.pack("<cBBBII", b"l", self.type, self.flags, 1, len(body), self.serial)
        )
        _put(head, 0, "a(yv)", self.fields())
        _pad(head, 0, 8)
        if len(head) + len(body) > _MAX_MESSAGE:
            raise ProtocolError("message longer than 128 MiB")
        return bytes(head) + body


def message_length(prefix: bytes) -> int:
    """The total length of the message whose first 16 bytes are ``prefix``."""
    order = {0x6C: "<", 0x42: ">"}.get(prefix[0])
    if order is None:
        raise ProtocolError(f"unknown byte order mark {prefix[:1]!r}")
    body_length, _serial, fields_length = struct.unpack(order + "III", prefix[4:16])
    header = 16 + fields_length + (-(16 + fields_length) % 8)
    total = header + body_length
    if total > _MAX_MESSAGE:
        raise ProtocolError("message longer than 128 MiB")
    return int(total)


def decode(data: bytes) -> Message:
    """The :class:`Message` in ``data`` (exactly one whole message)."""
    if len(data) < 16 or message_length(data[:16]) != len(data):
        raise ProtocolError("truncated message")
    big = data[0] == 0x42
    order = ">" if big else "<"
    type_, flags, version, body_length, serial = struct.unpack(order + "xBBBII", data[:12])
    if version != 1:
        raise ProtocolError(f"protocol version {version}")
    if serial == 0:
        raise ProtocolError("a message's serial may not be 0")
    (raw_fields,), pos = unmarshal("a(yv)", data, 12, big_endian=big)
    message = Message(type_, serial=serial, flags=flags)
    names = {
        FIELD_PATH: "path",
        FIELD_INTERFACE: "interface",
        FIELD_MEMBER: "member",
        FIELD_ERROR_NAME: "error_name",
        FIELD_REPLY_SERIAL: "reply_serial",
        FIELD_DESTINATION: "destination",
        FIELD_SENDER: "sender",
        FIELD_SIGNATURE: "signature",
    }
    for code, variant in raw_fields:
        expected = _FIELD_TYPES.get(code)
        if expected is None:
            continue  # unknown fields must be ignored
        if variant.signature != expected:
            raise ProtocolError(f"header field {code} has type {variant.signature!r}")
        if code in names:
            setattr(message, names[code], variant.value)
        elif variant.value:
            raise ProtocolError("messages carrying unix fds are not supported")
    reader = _Reader(data, order, pos)
    reader.align(8)
    body_start = reader.pos
    message.body, end = unmarshal(message.signature, data, body_start, big_endian=big)
    if end != body_start + body_length:
        raise ProtocolError("body length does not match its signature")
    return message


# -- the connection -----------------------------------------------------------------------


def parse_address(address: str) -> list[str | bytes]:
    """The socket addresses of a D-Bus address list, in order (``unix:`` only).

    ``unix:path=/p`` gives ``"/p"``; ``unix:abstract=n`` gives ``b"\\0n"`` (Linux's
    abstract namespace). Values are %-escaped ("Server Addresses").
    """
    targets: list[str | bytes] = []
    for entry in address.split(";"):
        transport, _, params = entry.partition(":")
        if transport != "unix":
            continue
        keys = dict(part.partition("=")[::2] for part in params.split(",") if part)
        if "path" in keys:
            targets.append(os.fsdecode(_unescape(keys["path"])))
        elif "abstract" in keys:
            targets.append(b"\0" + _unescape(keys["abstract"]))
    return targets


def _unescape(value: str) -> bytes:
    """Undo the address syntax's %XX escapes (urllib.parse would import ``re``)."""
    parts = value.encode().split(b"%")
    out = bytearray(parts[0])
    for part in parts[1:]:
        try:
            out += bytes.fromhex(part[:2].decode()) + part[2:]
        except ValueError:
            raise DBusError(
                "corral.BadAddress", f"bad %-escape in D-Bus address {value!r}"
            ) from None
    return bytes(out)


def system_bus_address() -> str:
    """DBUS_SYSTEM_BUS_ADDRESS when set, else the well-known system bus socket."""
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS


class Connection:
    """An authenticated connection to a bus (or to a peer such as systemd's private socket)."""

    __slots__ = ("_buffer", "_queue", "_serial", "_sock", "unique_name")

    def __init__(self, sock: _socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._queue: list[Message] = []
        self._serial = 0
        self.unique_name = ""

    @classmethod
    def open(cls, address: str, *, bus: bool = True, timeout: float = 10.0) -> Connection:
        """Connect to the first reachable socket of ``address``, authenticate, and (on a
        bus) call ``Hello``; ``bus=False`` is for a peer that is not a bus daemon."""
        targets = parse_address(address)
        if not targets:
            raise DBusError("corral.NoAddress", f"no unix socket in D-Bus address {address!r}")
        failure: OSError | None = None
        for target in targets:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
            sock.settimeout(timeout)
            try:
                sock.connect(target)
            except OSError as exc:
                sock.close()
                failure = exc
                continue
            conn = cls(sock)
            try:
                conn._authenticate()
                if bus:
                    (conn.unique_name,) = conn.call(
                        "org.freedesktop.DBus", "/org/freedesktop/DBus",
                        "org.freedesktop.DBus", "Hello", timeout=timeout,
                    )  # fmt: skip
            except BaseException:
                conn.close()
                raise
            return conn
        raise DBusError("corral.NoServer", f"cannot connect to {address}: {failure}")

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _authenticate(self) -> None:
        # The spec's SASL profile: one NUL byte first, then line commands. EXTERNAL's
        # initial response is our uid as decimal text, hex-encoded; the server checks it
        # against the socket's SO_PEERCRED.
        uid_hex = str(os.geteuid()).encode().hex().encode()
        self._sock.sendall(b"\0AUTH EXTERNAL " + uid_hex + b"\r\n")
        line = self._read_line()
        if not line.startswith(b"OK "):
            raise DBusError(
                "corral.AuthFailed", f"SASL EXTERNAL refused: {line.decode(errors='replace')}"
            )
        self._sock.sendall(b"BEGIN\r\n")

    def _read_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._fill()
            if len(self._buffer) > 16384:
                raise ProtocolError("SASL line too long")
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def _fill(self) -> None:
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:
            raise DBusError("corral.Timeout", "no answer on the D-Bus connection") from None
        if not chunk:
            raise DBusError("corral.Disconnected", "the D-Bus peer closed the connection")
        self._buffer += chunk

    def _read_message(self, deadline: float) -> Message:
        import time

        while True:
            if len(self._buffer) >= 16:
                total = message_length(self._buffer[:16])
                if len(self._buffer) >= total:
                    data, self._buffer = self._buffer[:total], self._buffer[total:]
                    return decode(data)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DBusError("corral.Timeout", "no answer on the D-Bus connection")
            self._sock.settimeout(remaining)
            self._fill()

    def send(self, message: Message) -> int:
        """Send ``message`` with the next serial; return that serial."""
        self._serial += 1
        message.serial = self._serial
        self._sock.sendall(message.encode())
        return self._serial

    def call(
        self,
        destination: str | None,
        path: str,
        interface: str | None,
        member: str,
        signature: str = "",
        args: Sequence[Any] = (),
        *,
        timeout: float = 25.0,
    ) -> list[Any]:
        """Call a method and return the reply's values; an ERROR reply raises DBusError."""
        import time

        deadline = time.monotonic() + timeout
        serial = self.send(
            Message(
                METHOD_CALL, path=path, interface=interface, member=member,
                destination=destination, signature=signature, body=args,
            )
        )  # fmt: skip
        while True:
            message = self._read_message(deadline)
            if message.reply_serial == serial and message.type in (METHOD_RETURN, ERROR):
                if message.type == ERROR:
                    text = message.body[0] if message.signature.startswith("s") else ""
                    raise DBusError(message.error_name or "", str(text))
                return message.body
            self._dispatch(message)

    def _dispatch(self, message: Message) -> None:
        if message.type == SIGNAL:
            self._queue.append(message)
        elif message.type == METHOD_CALL and not message.flags & FLAG_NO_REPLY_EXPECTED:
            # We export no objects; a caller gets an error instead of waiting forever.
            self.send(
                Message(
                    ERROR, error_name="org.freedesktop.DBus.Error.UnknownMethod",
                    reply_serial=message.serial, destination=message.sender,
                    signature="s", body=[f"corral exports no method {message.member}"],
                )
            )  # fmt: skip

    def add_match(self, rule: str) -> None:
        """Ask the bus daemon to route the signals that ``rule`` matches to us."""
        self.call(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
            "AddMatch", "s", [rule],
        )  # fmt: skip

    def wait_signal(self, accept: Callable[[Message], bool], timeout: float) -> Message:
        """The first signal (queued or arriving) that ``accept`` takes; DBusError on timeout."""
        import time

        for index, message in enumerate(self._queue):
            if accept(message):
                del self._queue[index]
                return message
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.type == SIGNAL and accept(message):
                return message
            self._dispatch(message)
