"""The FreeBSD syscall layer: iovec encoding byte for byte, and the ctypes calls.

The calls are exercised on Linux by giving :class:`FreeBSDSyscalls` a stand-in libc
whose ``jail_set``, ``nmount``... are C callbacks (ctypes CFUNCTYPE): they read the
``struct iovec`` array the real kernel would read, and answer as the kernel does
(a jid, or -1 with errno and a sentence written into the ``errmsg`` buffer).
"""

from __future__ import annotations

import ctypes
import errno
import resource
import sys

import pytest
from freebsd_fake import RecordingFreeBSDSyscalls

from corral.freebsd.syscalls import (
    ERRMSG_SIZE,
    JAIL_CREATE,
    JAIL_NAME_SIZE,
    JAIL_UPDATE,
    MNT_FORCE,
    MNT_RDONLY,
    FreeBSDSyscalls,
    encode_mount_options,
    encode_params,
    negated,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from corral.freebsd.params import JailValue

pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="amd64/arm64 byte order")


# -- encode_params, byte for byte ---------------------------------------------------------

ENCODINGS: list[tuple[str, JailValue, bytes, bytes | None]] = [
    ("name", "web", b"name\0", b"web\0"),
    ("path", "/var/run/corral/web/rootfs", b"path\0", b"/var/run/corral/web/rootfs\0"),
    ("host.hostname", "", b"host.hostname\0", b"\0"),
    ("persist", True, b"persist\0", None),
    ("persist", False, b"nopersist\0", None),
    ("allow.raw_sockets", True, b"allow.raw_sockets\0", None),
    ("allow.raw_sockets", False, b"allow.noraw_sockets\0", None),
    ("allow.mount.tmpfs", False, b"allow.mount.notmpfs\0", None),
    ("host", 1, b"host\0", b"\x01\x00\x00\x00"),
    ("ip4", 0, b"ip4\0", b"\x00\x00\x00\x00"),
    ("enforce_statfs", 2, b"enforce_statfs\0", b"\x02\x00\x00\x00"),
    ("devfs_ruleset", 65535, b"devfs_ruleset\0", b"\xff\xff\x00\x00"),
    ("jid", -1, b"jid\0", b"\xff\xff\xff\xff"),
    ("securelevel", 2**31 - 1, b"securelevel\0", b"\xff\xff\xff\x7f"),
    ("ip4.addr", ["10.0.0.1"], b"ip4.addr\0", b"\x0a\x00\x00\x01"),
    ("ip4.addr", ["127.0.0.2", "192.168.1.20"], b"ip4.addr\0",
     b"\x7f\x00\x00\x02\xc0\xa8\x01\x14"),
    ("ip4.addr", [], b"ip4.addr\0", b""),
    ("ip6.addr", ["fd10::11:12:13"], b"ip6.addr\0",
     b"\xfd\x10" + b"\x00" * 8 + b"\x00\x11\x00\x12\x00\x13"),
    ("ip6.addr", ["::1", "fe80::"], b"ip6.addr\0",
     b"\x00" * 15 + b"\x01" + b"\xfe\x80" + b"\x00" * 14),
    ("host.hostname", "caf\u00e9", b"host.hostname\0", b"caf\xc3\xa9\0"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "value", "key", "data"), ENCODINGS)
def test_encode_params(name: str, value: JailValue, key: bytes, data: bytes | None) -> None:
    assert encode_params([(name, value)]) == [(key, data)]


