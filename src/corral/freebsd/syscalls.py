"""The one place where corral calls libc on FreeBSD.

:class:`FreeBSDSyscalls` wraps the calls the jail backend needs and the ``os`` module
lacks: jail_set(2), jail_get(2), jail_attach(2), jail_remove(2), nmount(2),
unmount(2), rctl_add_rule(2), rctl_remove_rule(2), plus setrlimit(2). Code above takes
the object as a parameter, so unit tests pass a recording fake
(tests/unit/freebsd_fake.py) and run on Linux. ``ctypes`` and libc are loaded on first
use: importing this module costs nothing and works on any platform; calling a FreeBSD
function elsewhere raises ``OSError(ENOSYS)``.

jail_set(2), jail_get(2) and nmount(2) take name/value pairs as an array of
``struct iovec``. :func:`encode_params` turns parameters into those bytes and is pure,
so it is tested byte for byte:

* a name is NUL-terminated;
* a string is NUL-terminated;
* an int is a C ``int`` in the machine's byte order;
* a boolean is a flag parameter: the name alone (value NULL, length 0) for true, and
  the name with "no" before its last component for false (``allow.noraw_sockets``,
  ``nopersist``), as jail(2) and kern_jail.c's flag tables have it;
* the address lists ``ip4.addr`` / ``ip6.addr`` are packed arrays of ``struct in_addr``
  / ``struct in6_addr`` (network byte order), as kern_jail.c copies them.

Each of these calls also gets an ``errmsg`` pair whose value is a writable buffer: on
failure the kernel writes a sentence there ("jail \\"web\\" already exists", "Invalid
fstype"), vfs_opterror(9). The raised ``OSError`` carries that sentence, or strerror
when the kernel left it empty, after what failed: ``jail_set "web": jail "web" already
exists``, ``jail_set "web": path "/x": No such file or directory``.
"""

from __future__ import annotations

import errno
import os
import struct

from corral.spec.freebsd import pack_ip4, pack_ip6

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes

    from corral.freebsd.params import JailValue

# <sys/jail.h>
JAIL_CREATE = 0x01
JAIL_UPDATE = 0x02
JAIL_ATTACH = 0x04
JAIL_DYING = 0x08

# <sys/mount.h>
MNT_RDONLY = 0x0000000000000001
MNT_NOEXEC = 0x0000000000000004
MNT_NOSUID = 0x0000000000000008
MNT_UPDATE = 0x0000000000010000
MNT_FORCE = 0x0000000000080000
MNT_NOATIME = 0x0000000010000000

ERRMSG_SIZE = 1024  # bytes the kernel may write back into "errmsg"
JAIL_NAME_SIZE = 256  # MAXHOSTNAMELEN: a jail's full name with its NUL
RLIM_INFINITY_SPEC = 2**64 - 1  # what config.json writes for "no limit"

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
# Errors of the path lookup (namei) that jail_set reports without a message.
_PATH_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ELOOP,
                          errno.ENAMETOOLONG})  # fmt: skip

Pair = tuple[bytes, "bytes | None"]


def negated(name: str) -> str:
    """The "no" form of a flag parameter: ``allow.mount.tmpfs`` -> ``allow.mount.notmpfs``."""
    head, dot, last = name.rpartition(".")
    return f"{head}{dot}no{last}"


def _cstring(text: str, what: str) -> bytes:
    data = os.fsencode(text)
    if b"\0" in data:
        raise ValueError(f"{what} {text!r} contains a NUL byte")
    return data + b"\0"


def _pack_addresses(name: str, values: list[str]) -> bytes:
    if name == "ip4.addr":
        pack = pack_ip4
    elif name == "ip6.addr":
        pack = pack_ip6
    else:
        raise ValueError(f"jail parameter {name}: only ip4.addr and ip6.addr take a list")
    packed = bytearray()
    for value in values:
        raw = pack(value)
        if raw is None:
            raise ValueError(f"jail parameter {name}: {value!r} is not a numeric address")
        packed += raw
    return bytes(packed)


def encode_params(params: list[tuple[str, JailValue]]) -> list[Pair]:
    """Jail parameters as (name, value) byte strings; a value of None is a NULL pointer."""
    pairs: list[Pair] = []
    for name, value in params:
        if isinstance(value, bool):  # before int: a bool is an int to Python
            pairs.append((_cstring(name if value else negated(name), "parameter"), None))
            continue
        key = _cstring(name, "parameter")
        if isinstance(value, int):
            if not _INT_MIN <= value <= _INT_MAX:
                raise ValueError(f"jail parameter {name}: {value} does not fit a C int")
            pairs.append((key, struct.pack("=i", value)))
        elif isinstance(value, str):
            pairs.append((key, _cstring(value, f"jail parameter {name}:")))
        else:
            pairs.append((key, _pack_addresses(name, value)))
    return pairs


