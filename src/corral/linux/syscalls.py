"""The one place where corral calls libc on Linux.

Everything that changes kernel state and that the ``os`` module does not offer goes
through a :class:`Syscalls` object: ``mount``, ``pivot_root``, ``unshare``, ``setns``,
``prctl``, ``capset``, ``openat2``... Code above takes the object as a parameter, so
tests pass a recording fake and check the sequence of calls without root.

Failures raise :class:`OSError` with the C ``errno``, and the operation and its main
argument in the message, so an error line reads ``mount /proc: Operation not
permitted``. ``ctypes`` is imported lazily: ``corral state`` never pays for it.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    from typing import Any

# <sys/mount.h>
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 0x2

# <sched.h>
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NAMESPACE_FLAGS = {
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}
# The names of the files in /proc/<pid>/ns/ for each spec namespace type.
NAMESPACE_PROC_NAMES = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}

# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# <linux/keyctl.h>
KEYCTL_JOIN_SESSION_KEYRING = 1

# <linux/openat2.h>
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# x86_64 and aarch64 syscall numbers for calls glibc 2.36 has no wrapper for.
_SYSCALL_NUMBERS = {
    "x86_64": {
        "pivot_root": 155, "keyctl": 250, "openat2": 437, "capget": 125, "capset": 126,
        "sched_setattr": 314, "ioprio_set": 251, "ioprio_get": 252, "set_mempolicy": 238,
        "open_tree": 428, "move_mount": 429, "mount_setattr": 442, "bpf": 321,
        "pidfd_getfd": 438, "seccomp": 317,
    },
    "aarch64": {
        "pivot_root": 41, "keyctl": 219, "openat2": 437, "capget": 90, "capset": 91,
        "sched_setattr": 274, "ioprio_set": 30, "ioprio_get": 31, "set_mempolicy": 237,
        "open_tree": 428, "move_mount": 429, "mount_setattr": 442, "bpf": 280,
        "pidfd_getfd": 438, "seccomp": 277,
    },
}  # fmt: skip

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class Syscalls:
    """Thin ctypes wrappers; each method is one system call."""

    def __init__(self) -> None:
        import ctypes

        self._ctypes = ctypes
        self._libc = ctypes.CDLL(None, use_errno=True)
        machine = os.uname().machine
        self._numbers = _SYSCALL_NUMBERS.get(machine, {})

    # -- helpers -------------------------------------------------------------------

    def _check(self, result: int, what: str, target: str = "") -> int:
        if result < 0:
            err = self._ctypes.get_errno()
            raise OSError(err, f"{what} {target}: {os.strerror(err)}".replace("  ", " "))
        return result

    def _syscall(self, name: str, *args: object) -> int:
        number = self._numbers.get(name)
        if number is None:
            raise OSError(38, f"{name}: not known on {os.uname().machine}")
        fn = self._libc.syscall
        fn.restype = self._ctypes.c_long
        return int(fn(self._ctypes.c_long(number), *args))

    @staticmethod
    def _b(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    # -- mounts --------------------------------------------------------------------

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        c = self._ctypes
        self._libc.mount.argtypes = [c.c_char_p, c.c_char_p, c.c_char_p, c.c_ulong, c.c_char_p]
        result = self._libc.mount(
            self._b(source), self._b(target), self._b(fstype), flags, self._b(data)
        )
        self._check(result, "mount", target)

    def umount2(self, target: str, flags: int) -> None:
        self._check(self._libc.umount2(self._b(target), flags), "umount", target)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        result = self._syscall("pivot_root", self._b(new_root), self._b(put_old))
        self._check(result, "pivot_root", new_root)

    def mknod(self, path: str, mode: int, device: int) -> None:
        os.mknod(path, mode, device)

    # -- namespaces ----------------------------------------------------------------

    def unshare(self, flags: int) -> None:
        self._check(self._libc.unshare(flags), "unshare", hex(flags))

    def setns(self, fd: int, nstype: int, what: str = "") -> None:
        self._check(self._libc.setns(fd, nstype), "setns", what)

    def sethostname(self, name: str) -> None:
        data = name.encode()
        self._check(self._libc.sethostname(data, len(data)), "sethostname", name)

    def setdomainname(self, name: str) -> None:
        data = name.encode()
        self._check(self._libc.setdomainname(data, len(data)), "setdomainname", name)

    # -- process attributes --------------------------------------------------------

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
        c = self._ctypes
        self._libc.prctl.argtypes = [c.c_int, c.c_ulong, c.c_ulong, c.c_ulong, c.c_ulong]
        return self._check(self._libc.prctl(option, arg2, arg3, arg4, arg5), "prctl", str(option))

    def capget(self) -> tuple[int, int, int]:
        """Return this thread's (effective, permitted, inheritable) as 64-bit masks."""
        header, data = self._cap_structs()
        self._check(self._syscall("capget", self._ctypes.byref(header), data), "capget")
        return (
            data[0].effective | data[1].effective << 32,
            data[0].permitted | data[1].permitted << 32,
            data[0].inheritable | data[1].inheritable << 32,
        )

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        header, data = self._cap_structs()
        for index in (0, 1):
            shift = 32 * index
            data[index].effective = (effective >> shift) & 0xFFFFFFFF
            data[index].permitted = (permitted >> shift) & 0xFFFFFFFF
            data[index].inheritable = (inheritable >> shift) & 0xFFFFFFFF
        self._check(self._syscall("capset", self._ctypes.byref(header), data), "capset")

    def _cap_structs(self) -> tuple[ctypes.Structure, ctypes.Array[Any]]:
        import ctypes as c

        class Header(c.Structure):
            _fields_ = [("version", c.c_uint32), ("pid", c.c_int)]

        class Data(c.Structure):
            _fields_ = [
                ("effective", c.c_uint32),
                ("permitted", c.c_uint32),
                ("inheritable", c.c_uint32),
            ]

        return Header(_LINUX_CAPABILITY_VERSION_3, 0), (Data * 2)()

    def prlimit(self, resource: int, soft: int, hard: int) -> None:
        import resource as _resource

        infinity = 2**64 - 1
        soft_value = _resource.RLIM_INFINITY if soft == infinity else soft
        hard_value = _resource.RLIM_INFINITY if hard == infinity else hard
        _resource.prlimit(0, resource, (soft_value, hard_value))

    def join_session_keyring(self, name: str | None) -> None:
        result = self._syscall("keyctl", KEYCTL_JOIN_SESSION_KEYRING, self._b(name))
        self._check(result, "keyctl join session keyring", name or "")

    # -- paths ---------------------------------------------------------------------

    def openat2(self, dirfd: int, path: str, flags: int, mode: int, resolve: int) -> int:
        import ctypes as c

        class OpenHow(c.Structure):
            _fields_ = [("flags", c.c_uint64), ("mode", c.c_uint64), ("resolve", c.c_uint64)]

        how = OpenHow(flags | os.O_CLOEXEC, mode, resolve)
        result = self._syscall(
            "openat2", c.c_int(dirfd), self._b(path), c.byref(how), c.c_size_t(c.sizeof(how))
        )
        return self._check(result, "open", path)

    # -- credentials (os wrappers: here so a recording fake sees them in order) ---------

    def setgroups(self, gids: list[int]) -> None:
        os.setgroups(gids)

    def setresgid(self, rgid: int, egid: int, sgid: int) -> None:
        os.setresgid(rgid, egid, sgid)

    def setresuid(self, ruid: int, euid: int, suid: int) -> None:
        os.setresuid(ruid, euid, suid)

    def umask(self, mask: int) -> None:
        os.umask(mask)

    def chdir(self, path: str) -> None:
        os.chdir(path)

    def close_range(self, first: int, last: int, flags: int) -> None:
        """close_range(2): Linux 5.9 (CLOSE_RANGE_CLOEXEC 5.11), glibc 2.34."""
        fn = getattr(self._libc, "close_range", None)
        if fn is None:
            raise OSError(38, "close_range: not in this C library")
        c = self._ctypes
        self._check(fn(c.c_uint(first), c.c_uint(last), c.c_int(flags)), "close_range", str(first))

    # -- root filesystem (corral.linux.rootfs) ------------------------------------------

    def mount_setattr(
        self, dirfd: int, path: str, flags: int, attr_set: int, attr_clr: int
    ) -> None:
        """mount_setattr(2), Linux 5.12."""
        self._mount_setattr(dirfd, path, flags, attr_set, attr_clr, 0)

    def _mount_setattr(
        self, dirfd: int, path: str, flags: int, attr_set: int, attr_clr: int, userns_fd: int
    ) -> None:
        import ctypes as c

        class MountAttr(c.Structure):
            _fields_ = (
                ("attr_set", c.c_uint64),
                ("attr_clr", c.c_uint64),
                ("propagation", c.c_uint64),
                ("userns_fd", c.c_uint64),
            )

        attr = MountAttr(attr_set, attr_clr, 0, userns_fd)
        result = self._syscall(
            "mount_setattr", c.c_int(dirfd), self._b(path), c.c_uint(flags), c.byref(attr),
            c.c_size_t(c.sizeof(attr)),
        )  # fmt: skip
        self._check(result, "mount_setattr", path)

    def chroot(self, path: str) -> None:
        os.chroot(path)

    # -- devices, scheduling, memory policy, personality, LSM checks --------------------

    def mknodat(self, dirfd: int, name: str, mode: int, device: int) -> None:
        """mknodat(2) in a directory fd (an O_PATH one will do): no path walk to redirect."""
        try:
            os.mknod(name, mode, device, dir_fd=dirfd)
        except OSError as error:
            raise type(error)(error.errno, f"mknod {name}: {error.strerror}") from None

    def personality(self, persona: int) -> int:
        """personality(2); 0xffffffff only queries. Returns the previous persona."""
        fn = self._libc.personality
        fn.argtypes = [self._ctypes.c_ulong]
        return self._check(fn(persona), "personality", hex(persona))

    def sched_setattr(
        self,
        policy: int,
        flags: int,
        nice: int,
        priority: int,
        runtime: int,
        deadline: int,
        period: int,
    ) -> None:
        """sched_setattr(2) on the calling thread (struct sched_attr, SCHED_ATTR_SIZE_VER0)."""
        import ctypes as c

        class SchedAttr(c.Structure):
            _fields_ = (
                ("size", c.c_uint32),
                ("sched_policy", c.c_uint32),
                ("sched_flags", c.c_uint64),
                ("sched_nice", c.c_int32),
                ("sched_priority", c.c_uint32),
                ("sched_runtime", c.c_uint64),
                ("sched_deadline", c.c_uint64),
                ("sched_period", c.c_uint64),
            )

        attr = SchedAttr(c.sizeof(SchedAttr), policy, flags, nice, priority, runtime,
                         deadline, period)  # fmt: skip
        result = self._syscall("sched_setattr", c.c_int(0), c.byref(attr), c.c_uint(0))
        self._check(result, "sched_setattr", str(policy))

    def ioprio_set(self, which: int, who: int, ioprio: int) -> None:
        c = self._ctypes
        result = self._syscall("ioprio_set", c.c_int(which), c.c_int(who), c.c_int(ioprio))
        self._check(result, "ioprio_set", hex(ioprio))

    def ioprio_get(self, which: int, who: int) -> int:
        c = self._ctypes
        result = self._syscall("ioprio_get", c.c_int(which), c.c_int(who))
        return self._check(result, "ioprio_get", str(who))

    def sched_setaffinity(self, cpus: set[int]) -> None:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError as error:
            listed = ",".join(str(cpu) for cpu in sorted(cpus))
            raise OSError(error.errno, f"sched_setaffinity {listed}: {error.strerror}") from None

    def set_mempolicy(self, mode: int, nodes: set[int]) -> None:
        """set_mempolicy(2); ``nodes`` become the nodemask (an array of C longs)."""
        c = self._ctypes
        bits = 8 * c.sizeof(c.c_ulong)
        words = max(nodes, default=-1) // bits + 1
        mask = (c.c_ulong * max(words, 1))()
        for node in nodes:
            mask[node // bits] |= 1 << (node % bits)
        # The kernel reads maxnode - 1 bits (a historical off-by-one in get_nodes()).
        maxnode = words * bits + 1 if nodes else 0
        pointer = mask if nodes else None
        result = self._syscall("set_mempolicy", c.c_int(mode), pointer, c.c_ulong(maxnode))
        self._check(result, "set_mempolicy", hex(mode))

    def fstatfs_type(self, fd: int) -> int:
        """The f_type of fstatfs(2): which filesystem ``fd`` lives on (PROC_SUPER_MAGIC...)."""
        c = self._ctypes
        # struct statfs starts with f_type (a long on 64-bit Linux); 256 bytes hold it all.
        buffer = (c.c_long * 32)()
        self._check(self._libc.fstatfs(c.c_int(fd), buffer), "fstatfs", str(fd))
        return int(buffer[0]) & 0xFFFFFFFF

    # -- idmapped mounts (corral.linux.idmap) ----------------------------------------------

    def open_tree(self, dirfd: int, path: str, flags: int) -> int:
        """open_tree(2), Linux 5.2.

        With OPEN_TREE_CLONE the fd holds a detached copy of the mount at ``path``.
        """
        c = self._ctypes
        result = self._syscall("open_tree", c.c_int(dirfd), self._b(path), c.c_uint(flags))
        return self._check(result, "open_tree", path)

    def move_mount(
        self, from_dirfd: int, from_path: str, to_dirfd: int, to_path: str, flags: int
    ) -> None:
        """move_mount(2), Linux 5.2."""
        c = self._ctypes
        result = self._syscall(
            "move_mount", c.c_int(from_dirfd), self._b(from_path), c.c_int(to_dirfd),
            self._b(to_path), c.c_uint(flags),
        )  # fmt: skip
        self._check(result, "move_mount", to_path or from_path)

    def mount_setattr_idmap(self, dirfd: int, path: str, flags: int, userns_fd: int) -> None:
        """mount_setattr(2) setting MOUNT_ATTR_IDMAP (0x100000) with the user namespace
        ``userns_fd`` as the mount's idmapping (Linux 5.12)."""
        self._mount_setattr(dirfd, path, flags, 0x100000, 0, userns_fd)

    # -- eBPF (corral.linux.cgroups.devices) ------------------------------------------------

    def bpf(
        self,
        command: int,
        attr: bytearray,
        pointers: tuple[tuple[int, bytes | bytearray], ...],
        what: str,
    ) -> int:
        """bpf(2) with ``attr`` (a ``union bpf_attr`` built by the caller, updated in place
        with what the kernel writes back). Each ``(offset, data)`` of ``pointers`` puts the
        address of a copy of ``data`` at ``offset`` of ``attr`` (an ``__aligned_u64``); a
        bytearray is passed as is, so the kernel's writes into it are seen by the caller."""
        c = self._ctypes
        keep = []  # the buffers must outlive the call
        for offset, data in pointers:
            if isinstance(data, bytearray):
                buffer: ctypes.Array[ctypes.c_char] = (c.c_char * len(data)).from_buffer(data)
            else:
                buffer = c.create_string_buffer(data, len(data))
            keep.append(buffer)
            # x86_64 and aarch64 (the only machines in _SYSCALL_NUMBERS) are little-endian.
            attr[offset : offset + 8] = c.addressof(buffer).to_bytes(8, "little")
        view = (c.c_char * len(attr)).from_buffer(attr)
        result = self._syscall("bpf", c.c_int(command), view, c.c_uint(len(attr)))
        del keep
        return self._check(result, "bpf", what)

    def pidfd_getfd(self, pidfd: int, target_fd: int) -> int:
        """A copy of descriptor ``target_fd`` of the process ``pidfd`` refers to
        (pidfd_getfd(2), Linux 5.6; the copy is close-on-exec)."""
        return self._check(self._syscall("pidfd_getfd", pidfd, target_fd, 0), "pidfd_getfd")

    def seccomp_set_mode_filter(self, flags: int, program: bytes) -> int:
        """Install the classic BPF ``program`` (struct sock_filter[]) with seccomp(2)'s
        SECCOMP_SET_MODE_FILTER and ``flags``; the listener fd with
        SECCOMP_FILTER_FLAG_NEW_LISTENER, else 0."""
        c = self._ctypes
        code = c.create_string_buffer(program, len(program))
        # struct sock_fprog { unsigned short len; struct sock_filter *filter; }: the
        # pointer is 8-aligned on the 64-bit little-endian machines of _SYSCALL_NUMBERS.
        fprog = bytearray(16)
        fprog[0:2] = (len(program) // 8).to_bytes(2, "little")
        fprog[8:16] = c.addressof(code).to_bytes(8, "little")
        view = (c.c_char * len(fprog)).from_buffer(fprog)
        result = self._syscall("seccomp", c.c_uint(1), c.c_uint(flags), view)
        del code
        return self._check(result, "seccomp")