def test_encode_params_keeps_the_order() -> None:
    pairs = encode_params([("name", "a"), ("persist", True), ("host", 2)])
    assert [key for key, _ in pairs] == [b"name\0", b"persist\0", b"host\0"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([("host", 2**31)], "does not fit a C int"),
        ([("host", -(2**31) - 1)], "does not fit a C int"),
        ([("name", "a\0b")], "NUL"),
        ([("na\0me", "x")], "NUL"),
        ([("persist\0", True)], "NUL"),
        ([("exec.start", ["sh"])], "only ip4.addr and ip6.addr take a list"),
        ([("ip4.addr", ["10.0.0.1", "fd10::1"])], "'fd10::1' is not a numeric address"),
        ([("ip6.addr", ["10.0.0.1"])], "not a numeric address"),
    ],
)
def test_encode_params_refuses(params: list[tuple[str, JailValue]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_params(params)


def test_negated_prefixes_the_last_component() -> None:
    assert negated("persist") == "nopersist"
    assert negated("ip4.saddrsel") == "ip4.nosaddrsel"
    assert negated("allow.mount.devfs") == "allow.mount.nodevfs"


def test_encode_mount_options() -> None:
    pairs = encode_mount_options(
        "nullfs", "/jails/web/data", [("from", "/srv/data"), ("ro", None), ("ruleset", "4")]
    )
    assert pairs == [
        (b"fstype\0", b"nullfs\0"),
        (b"fspath\0", b"/jails/web/data\0"),
        (b"from\0", b"/srv/data\0"),
        (b"ro\0", None),
        (b"ruleset\0", b"4\0"),
    ]
    with pytest.raises(ValueError, match="NUL"):
        encode_mount_options("tmpfs", "/a\0b", [])


# -- the ctypes calls, against a stand-in libc ----------------------------------------------


class Iovec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


IOV_CALL = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)


class Kernel:
    """Reads the iovec array as kern_jail.c / vfs_mount.c would, and answers."""

    def __init__(self, answer: Callable[[dict[str, bytes | None], int], int | tuple[int, str]]):
        self.answer = answer
        self.seen: list[tuple[list[tuple[bytes, bytes | None]], int, int]] = []
        self.niov = 0

    def pairs(self, iov: int, niov: int) -> list[tuple[int, int, int, int]]:
        array = ctypes.cast(iov, ctypes.POINTER(Iovec))
        return [
            (array[i].iov_base or 0, array[i].iov_len, array[i + 1].iov_base or 0,
             array[i + 1].iov_len)
            for i in range(0, niov, 2)
        ]  # fmt: skip

    def __call__(self, iov: int, niov: int, flags: int) -> int:
        self.niov = niov
        raw: list[tuple[bytes, bytes | None]] = []
        errmsg: tuple[int, int] | None = None
        for name_base, name_len, value_base, value_len in self.pairs(iov, niov):
            name = ctypes.string_at(name_base, name_len)
            value = ctypes.string_at(value_base, value_len) if value_base else None
            raw.append((name, value))
            if name == b"errmsg\0":
                errmsg = (value_base, value_len)
        self.seen.append((raw, niov, flags))
        params = {name.rstrip(b"\0").decode(): value for name, value in raw}
        answer = self.answer(params, flags)
        result, message = answer if isinstance(answer, tuple) else (answer, "")
        if message and errmsg is not None:
            data = message.encode()[: errmsg[1] - 1] + b"\0"
            ctypes.memmove(errmsg[0], data, len(data))
        if result < 0:
            ctypes.set_errno(-result)
            return -1
        # jail_get writes the jail's name back into the "name" buffer.
        for name_base, name_len, value_base, value_len in self.pairs(iov, niov):
            if ctypes.string_at(name_base, name_len) == b"name\0" and value_len:
                data = b"pod.web\0"
                ctypes.memmove(value_base, data, len(data))
        return result


class FakeLibc:
    """Attributes are looked up by name, as on a ctypes.CDLL."""

    def __init__(self, **functions: Any) -> None:
        self.__dict__.update(functions)


def syscalls_with(**functions: Any) -> FreeBSDSyscalls:
    sc = FreeBSDSyscalls()
    sc._lib = FakeLibc(**functions)  # type: ignore[assignment]
    return sc


def test_jail_set_passes_the_encoded_params_and_an_errmsg_buffer() -> None:
    kernel = Kernel(lambda params, flags: 7)
    callback = IOV_CALL(kernel)
    sc = syscalls_with(jail_set=callback)
    params: list[tuple[str, JailValue]] = [
        ("name", "web"), ("path", "/r"), ("persist", True), ("host", 1),
        ("ip4.addr", ["10.0.0.1"]),
    ]  # fmt: skip
    assert sc.jail_set(params, JAIL_CREATE) == 7
    raw, niov, flags = kernel.seen[0]
    assert flags == JAIL_CREATE
    assert niov == 2 * (len(params) + 1)
    assert raw[:-1] == encode_params(params)
    assert raw[-1] == (b"errmsg\0", bytes(ERRMSG_SIZE))


def test_jail_set_raises_with_the_kernel_message() -> None:
    kernel = Kernel(lambda params, flags: (-errno.EEXIST, 'jail "web" already exists'))
    sc = syscalls_with(jail_set=IOV_CALL(kernel))
    with pytest.raises(OSError) as caught:
        sc.jail_set([("name", "web"), ("persist", True)], JAIL_CREATE)
    assert caught.value.errno == errno.EEXIST
    assert str(caught.value.strerror) == 'jail_set "web": jail "web" already exists'


def test_jail_set_without_a_message_names_the_path() -> None:
    # kern_jail.c: a path namei(9) cannot resolve fails without an errmsg.
    kernel = Kernel(lambda params, flags: -errno.ENOENT)
    sc = syscalls_with(jail_set=IOV_CALL(kernel))
    with pytest.raises(OSError) as caught:
        sc.jail_set([("path", "/x"), ("persist", True)], JAIL_CREATE)
    assert caught.value.errno == errno.ENOENT
    assert caught.value.strerror == 'jail_set: path "/x": No such file or directory'


def test_jail_set_without_a_message_falls_back_to_strerror() -> None:
    kernel = Kernel(lambda params, flags: -errno.EPERM)
    sc = syscalls_with(jail_set=IOV_CALL(kernel))
    with pytest.raises(OSError) as caught:
        sc.jail_set([("name", "web"), ("path", "/x")], JAIL_CREATE | JAIL_UPDATE)
    assert caught.value.strerror == 'jail_set "web": Operation not permitted'


def test_a_long_kernel_message_stays_inside_the_buffer() -> None:
    kernel = Kernel(lambda params, flags: (-errno.EINVAL, "x" * 5000))
    sc = syscalls_with(jail_set=IOV_CALL(kernel))
    with pytest.raises(OSError) as caught:
        sc.jail_set([("name", "web")], JAIL_CREATE)
    assert caught.value.strerror == 'jail_set "web": ' + "x" * (ERRMSG_SIZE - 1)


def test_jail_get_by_name_reads_the_name_back() -> None:
    def answer(params: dict[str, bytes | None], flags: int) -> int:
        assert params["name"] == b"web".ljust(JAIL_NAME_SIZE, b"\0")
        return 12

    sc = syscalls_with(jail_get=IOV_CALL(Kernel(answer)))
    assert sc.jail_get([("name", "web")]) == (12, "pod.web")


def test_jail_get_by_jid_sends_an_empty_name() -> None:
    def answer(params: dict[str, bytes | None], flags: int) -> int:
        assert params["jid"] == b"\x0c\x00\x00\x00"
        assert params["name"] == bytes(JAIL_NAME_SIZE)
        return 12

    sc = syscalls_with(jail_get=IOV_CALL(Kernel(answer)))
    assert sc.jail_get([("jid", 12)]) == (12, "pod.web")


def test_jail_get_not_found() -> None:
    kernel = Kernel(lambda params, flags: (-errno.ENOENT, 'jail "db" not found'))
    sc = syscalls_with(jail_get=IOV_CALL(kernel))
    with pytest.raises(OSError) as caught:
        sc.jail_get([("name", "db")])
    assert caught.value.errno == errno.ENOENT
    assert caught.value.strerror == 'jail_get "db": jail "db" not found'
    kernel = Kernel(lambda params, flags: (-errno.ENOENT, "jail 9 not found"))
    sc = syscalls_with(jail_get=IOV_CALL(kernel))
    with pytest.raises(OSError, match="jail_get jid 9: jail 9 not found"):
        sc.jail_get([("jid", 9)])


def test_nmount_sends_fstype_fspath_and_options() -> None:
    kernel = Kernel(lambda params, flags: 0)
    sc = syscalls_with(nmount=IOV_CALL(kernel))
    sc.nmount("devfs", "/r/dev", [("from", "devfs"), ("ruleset", "4"), ("ro", None)], MNT_RDONLY)
    raw, _, flags = kernel.seen[0]
    assert flags == MNT_RDONLY
    assert raw == [
        (b"fstype\0", b"devfs\0"),
        (b"fspath\0", b"/r/dev\0"),
        (b"from\0", b"devfs\0"),
        (b"ruleset\0", b"4\0"),
        (b"ro\0", None),
        (b"errmsg\0", bytes(ERRMSG_SIZE)),
    ]


def test_nmount_raises_with_the_kernel_message() -> None:
    kernel = Kernel(lambda params, flags: (-errno.EINVAL, "Invalid fstype"))
    sc = syscalls_with(nmount=IOV_CALL(kernel))
    with pytest.raises(OSError) as caught:
        sc.nmount("nosuchfs", "/r/x", [])
    assert caught.value.errno == errno.EINVAL
    assert caught.value.strerror == "nmount nosuchfs on /r/x: Invalid fstype"


INT_CALL = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)