def encode_mount_options(
    fstype: str, target: str, options: list[tuple[str, str | None]]
) -> list[Pair]:
    """nmount(2) pairs: ``fstype``, ``fspath``, then each option (None: a flag option)."""
    pairs: list[Pair] = [
        (b"fstype\0", _cstring(fstype, "file system type")),
        (b"fspath\0", _cstring(target, "mount point")),
    ]
    for name, value in options:
        pairs.append(
            (_cstring(name, "mount option"), None if value is None else _cstring(value, name))
        )
    return pairs


def _c_text(raw: bytes) -> str:
    """The C string at the start of a buffer."""
    return os.fsdecode(raw.split(b"\0", 1)[0])


class _IovResult:
    """What an iovec call returned: result, errno, the kernel's errmsg, value buffers."""

    __slots__ = ("errno", "message", "result", "values")

    def __init__(self, result: int, err: int, message: str, values: list[bytes | None]) -> None:
        self.result = result
        self.errno = err
        self.message = message
        self.values = values


class FreeBSDSyscalls:
    """Thin ctypes wrappers; each method is one system call."""

    def __init__(self) -> None:
        self._lib: ctypes.CDLL | None = None

    # -- helpers -------------------------------------------------------------------

    def _function(self, name: str) -> ctypes._NamedFuncPointer:
        import ctypes

        if self._lib is None:
            self._lib = ctypes.CDLL(None, use_errno=True)
        try:
            fn: ctypes._NamedFuncPointer = getattr(self._lib, name)
        except AttributeError:
            raise OSError(errno.ENOSYS, f"{name}: not in this C library (FreeBSD only)") from None
        return fn

    @staticmethod
    def _failed(what: str) -> OSError:
        import ctypes

        err = ctypes.get_errno()
        return OSError(err, f"{what}: {os.strerror(err)}")

    def _iov_call(self, function: str, pairs: list[Pair], flags: int) -> _IovResult:
        """Call ``function(iov, niov, flags)`` with an "errmsg" pair added at the end."""
        import ctypes

        class Iovec(ctypes.Structure):
            _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))

        everything = [*pairs, (b"errmsg\0", bytes(ERRMSG_SIZE))]
        iov = (Iovec * (2 * len(everything)))()
        keep: list[ctypes.Array[ctypes.c_char] | None] = []  # alive until the call returns
        for index, (name, value) in enumerate(everything):
            for slot, data in ((2 * index, name), (2 * index + 1, value)):
                if data is None:
                    keep.append(None)
                    iov[slot] = Iovec(None, 0)
                    continue
                buffer = ctypes.create_string_buffer(data, len(data))
                keep.append(buffer)
                iov[slot] = Iovec(ctypes.cast(buffer, ctypes.c_void_p), len(data))
        fn = self._function(function)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
        fn.restype = ctypes.c_int
        result = int(fn(ctypes.cast(iov, ctypes.c_void_p), 2 * len(everything), flags))
        err = ctypes.get_errno() if result < 0 else 0
        errbuf = keep[-1]
        message = "" if errbuf is None else _c_text(errbuf.raw)
        values = [None if buffer is None else buffer.raw for buffer in keep[1:-2:2]]
        return _IovResult(result, err, message, values)

    # -- jails ---------------------------------------------------------------------

    def jail_set(self, params: list[tuple[str, JailValue]], flags: int) -> int:
        """Create or update a jail (JAIL_CREATE / JAIL_UPDATE / JAIL_ATTACH); its jid."""
        call = self._iov_call("jail_set", encode_params(params), flags)
        if call.result < 0:
            values = dict(params)
            name = values.get("name")
            what = "jail_set" if name is None else f'jail_set "{name}"'
            detail = call.message or os.strerror(call.errno)
            path = values.get("path")
            # A path that namei(9) cannot resolve comes back without a message.
            if not call.message and call.errno in _PATH_ERRNOS and isinstance(path, str):
                detail = f'path "{path}": {detail}'
            raise OSError(call.errno, f"{what}: {detail}")
        return call.result

    def jail_get(self, params: list[tuple[str, JailValue]], flags: int = 0) -> tuple[int, str]:
        """Find a jail by ``name``, ``jid`` or ``lastjid`` (jail(2)); its jid and full name."""
        values = dict(params)
        key = values.get("name")
        # The kernel writes the jail's name back into the "name" value: give it room for
        # any name. With a jid or lastjid key the name must be empty (jail(2)).
        name_value = b"" if key is None else _cstring(str(key), "jail name")
        if len(name_value) > JAIL_NAME_SIZE:
            raise OSError(errno.ENAMETOOLONG, f'jail_get "{key}": jail name too long')
        pairs = encode_params([(n, v) for n, v in params if n != "name"])
        pairs.append((b"name\0", name_value.ljust(JAIL_NAME_SIZE, b"\0")))
        call = self._iov_call("jail_get", pairs, flags)
        if call.result < 0:
            if key is not None:
                what = f'jail_get "{key}"'
            else:
                what = " ".join(["jail_get", *(f"{n} {v}" for n, v in params)])
            raise OSError(call.errno, f"{what}: {call.message or os.strerror(call.errno)}")
        name = call.values[-1]
        return call.result, "" if name is None else _c_text(name)

    def jail_attach(self, jid: int) -> None:
        import ctypes

        fn = self._function("jail_attach")
        fn.argtypes = [ctypes.c_int]
        if fn(jid) < 0:
            raise self._failed(f"jail_attach {jid}")

    def jail_remove(self, jid: int) -> None:
        """Remove a jail: kills its processes and its child jails (jail(2))."""
        import ctypes

        fn = self._function("jail_remove")
        fn.argtypes = [ctypes.c_int]
        if fn(jid) < 0:
            raise self._failed(f"jail_remove {jid}")

    # -- mounts --------------------------------------------------------------------

    def nmount(
        self, fstype: str, target: str, options: list[tuple[str, str | None]], flags: int = 0
    ) -> None:
        """Mount ``fstype`` on ``target``; ``options`` are nmount(2) pairs (``from``...)."""
        pairs = encode_mount_options(fstype, target, options)
        call = self._iov_call("nmount", pairs, flags)
        if call.result < 0:
            detail = call.message or os.strerror(call.errno)
            raise OSError(call.errno, f"nmount {fstype} on {target}: {detail}")

    def unmount(self, path: str, flags: int = 0) -> None:
        import ctypes

        fn = self._function("unmount")
        fn.argtypes = [ctypes.c_char_p, ctypes.c_int]
        if fn(_cstring(path, "mount point")[:-1], flags) < 0:
            raise self._failed(f"unmount {path}")

    # -- resource limits -------------------------------------------------------------

    def _rctl(self, function: str, text: str) -> None:
        import ctypes

        fn = self._function(function)
        fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
        data = _cstring(text, "rctl rule")
        # rctl_add_rule(2): the input length counts the NUL, as rctl(8) passes it.
        if fn(data, len(data), None, 0) < 0:
            err = ctypes.get_errno()
            detail = os.strerror(err)
            if err == errno.ENOSYS:
                detail += " (RCTL is off: set kern.racct.enable=1 in /boot/loader.conf)"
            raise OSError(err, f"{function} {text}: {detail}")

    def rctl_add_rule(self, rule: str) -> None:
        """Add an rctl(8) rule, e.g. ``jail:web:memoryuse:deny=1073741824``."""
        self._rctl("rctl_add_rule", rule)

    def rctl_remove_rule(self, filter: str) -> None:
        """Remove every rule matching an rctl(8) filter, e.g. ``jail:web``."""
        self._rctl("rctl_remove_rule", filter)

    def setrlimit(self, resource: int, soft: int, hard: int) -> None:
        """setrlimit(2) on this process; 2**64-1 (the spec's "unlimited") is RLIM_INFINITY."""
        import resource as _resource

        infinity = _resource.RLIM_INFINITY

        def limit(value: int) -> int:
            # FreeBSD's rlim_t is signed: anything from RLIM_INFINITY up means no limit.
            if value == RLIM_INFINITY_SPEC or (infinity > 0 and value >= infinity):
                return infinity
            return value

        try:
            _resource.setrlimit(resource, (limit(soft), limit(hard)))
        except (OSError, ValueError) as error:
            err = getattr(error, "errno", None) or errno.EINVAL
            raise OSError(err, f"setrlimit {resource}: {os.strerror(err)}") from None

    # -- process control -------------------------------------------------------------

    def procctl(self, idtype: int, ident: int, command: int, value: int) -> None:
        """procctl(2) with an int argument: PROC_PDEATHSIG_CTL, PROC_NO_NEW_PRIVS_CTL..."""
        import ctypes

        fn = self._function("procctl")
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p]
        argument = ctypes.c_int(value)
        if fn(idtype, ident, command, ctypes.byref(argument)) < 0:
            raise self._failed(f"procctl {command}")
