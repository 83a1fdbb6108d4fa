"""Which device nodes a container may use: ``linux.resources.devices`` on v1 and v2.

config-linux.md ("Allowed Device list") describes rules in the terms of the v1
devices controller (Documentation/admin-guide/cgroup-v1/devices.rst), applied in
order. That controller keeps a *state*: a default behaviour (allow or deny every
device) and a list of exceptions keyed by (type, major, minor), each with a set of
accesses (security/device_cgroup.c):

* an ``a`` rule (every type, every number, rwm) resets the state: default allow
  (``devices.allow``) or deny (``devices.deny``), no exceptions;
* any other rule that goes against the default adds its accesses to the exception
  with the same key (merging), and one that agrees with the default removes them
  from the exception with the same key, and only from that one;
* with default deny a request (an open asks READ|WRITE together) is allowed only if
  ONE exception matches the device and grants every requested access; with default
  allow it is denied as soon as one exception matches and shares one access.

:class:`DeviceState` is that state machine. :func:`plan_v1_devices` writes a state
to ``devices.deny``/``devices.allow``, and :func:`apply_v2_devices` loads an eBPF
program deciding exactly like it (:mod:`corral.linux.cgroups.bpf`), so a container
gets the same device access on both hierarchies.

Two deliberate departures from the kernel, both towards safety:

* removing an exception the kernel would silently keep because a *wildcard*
  exception still covers it (allow ``c 1:* rwm`` then deny ``c 1:3 rwm``: v1 keeps
  ``/dev/null`` usable) is refused with an error, as runc does: the config asks for
  something the controller cannot express;
* an ``a`` rule naming a number or only some accesses (``{"allow": true, "major":
  10, "access": "r"}``) is that rule for both ``c`` and ``b``, not the kernel's reset
  to "allow everything" (the v1 file API ignores the rest of an ``a`` line).

What a container ends up with (:func:`effective_rules`): deny everything, allow the
nodes of ``linux.devices`` (the config creates them, so they are meant to be used),
apply the config's rules in order, and last allow the standard devices runc allows
(``/dev/null``, ``zero``, ``full``, ``random``, ``urandom``, ``tty``, ``ptmx``,
``pts/*``, ``net/tun`` and mknod of any node). The standard devices come last, as in
runc and crun: configs made by ``runc spec``, containerd and Docker start with "deny
everything", which would otherwise take ``/dev/null`` away. ``linux.devices`` come
before the config's rules, so a rule can narrow them (Docker's ``--device
/dev/sda:/dev/xvdc:r`` is a node plus an ``r`` rule).
"""

from __future__ import annotations

import errno
import os
import struct

from corral.errors import ConfigError
from corral.linux.cgroups.bpf import (
    BPF_DEVCG_ACC_MKNOD,
    BPF_DEVCG_ACC_READ,
    BPF_DEVCG_ACC_WRITE,
    device_program,
)
from corral.spec.reader import Fields, describe, join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Spec

ACCESS_BITS = {"r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE, "m": BPF_DEVCG_ACC_MKNOD}
ALL_ACCESS = BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD
ANY = -1
# The v1 file API writes a wildcard as "*" and stores it as ~0 (a u32), so the
# largest number a rule can name is one less.
MAX_NUMBER = 0xFFFFFFFE

# bpf(2) commands, program and attach types, flags (include/uapi/linux/bpf.h).
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
BPF_F_REPLACE = 4
PROGRAM_NAME = b"corral_devices"  # seen in `bpftool cgroup show`; 15 bytes + NUL at most
LICENSE = b"Apache-2.0\0"  # the program calls no GPL-only helper, so any string will do
_ATTR_SIZE = 128  # more than any field used here; the kernel wants the rest zeroed


def access_string(bits: int) -> str:
    return "".join(letter for letter in "rwm" if bits & ACCESS_BITS[letter])


class DeviceRule:
    """One rule: ``allow`` or deny ``access`` (a subset of "rwm", in that order) to
    devices of ``type`` ("a", "b" or "c") ``major:minor`` (-1 for any)."""

    __slots__ = ("access", "allow", "major", "minor", "type", "where")

    def __init__(
        self,
        allow: bool,
        type: str,
        major: int = ANY,
        minor: int = ANY,
        access: str = "rwm",
        where: str = "",
    ) -> None:
        self.allow = allow
        self.type = type
        self.major = major
        self.minor = minor
        self.access = access
        # The JSON path of the rule, or what added it ("the default device /dev/null").
        self.where = where

    @property
    def access_bits(self) -> int:
        bits = 0
        for letter in self.access:
            bits |= ACCESS_BITS[letter]
        return bits

    def cgroup_string(self) -> str:
        """The rule as the v1 files write it: ``c 1:3 rwm``, ``b 8:* r``."""
        major = "*" if self.major == ANY else str(self.major)
        minor = "*" if self.minor == ANY else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeviceRule):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[bool, str, int, int, str]:
        return (self.allow, self.type, self.major, self.minor, self.access)

    def __repr__(self) -> str:
        verb = "allow" if self.allow else "deny"
        return f"DeviceRule({verb} {self.cgroup_string()})"