@pytest.mark.parametrize("method", ["jail_attach", "jail_remove"])
def test_jid_calls(method: str) -> None:
    seen: list[int] = []

    def call(jid: int) -> int:
        seen.append(jid)
        if jid == 99:
            ctypes.set_errno(errno.EINVAL)
            return -1
        return 0

    sc = syscalls_with(**{method: INT_CALL(call)})
    getattr(sc, method)(5)
    with pytest.raises(OSError) as caught:
        getattr(sc, method)(99)
    assert seen == [5, 99]
    assert caught.value.errno == errno.EINVAL
    assert caught.value.strerror == f"{method} 99: Invalid argument"


def test_unmount() -> None:
    seen: list[tuple[bytes, int]] = []

    def call(path: bytes, flags: int) -> int:
        seen.append((path, flags))
        ctypes.set_errno(errno.EBUSY)
        return -1 if path == b"/busy" else 0

    sc = syscalls_with(unmount=ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_int)(call))
    sc.unmount("/r/dev", MNT_FORCE)
    with pytest.raises(OSError) as caught:
        sc.unmount("/busy")
    assert seen == [(b"/r/dev", MNT_FORCE), (b"/busy", 0)]
    assert caught.value.strerror == "unmount /busy: Device or resource busy"


RCTL_CALL = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t
)


