"""The ``freebsd`` section of ``config.json`` as typed records.

:func:`parse_freebsd` reads the section with :class:`~corral.spec.reader.Fields`, so a
wrong value is reported under its JSON path (``freebsd.jail.ip4: "maybe" is not one of
"new", "inherit", "disable"``). It checks each field on its own: enums
(config-freebsd.md, defs-freebsd.json), ranges, the shape of device paths, interface
names and IP addresses. Checks that involve several fields, or the rest of the config,
live in :func:`corral.freebsd.params.check_freebsd`.

Optional booleans and modes stay ``None`` when the config leaves them out: "unset" means
"the kernel's default", which is not always what ``false`` would mean (jail(8):
``allow.set_hostname`` is on by default).

IP addresses are parsed here by :func:`pack_ip4` and :func:`pack_ip6` into the bytes the
kernel takes (``struct in_addr`` / ``struct in6_addr``, network byte order), rather than
with ``ipaddress`` or ``socket.inet_pton`` (2.5 and 4.7 ms to import, measured with
``-X importtime``): the same functions encode ``ip4.addr`` / ``ip6.addr`` for
jail_set(2), and the tests hold them to inet_pton's answers.
"""

from __future__ import annotations

from corral.errors import ConfigError
from corral.spec.reader import Fields, describe, join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    _Packer = Callable[[str], bytes | None]

SHARING_MODES = ("new", "inherit", "disable")  # defs-freebsd.json SharingMode
SHARING_MODES_NO_DISABLE = ("new", "inherit")  # defs-freebsd.json SharingModeNoDisable
MAX_FILE_MODE = 0o777  # defs.json FileMode: 0..511
IFNAMSIZ = 16  # <net/if.h>: interface names are at most 15 bytes and a NUL


class FreeBSDDevice:
    """One entry of ``freebsd.devices``: a device under ``/dev`` to expose."""

    __slots__ = ("mode", "path")

    def __init__(self, path: str, mode: int | None) -> None:
        self.path = path  # relative to /dev, no "." or ".." components
        self.mode = mode


class JailAllow:
    """``freebsd.jail.allow``; every boolean is ``None`` when unset."""

    __slots__ = (
        "chflags",
        "mlock",
        "mount",
        "quotas",
        "raw_sockets",
        "reserved_ports",
        "set_hostname",
        "socket_af",
        "suser",
    )

    def __init__(
        self,
        *,
        set_hostname: bool | None = None,
        raw_sockets: bool | None = None,
        chflags: bool | None = None,
        mount: list[str] | None = None,
        quotas: bool | None = None,
        socket_af: bool | None = None,
        mlock: bool | None = None,
        reserved_ports: bool | None = None,
        suser: bool | None = None,
    ) -> None:
        self.set_hostname = set_hostname
        self.raw_sockets = raw_sockets
        self.chflags = chflags
        self.mount: list[str] = [] if mount is None else mount
        self.quotas = quotas
        self.socket_af = socket_af
        self.mlock = mlock
        self.reserved_ports = reserved_ports
        self.suser = suser


class Jail:
    """``freebsd.jail``. Modes are ``None`` when unset; address lists keep their order
    (the first IPv4 address is the jail's source address, jail(8))."""

    __slots__ = (
        "allow",
        "enforce_statfs",
        "host",
        "interface",
        "ip4",
        "ip4_addr",
        "ip6",
        "ip6_addr",
        "parent",
        "sysvmsg",
        "sysvsem",
        "sysvshm",
        "vnet",
        "vnet_interfaces",
    )

    def __init__(
        self,
        *,
        parent: str | None = None,
        host: str | None = None,
        ip4: str | None = None,
        ip4_addr: list[str] | None = None,
        ip6: str | None = None,
        ip6_addr: list[str] | None = None,
        vnet: str | None = None,
        interface: str | None = None,
        vnet_interfaces: list[str] | None = None,
        sysvmsg: str | None = None,
        sysvsem: str | None = None,
        sysvshm: str | None = None,
        enforce_statfs: int | None = None,
        allow: JailAllow | None = None,
    ) -> None:
        self.parent = parent
        self.host = host
        self.ip4 = ip4
        self.ip4_addr: list[str] = [] if ip4_addr is None else ip4_addr
        self.ip6 = ip6
        self.ip6_addr: list[str] = [] if ip6_addr is None else ip6_addr
        self.vnet = vnet
        self.interface = interface
        self.vnet_interfaces: list[str] = [] if vnet_interfaces is None else vnet_interfaces
        self.sysvmsg = sysvmsg
        self.sysvsem = sysvsem
        self.sysvshm = sysvshm
        self.enforce_statfs = enforce_statfs
        self.allow = JailAllow() if allow is None else allow


