"""A small ctypes binding of libseccomp 2.5+ (the C library), loaded only when needed.

Why libseccomp and why ctypes: the OCI profile's names (``SCMP_ACT_*``,
``SCMP_CMP_*``, ``SCMP_ARCH_*``, syscall names) are libseccomp's, and its compiler
knows every architecture's syscall table, multiplexed calls (``socketcall``, ``ipc``
on x86) and the 64-bit argument splitting on 32-bit ABIs; writing BPF by hand would
re-do all of that. The Python bindings are no option: libseccomp's own ``seccomp``
module is built from its source tree and is not on PyPI (``pyseccomp`` and friends
are small unmaintained ctypes wrappers), and corral's runtime path stays stdlib. So
this module declares the dozen functions corral calls, from ``seccomp.h`` (libseccomp
2.5.4, Debian 12's ``libseccomp2``), and nothing else.

The library is opened by :func:`open_library` on first use and kept for the process:
a ``create`` without ``linux.seccomp`` never imports this module. The container's
init opens it *before* ``pivot_root`` (the file is the host's). libseccomp returns
negative errno values; :class:`Libseccomp` turns them into :class:`OSError`.
"""

from __future__ import annotations

import ctypes
import os

LIBRARY = "libseccomp.so.2"  # the soname; dlopen finds it through ld.so's cache

# enum scmp_filter_attr
ATTR_CTL_NNP = 3
ATTR_CTL_TSYNC = 4
ATTR_CTL_LOG = 6
ATTR_CTL_SSB = 7
ATTR_CTL_OPTIMIZE = 8
ATTR_CTL_WAITKILL = 10  # libseccomp 2.6; 2.5 answers -EINVAL

SYSCALL_UNKNOWN = -1  # __NR_SCMP_ERROR: the name is not in the architecture's table


class _ArgCmp(ctypes.Structure):
    # struct scmp_arg_cmp { unsigned int arg; enum scmp_compare op; scmp_datum_t a, b; }
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


class Libseccomp:
    """The functions corral uses; each method is one libseccomp call.

    A filter context is an opaque ``int`` (the C pointer); :meth:`release` frees it.
    """

    def __init__(self, cdll: ctypes.CDLL) -> None:
        self._lib = cdll
        c = ctypes
        self._declare("seccomp_version", c.POINTER(_Version), [])
        self._declare("seccomp_api_get", c.c_uint, [])
        self._declare("seccomp_init", c.c_void_p, [c.c_uint32])
        self._declare("seccomp_release", None, [c.c_void_p])
        self._declare("seccomp_attr_set", c.c_int, [c.c_void_p, c.c_int, c.c_uint32])
        self._declare("seccomp_arch_resolve_name", c.c_uint32, [c.c_char_p])
        self._declare("seccomp_arch_native", c.c_uint32, [])
        self._declare("seccomp_arch_add", c.c_int, [c.c_void_p, c.c_uint32])
        self._declare("seccomp_syscall_resolve_name", c.c_int, [c.c_char_p])
        self._declare(
            "seccomp_rule_add_array",
            c.c_int,
            [c.c_void_p, c.c_uint32, c.c_int, c.c_uint, c.POINTER(_ArgCmp)],
        )
        self._declare("seccomp_load", c.c_int, [c.c_void_p])
        self._declare("seccomp_notify_fd", c.c_int, [c.c_void_p])
        self._declare("seccomp_export_bpf", c.c_int, [c.c_void_p, c.c_int])

    def _declare(self, name: str, restype: object, argtypes: list[object]) -> None:
        function = getattr(self._lib, name)
        function.restype = restype
        function.argtypes = argtypes

    @staticmethod
    def _check(result: int, what: str) -> int:
        if result < 0:
            raise OSError(-result, f"{what}: {os.strerror(-result)}")
        return result

    def version(self) -> tuple[int, int, int]:
        v = self._lib.seccomp_version().contents
        return int(v.major), int(v.minor), int(v.micro)

    def api_level(self) -> int:
        """What the library and the running kernel support together (seccomp_api_get(3))."""
        return int(self._lib.seccomp_api_get())

    def init(self, default_action: int) -> int:
        ctx = self._lib.seccomp_init(default_action)
        if not ctx:
            raise OSError(22, "seccomp_init: the default action is not supported")
        return int(ctx)

    def release(self, ctx: int) -> None:
        self._lib.seccomp_release(ctx)

    def attr_set(self, ctx: int, attribute: int, value: int) -> None:
        self._check(self._lib.seccomp_attr_set(ctx, attribute, value), "seccomp_attr_set")

    def arch_resolve_name(self, name: str) -> int:
        """The AUDIT_ARCH token of libseccomp's ``name`` ("x86_64"); 0 if it has none."""
        return int(self._lib.seccomp_arch_resolve_name(name.encode()))

    def arch_native(self) -> int:
        return int(self._lib.seccomp_arch_native())

    def arch_add(self, ctx: int, token: int) -> None:
        """Add an architecture; one already in the filter (the native one) is fine."""
        result = self._lib.seccomp_arch_add(ctx, token)
        if result != -17:  # EEXIST
            self._check(result, "seccomp_arch_add")

    def syscall_resolve_name(self, name: str) -> int:
        """The native number of ``name``, or :data:`SYSCALL_UNKNOWN`."""
        return int(self._lib.seccomp_syscall_resolve_name(name.encode()))

    def rule_add(
        self, ctx: int, action: int, syscall: int, conditions: list[tuple[int, int, int, int]]
    ) -> None:
        """Add a rule; ``conditions`` are ``(index, op, a, b)``, all of which must hold."""
        array = (_ArgCmp * max(1, len(conditions)))()
        for slot, (index, op, datum_a, datum_b) in zip(array, conditions, strict=False):
            slot.arg, slot.op, slot.datum_a, slot.datum_b = index, op, datum_a, datum_b
        result = self._lib.seccomp_rule_add_array(ctx, action, syscall, len(conditions), array)
        self._check(result, "seccomp_rule_add")

    def load(self, ctx: int) -> None:
        self._check(self._lib.seccomp_load(ctx), "seccomp_load")

    def notify_fd(self, ctx: int) -> int:
        return self._check(self._lib.seccomp_notify_fd(ctx), "seccomp_notify_fd")

    def export_bpf(self, ctx: int, fd: int) -> None:
        self._check(self._lib.seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")


_opened: list[Libseccomp] = []  # the process's one binding, once opened


def open_library() -> Libseccomp:
    """The binding, opening the library on the first call; OSError if it is missing."""
    if not _opened:
        _opened.append(Libseccomp(ctypes.CDLL(LIBRARY, use_errno=True)))
    return _opened[0]