@pytest.mark.parametrize("method", ["rctl_add_rule", "rctl_remove_rule"])
def test_rctl_passes_the_rule_with_its_nul(method: str) -> None:
    seen: list[tuple[bytes, int, int | None, int]] = []

    def call(inbuf: int, inlen: int, outbuf: int | None, outlen: int) -> int:
        seen.append((ctypes.string_at(inbuf, inlen), inlen, outbuf, outlen))
        return 0

    sc = syscalls_with(**{method: RCTL_CALL(call)})
    getattr(sc, method)("jail:web:memoryuse:deny=1073741824")
    rule = b"jail:web:memoryuse:deny=1073741824\0"
    assert seen == [(rule, len(rule), None, 0)]


def test_rctl_off_says_how_to_turn_it_on() -> None:
    def call(inbuf: int, inlen: int, outbuf: int | None, outlen: int) -> int:
        ctypes.set_errno(errno.ENOSYS)
        return -1

    sc = syscalls_with(rctl_add_rule=RCTL_CALL(call))
    with pytest.raises(OSError) as caught:
        sc.rctl_add_rule("jail:web:maxproc:deny=10")
    assert caught.value.errno == errno.ENOSYS
    assert "kern.racct.enable=1" in str(caught.value.strerror)
    assert str(caught.value.strerror).startswith("rctl_add_rule jail:web:maxproc:deny=10: ")


# -- on a host without these functions ------------------------------------------------------