def _standard(major: int, minor: int, path: str, access: str = "rwm") -> DeviceRule:
    return DeviceRule(True, "c", major, minor, access, f"the standard device {path}")


# runc 1.1's AllowedDevices (libcontainer/specconv): config-linux.md's default devices,
# the pseudo-terminals, tun, and mknod of anything (creating a node gives no access).
STANDARD_RULES = (
    DeviceRule(True, "c", ANY, ANY, "m", "the standard rule c *:* m"),
    DeviceRule(True, "b", ANY, ANY, "m", "the standard rule b *:* m"),
    _standard(1, 3, "/dev/null"),
    _standard(1, 8, "/dev/random"),
    _standard(1, 7, "/dev/full"),
    _standard(5, 0, "/dev/tty"),
    _standard(1, 5, "/dev/zero"),
    _standard(1, 9, "/dev/urandom"),
    _standard(136, ANY, "/dev/pts/*"),
    _standard(5, 2, "/dev/ptmx"),
    _standard(10, 200, "/dev/net/tun"),
)


# -- config --------------------------------------------------------------------------


def parse_device_rules(
    resources: dict[str, Any] | None, *, where: str = "linux.resources"
) -> list[DeviceRule]:
    """The rules of ``<where>.devices``, checked (pure)."""
    if resources is None:
        return []
    fields = Fields(resources, where)
    rules: list[DeviceRule] = []
    for index, item in enumerate(fields.array("devices")):
        entry = Fields(item, join(fields.at("devices"), index))
        if not entry.has("allow"):
            raise ConfigError(entry.at("allow"), "required field is missing")
        allow = entry.boolean("allow")
        kind = entry.string("type", "a")
        if kind not in ("a", "b", "c"):
            raise ConfigError(entry.at("type"), f"must be a, b or c, not {describe(kind)}")
        major = entry.integer("major", minimum=0, maximum=MAX_NUMBER)
        minor = entry.integer("minor", minimum=0, maximum=MAX_NUMBER)
        access = _access(entry)
        rules.append(
            DeviceRule(
                allow,
                kind,
                ANY if major is None else major,
                ANY if minor is None else minor,
                access,
                entry.path,
            )
        )
    return rules


def _access(entry: Fields) -> str:
    if not entry.has("access"):
        return "rwm"  # unset means everything, like the unset type and numbers
    text = entry.string("access")
    if not text or any(letter not in ACCESS_BITS for letter in text):
        raise ConfigError(
            entry.at("access"), f"must be a combination of r, w and m, not {describe(text)}"
        )
    return "".join(letter for letter in "rwm" if letter in text)


def config_device_rules(spec: Spec) -> list[DeviceRule]:
    """An allow rule for each character or block node of ``linux.devices``."""
    import stat

    from corral.linux.devices import config_devices

    rules = []
    for device in config_devices(spec):
        if device.file_type in (stat.S_IFCHR, stat.S_IFBLK):
            kind = "c" if device.file_type == stat.S_IFCHR else "b"
            rules.append(DeviceRule(True, kind, device.major, device.minor, "rwm", device.where))
    return rules


def effective_rules(
    spec: Spec, resources: dict[str, Any] | None = None, *, where: str = "linux.resources"
) -> list[DeviceRule]:
    """Every rule the container's devices cgroup gets, in order (pure).

    ``resources`` replaces the config's ``linux.resources`` (``update``); without a
    ``devices`` member there, the config's rules stay.
    """
    if resources is None or "devices" not in resources:
        linux = spec.raw.get("linux")
        resources = linux.get("resources") if isinstance(linux, dict) else None
        where = "linux.resources"
    return combine_rules(config_device_rules(spec), resources, where=where)