class FreeBSD:
    """The ``freebsd`` section."""

    __slots__ = ("devices", "jail")

    def __init__(self, devices: list[FreeBSDDevice], jail: Jail | None) -> None:
        self.devices = devices
        self.jail = jail


def parse_freebsd(fields: Fields | None) -> FreeBSD | None:
    """Validate the ``freebsd`` section (``None`` when the config has none)."""
    if fields is None:
        return None
    devices = _devices(fields)
    jail_fields = fields.obj("jail")
    return FreeBSD(devices, None if jail_fields is None else _jail(jail_fields))


# -- devices ---------------------------------------------------------------------------


def _devices(fields: Fields) -> list[FreeBSDDevice]:
    devices: list[FreeBSDDevice] = []
    seen: set[str] = set()
    for index, item in enumerate(fields.array("devices")):
        entry = Fields(item, join(fields.at("devices"), index))
        path = entry.string("path", required=True)
        _check_device_path(path, entry.at("path"))
        if path in seen:
            raise ConfigError(entry.at("path"), f"device {describe(path)} is given twice")
        seen.add(path)
        mode = entry.integer("mode", minimum=0, maximum=MAX_FILE_MODE)
        devices.append(FreeBSDDevice(path, mode))
    return devices


def _check_device_path(path: str, where: str) -> None:
    # The path is read under the container's /dev: anything that could climb out of it
    # (an absolute path, a ".." component) would expose a host path instead.
    if not path:
        raise ConfigError(where, "must not be empty")
    if "\0" in path:
        raise ConfigError(where, "must not contain a NUL byte")
    if path.startswith("/"):
        raise ConfigError(where, f"{describe(path)} must be relative to /dev")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ConfigError(where, f'{describe(path)} has an empty, "." or ".." component')


# -- jail ------------------------------------------------------------------------------


def _jail(fields: Fields) -> Jail:
    allow_fields = fields.obj("allow")
    return Jail(
        parent=_parent(fields),
        host=_mode(fields, "host", SHARING_MODES_NO_DISABLE),
        ip4=_mode(fields, "ip4", SHARING_MODES),
        ip4_addr=_addresses(fields, "ip4Addr", pack_ip4, "IPv4"),
        ip6=_mode(fields, "ip6", SHARING_MODES),
        ip6_addr=_addresses(fields, "ip6Addr", pack_ip6, "IPv6"),
        vnet=_mode(fields, "vnet", SHARING_MODES_NO_DISABLE),
        interface=_interface(fields),
        vnet_interfaces=_interfaces(fields, "vnetInterfaces"),
        sysvmsg=_mode(fields, "sysvmsg", SHARING_MODES),
        sysvsem=_mode(fields, "sysvsem", SHARING_MODES),
        sysvshm=_mode(fields, "sysvshm", SHARING_MODES),
        enforce_statfs=fields.integer("enforceStatfs", minimum=0, maximum=2),
        allow=None if allow_fields is None else _allow(allow_fields),
    )


def _mode(fields: Fields, key: str, choices: tuple[str, ...]) -> str | None:
    if not fields.has(key):
        return None
    value = fields.string(key)
    if value not in choices:
        listed = ", ".join(f'"{choice}"' for choice in choices)
        raise ConfigError(fields.at(key), f"{describe(value)} is not one of {listed}")
    return value


def _parent(fields: Fields) -> str | None:
    if not fields.has("parent"):
        return None
    parent = fields.string("parent")
    where = fields.at("parent")
    # A jail's full name is its ancestors' names joined by "." (jail(8), "Hierarchical
    # Jails"), so the parent may itself be "a.b", but no component may be empty.
    if not parent:
        raise ConfigError(where, "must not be empty")
    if "\0" in parent:
        raise ConfigError(where, "must not contain a NUL byte")
    if "" in parent.split("."):
        raise ConfigError(where, f"{describe(parent)} is not a jail name")
    return parent


def _check_interface_name(name: str, where: str) -> None:
    if not name:
        raise ConfigError(where, "must not be empty")
    if len(name.encode()) >= IFNAMSIZ:
        raise ConfigError(where, f"{describe(name)} is longer than {IFNAMSIZ - 1} bytes")
    if not name.isascii() or not name.isprintable() or " " in name or "/" in name:
        raise ConfigError(where, f"{describe(name)} is not a network interface name")


def _interface(fields: Fields) -> str | None:
    if not fields.has("interface"):
        return None
    name = fields.string("interface")
    _check_interface_name(name, fields.at("interface"))
    return name


def _interfaces(fields: Fields, key: str) -> list[str]:
    names = fields.strings(key)
    for index, name in enumerate(names):
        where = join(fields.at(key), index)
        _check_interface_name(name, where)
        if name in names[:index]:
            raise ConfigError(where, f"interface {describe(name)} is given twice")
    return names