@pytest.mark.skipif(sys.platform.startswith("freebsd"), reason="libc has them on FreeBSD")
@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda sc: sc.jail_set([("name", "x"), ("persist", True)], JAIL_CREATE), "jail_set"),
        (lambda sc: sc.jail_get([("name", "x")]), "jail_get"),
        (lambda sc: sc.jail_attach(1), "jail_attach"),
        (lambda sc: sc.jail_remove(1), "jail_remove"),
        (lambda sc: sc.nmount("tmpfs", "/nonexistent", []), "nmount"),
        (lambda sc: sc.rctl_add_rule("jail:x:maxproc:deny=1"), "rctl_add_rule"),
        (lambda sc: sc.rctl_remove_rule("jail:x"), "rctl_remove_rule"),
    ],
)
def test_elsewhere_the_calls_fail_cleanly(
    call: Callable[[FreeBSDSyscalls], object], name: str
) -> None:
    with pytest.raises(OSError) as caught:
        call(FreeBSDSyscalls())
    assert caught.value.errno == errno.ENOSYS
    assert str(caught.value.strerror).startswith(f"{name}: not in this C library")


# -- setrlimit (the real call: it exists everywhere) -------------------------------------------


def test_setrlimit_sets_and_maps_unlimited() -> None:
    before = resource.getrlimit(resource.RLIMIT_CORE)
    try:
        sc = FreeBSDSyscalls()
        sc.setrlimit(resource.RLIMIT_CORE, 0, before[1])
        assert resource.getrlimit(resource.RLIMIT_CORE) == (0, before[1])
        if before[1] == resource.RLIM_INFINITY:
            sc.setrlimit(resource.RLIMIT_CORE, 2**64 - 1, 2**64 - 1)
            assert resource.getrlimit(resource.RLIMIT_CORE) == (
                resource.RLIM_INFINITY,
                resource.RLIM_INFINITY,
            )
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, before)


def test_setrlimit_error_names_the_resource() -> None:
    with pytest.raises(OSError) as caught:
        FreeBSDSyscalls().setrlimit(resource.RLIMIT_CORE, 10, 5)  # soft above hard
    assert caught.value.errno == errno.EINVAL
    assert caught.value.strerror == f"setrlimit {resource.RLIMIT_CORE}: Invalid argument"


# -- the recording fake other tests use ----------------------------------------------------------


def test_the_fake_models_jails() -> None:
    sc = RecordingFreeBSDSyscalls(first_jid=3)
    assert sc.jail_set([("name", "web"), ("persist", True)], JAIL_CREATE) == 3
    assert sc.jail_set([("name", "web.child"), ("persist", True)], JAIL_CREATE) == 4
    with pytest.raises(OSError) as caught:
        sc.jail_set([("name", "web")], JAIL_CREATE)
    assert caught.value.errno == errno.EEXIST
    assert sc.jail_get([("name", "web")]) == (3, "web")
    assert sc.jail_get([("jid", 4)]) == (4, "web.child")
    sc.jail_remove(3)  # takes its child along
    with pytest.raises(OSError) as caught:
        sc.jail_get([("name", "web.child")])
    assert caught.value.errno == errno.ENOENT
    with pytest.raises(OSError) as caught:
        sc.jail_remove(3)
    assert caught.value.errno == errno.EINVAL
    assert sc.methods() == [
        "jail_set", "jail_set", "jail_set", "jail_get", "jail_get", "jail_remove", "jail_get",
        "jail_remove",
    ]  # fmt: skip


def test_the_fake_fails_on_request_and_checks_encodings() -> None:
    sc = RecordingFreeBSDSyscalls(fail={("nmount", "/r/proc"): errno.EPERM})
    sc.nmount("tmpfs", "/r/tmp", [("mode", "1777")])
    with pytest.raises(OSError) as caught:
        sc.nmount("procfs", "/r/proc", [])
    assert caught.value.errno == errno.EPERM
    sc.nmount("procfs", "/r/proc", [])  # once only
    with pytest.raises(ValueError, match="C int"):
        sc.jail_set([("name", "x"), ("host", 2**40)], JAIL_CREATE)
    sc.setrlimit(7, 1, 2)
    sc.rctl_add_rule("jail:x:maxproc:deny=1")
    sc.unmount("/r/tmp", MNT_FORCE)
    assert sc.calls[-3:] == [
        ("setrlimit", 7, 1, 2),
        ("rctl_add_rule", "jail:x:maxproc:deny=1"),
        ("unmount", "/r/tmp", MNT_FORCE),
    ]