def combine_rules(
    node_rules: list[DeviceRule],
    resources: dict[str, Any] | None,
    *,
    where: str = "linux.resources",
) -> list[DeviceRule]:
    """The container's rules from the allow rules of its ``linux.devices`` nodes
    (:func:`config_device_rules`, kept in the state record for ``update``) and a
    ``linux.resources`` object's ``devices`` (pure)."""
    rules = [DeviceRule(False, "a", where="the initial deny-all")]
    rules += node_rules
    rules += parse_device_rules(resources, where=where)
    rules += STANDARD_RULES
    return rules


def rules_to_record(rules: list[DeviceRule]) -> list[list[object]]:
    """JSON-able rules: ``[allow, type, major, minor, access, where]`` each."""
    return [[r.allow, r.type, r.major, r.minor, r.access, r.where] for r in rules]


def rules_from_record(doc: object) -> list[DeviceRule]:
    """The rules :func:`rules_to_record` wrote; ValueError if the record is damaged."""
    if not isinstance(doc, list):
        raise ValueError("device rules: not a list")
    rules = []
    for item in doc:
        if not (isinstance(item, list) and len(item) == 6):
            raise ValueError(f"device rules: bad entry {item!r}")
        allow, kind, major, minor, access, where = item
        rules.append(
            DeviceRule(bool(allow), str(kind), int(major), int(minor), str(access), str(where))
        )
    return rules


# -- the v1 controller's state ----------------------------------------------------------


class DeviceState:
    """The v1 devices controller's state: a default and exceptions (type, major, minor)
    -> access bits, changed by rules as security/device_cgroup.c changes it."""

    __slots__ = ("_origins", "default_allow", "exceptions")

    def __init__(self, default_allow: bool = False) -> None:
        self.default_allow = default_allow
        self.exceptions: dict[tuple[str, int, int], int] = {}
        self._origins: dict[tuple[str, int, int], str] = {}

    def apply(self, rule: DeviceRule) -> None:
        if rule.type == "a":
            if rule.major == ANY and rule.minor == ANY and rule.access_bits == ALL_ACCESS:
                self.default_allow = rule.allow
                self.exceptions.clear()
                self._origins.clear()
                return
            kinds: tuple[str, ...] = ("c", "b")
        else:
            kinds = (rule.type,)
        for kind in kinds:
            key = (kind, rule.major, rule.minor)
            if rule.allow == self.default_allow:
                self._remove(key, rule)
            else:
                self.exceptions[key] = self.exceptions.get(key, 0) | rule.access_bits
                self._origins[key] = rule.where

    def _remove(self, key: tuple[str, int, int], rule: DeviceRule) -> None:
        kind, major, minor = key
        # The kernel removes accesses from the exception with this exact key only; a
        # wider exception sharing them would keep granting (or denying) what the rule
        # takes away. Refuse rather than pretend.
        for wider in ((kind, ANY, minor), (kind, major, ANY), (kind, ANY, ANY)):
            shared = self.exceptions.get(wider, 0) & rule.access_bits
            if wider != key and shared:
                self._refuse(rule, wider, shared)
        remaining = self.exceptions.get(key, 0) & ~rule.access_bits
        if remaining:
            self.exceptions[key] = remaining
        else:
            self.exceptions.pop(key, None)
            self._origins.pop(key, None)

    def _refuse(self, rule: DeviceRule, wider: tuple[str, int, int], shared: int) -> None:
        kind, major, minor = wider
        wide = DeviceRule(not rule.allow, kind, major, minor, access_string(shared))
        verb, wide_verb = ("allow", "denied") if rule.allow else ("deny", "allowed")
        message = (
            f"cannot {verb} {rule.cgroup_string()} while {wide.cgroup_string()} is "
            f"{wide_verb} ({self._origins.get(wider) or 'an earlier rule'}): the devices "
            "controller cannot make an exception inside a wildcard rule"
        )
        if rule.where.startswith("linux."):
            raise ConfigError(rule.where, message)
        # A standard device: the config's wildcard rule is what to change.
        origin = self._origins.get(wider, "")
        raise ConfigError(origin if origin.startswith("linux.") else "", message)

    def entries(self) -> list[DeviceRule]:
        """The exceptions as rules, sorted (type, major, minor); wildcards first."""
        return [
            DeviceRule(not self.default_allow, kind, major, minor, access_string(bits))
            for (kind, major, minor), bits in sorted(self.exceptions.items())
        ]