def _addresses(fields: Fields, key: str, pack: _Packer, family: str) -> list[str]:
    addresses = fields.strings(key)
    packed: list[bytes] = []
    for index, text in enumerate(addresses):
        where = join(fields.at(key), index)
        raw = pack(text)
        if raw is None:
            raise ConfigError(where, f"{describe(text)} is not a numeric {family} address")
        # kern_jail.c refuses these with a bare EINVAL; say which entry and why.
        if raw == bytes(len(raw)):
            raise ConfigError(where, f"{describe(text)} is the unspecified address")
        if raw == b"\xff\xff\xff\xff":
            raise ConfigError(where, f"{describe(text)} is the broadcast address")
        if len(raw) == 16 and raw.startswith(bytes(10) + b"\xff\xff"):
            raise ConfigError(where, f"{describe(text)} is an IPv4-mapped address: use ip4Addr")
        if raw in packed:
            raise ConfigError(where, f"address {describe(text)} is given twice")
        packed.append(raw)
    return addresses


def _allow(fields: Fields) -> JailAllow:
    return JailAllow(
        set_hostname=_optional_bool(fields, "setHostname"),
        raw_sockets=_optional_bool(fields, "rawSockets"),
        chflags=_optional_bool(fields, "chflags"),
        mount=_fstypes(fields),
        quotas=_optional_bool(fields, "quotas"),
        socket_af=_optional_bool(fields, "socketAf"),
        mlock=_optional_bool(fields, "mlock"),
        reserved_ports=_optional_bool(fields, "reservedPorts"),
        suser=_optional_bool(fields, "suser"),
    )


def _optional_bool(fields: Fields, key: str) -> bool | None:
    return fields.boolean(key) if fields.has(key) else None


def _fstypes(fields: Fields) -> list[str]:
    names = fields.strings("mount")
    for index, name in enumerate(names):
        where = join(fields.at("mount"), index)
        # Each type becomes the parameter name "allow.mount.<type>" (jail(8)); a "." or
        # an odd character would name some other parameter or none.
        if not name or not all(c.isascii() and (c.isalnum() or c == "_") for c in name):
            raise ConfigError(where, f"{describe(name)} is not a file system type name")
        if name in names[:index]:
            raise ConfigError(where, f"file system type {describe(name)} is given twice")
    return names


# -- numeric IP addresses (inet_pton(3) rules) ------------------------------------------

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def pack_ip4(text: str) -> bytes | None:
    """``"10.0.0.1"`` -> ``b"\\n\\0\\0\\x01"`` (4 bytes, network order), or None.

    Only the dotted-quad form, as inet_pton(3) takes it: four decimal parts 0-255,
    without leading zeros (inet_aton(3) would read "010" as octal 8).
    """
    parts = text.split(".")
    if len(parts) != 4:
        return None
    octets: list[int] = []
    for part in parts:
        if not part or len(part) > 3 or not (part.isascii() and part.isdigit()):
            return None
        if len(part) > 1 and part[0] == "0":
            return None
        value = int(part)
        if value > 255:
            return None
        octets.append(value)
    return bytes(octets)


def pack_ip6(text: str) -> bytes | None:
    """``"fd10::1"`` -> its 16 bytes (network order), or None.

    RFC 4291 section 2.2 text forms: eight groups of 1-4 hex digits, one ``::`` for a
    run of zero groups, and an optional dotted-quad IPv4 tail. No zone (``%em0``): a
    jail address has none.
    """
    if not text.isascii() or "%" in text:
        return None
    tail = b""
    head = text
    if "." in text:
        # The dotted quad takes the place of the last two groups.
        cut = text.rfind(":")
        quad = pack_ip4(text[cut + 1 :]) if cut >= 0 else None
        if quad is None:
            return None
        tail = quad
        head = text[: cut + 1]
        if not head.endswith("::"):
            head = head[:-1]  # "1:2:3:4:5:6:" -> "1:2:3:4:5:6"; keep a "::"
    want = 8 - len(tail) // 2
    if head.count("::") > 1:
        return None
    if "::" in head:
        left_text, right_text = head.split("::")
        left = left_text.split(":") if left_text else []
        right = right_text.split(":") if right_text else []
        if len(left) + len(right) >= want:
            return None  # "::" must stand for at least one zero group
        groups = [*left, *(["0"] * (want - len(left) - len(right))), *right]
    else:
        groups = head.split(":") if head else []
        if len(groups) != want:
            return None
    packed = bytearray()
    for group in groups:
        if not 1 <= len(group) <= 4 or not _HEX_DIGITS.issuperset(group):
            return None
        packed += int(group, 16).to_bytes(2, "big")
    return bytes(packed) + tail