def device_state(rules: list[DeviceRule]) -> DeviceState:
    """The state after ``rules``, starting from deny-all as a new container does."""
    state = DeviceState()
    for rule in rules:
        state.apply(rule)
    return state


# -- cgroup v1 ---------------------------------------------------------------------------


def parse_devices_list(text: str) -> DeviceState | None:
    """A v1 ``devices.list`` as a state; None for default allow, whose deny exceptions
    the file does not show (it reads ``a *:* rwm`` whatever they are)."""
    state = DeviceState()
    for line in text.splitlines():
        parts = line.replace(":", " ").split()
        if not parts:
            continue
        if parts[0] == "a":
            return None
        if len(parts) != 4 or parts[0] not in ("b", "c"):
            raise ValueError(f"devices.list: unexpected line {line!r}")
        major, minor = (ANY if part == "*" else int(part) for part in parts[1:3])
        state.apply(DeviceRule(True, parts[0], major, minor, parts[3]))
    return state


def plan_v1_devices(rules: list[DeviceRule], current: str | None = None) -> list[tuple[str, str]]:
    """Writes, in order, that bring a v1 devices cgroup to the state of ``rules`` (pure).

    Without ``current`` (the cgroup's ``devices.list``) the plan starts with a reset,
    which works from any state. With it, and both states default-deny, the plan only
    removes and adds what differs: an ``update`` then never denies, even for an
    instant, a device both states allow, and works in a cgroup with children (the
    kernel refuses an ``a`` reset there with EINVAL). Removals come first, so no
    instant allows more than the old or the new state.
    """
    target = device_state(rules)
    source = parse_devices_list(current) if current is not None else None
    grant = "devices.deny" if target.default_allow else "devices.allow"
    revoke = "devices.allow" if target.default_allow else "devices.deny"
    if source is None or target.default_allow:
        reset = "devices.allow" if target.default_allow else "devices.deny"
        plan = [(reset, "a *:* rwm")]
        plan += [(grant, entry.cgroup_string()) for entry in target.entries()]
        return plan
    plan = []
    for key, bits in sorted(source.exceptions.items()):
        dropped = bits & ~target.exceptions.get(key, 0)
        if dropped:
            plan.append((revoke, _line(key, dropped)))
    for key, bits in sorted(target.exceptions.items()):
        gained = bits & ~source.exceptions.get(key, 0)
        if gained:
            plan.append((grant, _line(key, gained)))
    return plan


def _line(key: tuple[str, int, int], bits: int) -> str:
    kind, major, minor = key
    return DeviceRule(True, kind, major, minor, access_string(bits)).cgroup_string()


# -- cgroup v2 ---------------------------------------------------------------------------


def device_program_for(rules: list[DeviceRule]) -> bytes:
    """The eBPF program deciding as a v1 cgroup with ``rules`` would (pure)."""
    state = device_state(rules)
    exceptions = [
        (kind, major, minor, bits)
        for (kind, major, minor), bits in sorted(state.exceptions.items())
    ]
    return device_program(state.default_allow, exceptions)


def apply_v2_devices(cgroup_dir: str, rules: list[DeviceRule], sc: Syscalls | None = None) -> None:
    """Attach the program for ``rules`` to the cgroup v2 directory, replacing the device
    programs attached there before.

    The new program is attached before the old ones go (``BPF_F_ALLOW_MULTI``; with one
    old program, ``BPF_F_REPLACE`` swaps them atomically, Linux 5.6): while both are
    attached a request must pass both, so no instant is left without a filter. Every
    device program directly on the container's cgroup is taken to be corral's (the
    cgroup is the container's; runc does the same).
    """
    if sc is None:
        from corral.linux.syscalls import Syscalls

        sc = Syscalls()
    program = device_program_for(rules)
    prog_fd = _load(sc, program)
    try:
        cgroup_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            old_ids, old_flags = _query(sc, cgroup_fd)
            _attach(sc, cgroup_fd, prog_fd, old_ids, old_flags)
        finally:
            os.close(cgroup_fd)
    finally:
        os.close(prog_fd)


def _load(sc: Syscalls, program: bytes) -> int:
    attr = bytearray(_ATTR_SIZE)
    struct.pack_into("=II", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(program) // 8)
    attr[48 : 48 + len(PROGRAM_NAME)] = PROGRAM_NAME
    pointers: tuple[tuple[int, bytes | bytearray], ...] = ((8, program), (16, LICENSE))
    try:
        return sc.bpf(BPF_PROG_LOAD, attr, pointers, "load device program")
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.EACCES):
            raise
    # The verifier refused it: load again with its log, for the message.
    log = bytearray(65536)
    struct.pack_into("=II", attr, 24, 1, len(log))  # log_level, log_size
    try:
        return sc.bpf(BPF_PROG_LOAD, attr, (*pointers, (32, log)), "load device program")
    except OSError as error:
        lines = bytes(log).split(b"\0", 1)[0].decode(errors="replace").strip().splitlines()
        detail = f" (verifier: {lines[-1]})" if lines else ""
        raise OSError(error.errno, f"{error.strerror}{detail}") from None


def _query(sc: Syscalls, cgroup_fd: int) -> tuple[list[int], int]:
    """The ids of the device programs attached to the cgroup itself, and their flags."""
    count = 64
    while True:
        ids = bytearray(4 * count)
        attr = bytearray(_ATTR_SIZE)
        struct.pack_into("=II", attr, 0, cgroup_fd, BPF_CGROUP_DEVICE)
        struct.pack_into("=I", attr, 24, count)
        try:
            sc.bpf(BPF_PROG_QUERY, attr, ((16, ids),), "query device programs")
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            count *= 4  # more programs than room: the kernel wrote the real count
            continue
        flags, found = struct.unpack_from("=I", attr, 12)[0], struct.unpack_from("=I", attr, 24)[0]
        return list(struct.unpack_from(f"={found}I", ids)), flags


def _attach(sc: Syscalls, cgroup_fd: int, prog_fd: int, old_ids: list[int], flags: int) -> None:
    old_fds: list[int] = []
    try:
        for prog_id in old_ids:
            old_fd = _fd_by_id(sc, prog_id)
            if old_fd >= 0:
                old_fds.append(old_fd)
        if old_fds and not flags & BPF_F_ALLOW_MULTI:
            # Someone attached without ALLOW_MULTI: attaching with the same flags
            # replaces that single program atomically.
            _attach_call(sc, cgroup_fd, prog_fd, flags, -1)
            return
        if len(old_fds) == 1:
            try:
                _attach_call(sc, cgroup_fd, prog_fd, BPF_F_ALLOW_MULTI | BPF_F_REPLACE, old_fds[0])
                return
            except OSError as error:
                if error.errno != errno.EINVAL:  # a kernel before 5.6
                    raise
        _attach_call(sc, cgroup_fd, prog_fd, BPF_F_ALLOW_MULTI, -1)
        for old_fd in old_fds:
            attr = bytearray(_ATTR_SIZE)
            struct.pack_into("=III", attr, 0, cgroup_fd, old_fd, BPF_CGROUP_DEVICE)
            try:
                sc.bpf(BPF_PROG_DETACH, attr, (), "detach old device program")
            except OSError as error:
                if error.errno != errno.ENOENT:  # detached meanwhile: what we wanted
                    raise
    finally:
        for old_fd in old_fds:
            os.close(old_fd)


def _attach_call(sc: Syscalls, cgroup_fd: int, prog_fd: int, flags: int, replace_fd: int) -> None:
    attr = bytearray(_ATTR_SIZE)
    struct.pack_into("=IIII", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, flags)
    if replace_fd >= 0:
        struct.pack_into("=I", attr, 16, replace_fd)
    sc.bpf(BPF_PROG_ATTACH, attr, (), "attach device program")


def _fd_by_id(sc: Syscalls, prog_id: int) -> int:
    """An fd of the program, or -1 if it is gone since the query."""
    attr = bytearray(_ATTR_SIZE)
    struct.pack_into("=I", attr, 0, prog_id)
    try:
        return sc.bpf(BPF_PROG_GET_FD_BY_ID, attr, (), f"open device program {prog_id}")
    except OSError as error:
        if error.errno == errno.ENOENT:
            return -1
        raise
