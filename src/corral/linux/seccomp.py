"""``linux.seccomp``: the OCI profile, checked, compiled by libseccomp, loaded.

Four steps, so the pure one can be tested without root or the library:

1. :func:`parse_profile` checks the JSON and turns it into a :class:`Profile` of
   numbers (actions, operators, flags): every mistake is a
   :class:`~corral.errors.ConfigError` naming the field
   (``linux.seccomp.syscalls[2].args[0].op``);
2. :func:`compile_profile` makes the libseccomp calls (:mod:`corral.linux.libseccomp`):
   ``seccomp_init`` with the default action, the flags as filter attributes, the
   architectures, one rule per syscall name;
3. :func:`compiled_program` has libseccomp generate the BPF program
   (``seccomp_export_bpf``) and caches it: in memory, and as a file in the state root
   keyed by a hash of the profile (generation costs ~15 ms for podman's profile, more
   than the rest of ``create``'s seccomp work together);
4. :func:`load_seccomp` loads that program into the calling thread with seccomp(2)
   (the flags libseccomp would use) and, with ``SCMP_ACT_NOTIFY`` rules, hands the
   listener descriptor on (:mod:`corral.linux.seccomp_notify`).

``create`` runs steps 1-3 in its check, before anything exists, so a bad profile
leaves nothing behind; the init, forked afterwards, finds the program in memory.

runc's rules, which clients rely on, are kept:

* ``SCMP_ACT_KILL`` is ``SCMP_ACT_KILL_THREAD`` (libseccomp's own meaning);
* ``errnoRet``/``defaultErrnoRet`` default to EPERM for ``SCMP_ACT_ERRNO`` and
  ``SCMP_ACT_TRACE``; on any other action they are an error (config-linux.md: "the
  runtime MUST print an error and fail");
* a syscall name libseccomp does not know on the native architecture is skipped (it
  is newer than the library, or of another architecture): podman's profile lists
  such names on purpose; :func:`unknown_syscalls` names them for a debug line;
* a rule whose action is the default action is skipped (libseccomp refuses it);
* the conditions of one entry must all hold (libseccomp ANDs a rule's conditions),
  except when two of them test the same argument: then each condition becomes a rule
  of its own, so any one of them matches (libseccomp cannot AND two tests of one
  argument; runc falls back to this "old behaviour" too);
* the filter never sets no_new_privs itself (``SCMP_FLTATR_CTL_NNP`` off):
  ``process.noNewPrivileges`` decides that; without it, loading needs
  CAP_SYS_ADMIN (seccomp(2)), so the init loads the filter before it drops its
  capabilities, else as late as it can (corral.linux.init);
* ``SCMP_ACT_NOTIFY`` cannot be the default action, nor the action of ``write``: the
  init writes to its parent after the load to hand the descriptor over, and would
  wait forever on its own notification;
* more than 32 syscall entries turn on libseccomp's binary-tree optimisation.

Unlike runc, corral does not patch the compiled BPF so that syscalls newer than
libseccomp answer ENOSYS whatever the default action (runc's ``patchbpf``): current
profiles (podman's, Docker's) set ``defaultErrnoRet`` to ENOSYS or list ``clone3``
with ENOSYS themselves, and patching BPF means owning a BPF assembler.
"""

from __future__ import annotations

from corral.errors import ConfigError, CreateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from corral.linux.libseccomp import Libseccomp
    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Spec

# libseccomp's action values (seccomp.h); ERRNO and TRACE carry 16 bits of data.
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000
ACT_NOTIFY = 0x7FC00000
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,  # = SCMP_ACT_KILL_THREAD
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": _ACT_ERRNO,
    "SCMP_ACT_TRACE": _ACT_TRACE,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_NOTIFY": ACT_NOTIFY,
}
_TAKES_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
# enum scmp_compare
OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
# config-linux.md's list (libseccomp 2.6); the part after SCMP_ARCH_, lower-cased, is
# libseccomp's name, which tells whether this build of the library knows it.
ARCHITECTURES = (
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
)  # fmt: skip
# Each flag of seccomp(2) is a libseccomp filter attribute (enum scmp_filter_attr).
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 4,  # SCMP_FLTATR_CTL_TSYNC
    "SECCOMP_FILTER_FLAG_LOG": 6,  # SCMP_FLTATR_CTL_LOG
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 7,  # SCMP_FLTATR_CTL_SSB
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 10,  # SCMP_FLTATR_CTL_WAITKILL (2.6)
}
_ATTR_CTL_NNP = 3
_ATTR_CTL_OPTIMIZE = 8
_OPTIMIZE_ABOVE = 32  # syscall entries; runc's threshold for the binary tree
MAX_ARGUMENTS = 6  # a Linux syscall has at most six (seccomp_data.args)
MAX_ERRNO = 4095  # the kernel clamps larger values (SECCOMP_RET_ERRNO, MAX_ERRNO)
NOTIFY_API_LEVEL = 6  # seccomp_api_get(3): the listener works (libseccomp 2.5, Linux 5.7)
EPERM = 1
_U64 = (1 << 64) - 1
NOT_INSTALLED = "libseccomp is not installed (Debian: libseccomp2)"


class Rule:
    """One ``syscalls[]`` entry: for each name, one libseccomp rule per condition set."""

    __slots__ = ("action", "condition_sets", "names", "where")

    def __init__(
        self,
        names: list[str],
        action: int,
        condition_sets: list[list[tuple[int, int, int, int]]],
        where: str,
    ) -> None:
        self.names = names
        self.action = action
        # Each set is (index, operator, value, valueTwo) tuples that must all hold.
        self.condition_sets = condition_sets
        self.where = where


class Profile:
    """``linux.seccomp`` in numbers."""

    __slots__ = (
        "architectures",
        "default_action",
        "flags",
        "listener_metadata",
        "listener_path",
        "notify",
        "rules",
        "where",
    )

    def __init__(self, where: str) -> None:
        self.where = where
        self.default_action = 0
        self.architectures: list[tuple[str, str]] = []  # (spec name, its field path)
        self.flags: list[tuple[str, str]] = []
        self.rules: list[Rule] = []
        self.notify = False  # some rule's action is SCMP_ACT_NOTIFY
        self.listener_path = ""
        self.listener_metadata = ""


def parse_profile(raw: object, where: str = "linux.seccomp") -> Profile:
    """Check ``raw`` (the JSON object) and return its :class:`Profile`."""
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be an object")
    profile = Profile(where)
    default_name = _action_name(raw.get("defaultAction"), f"{where}.defaultAction")
    if default_name == "SCMP_ACT_NOTIFY":
        raise ConfigError(
            f"{where}.defaultAction",
            "SCMP_ACT_NOTIFY cannot be the default action (the init could not hand "
            "the listener over)",
        )
    profile.default_action = _action(
        default_name, raw.get("defaultErrnoRet"), f"{where}.defaultErrnoRet"
    )
    for index, name in enumerate(_list(raw, "architectures", where)):
        path = f"{where}.architectures[{index}]"
        if name not in ARCHITECTURES:
            raise ConfigError(path, f"unknown architecture {name!r}")
        profile.architectures.append((name, path))
    for index, name in enumerate(_list(raw, "flags", where)):
        path = f"{where}.flags[{index}]"
        if name not in FLAGS:
            raise ConfigError(path, f"unknown seccomp flag {name!r}")
        profile.flags.append((name, path))
    for index, entry in enumerate(_list(raw, "syscalls", where, strings=False)):
        rule = _parse_rule(entry, f"{where}.syscalls[{index}]")
        if rule.action == ACT_NOTIFY:
            profile.notify = True
            if "write" in rule.names:
                raise ConfigError(
                    f"{rule.where}.action",
                    "SCMP_ACT_NOTIFY cannot be used for the write syscall (the init "
                    "writes to hand the listener over)",
                )
        if rule.action != profile.default_action:
            profile.rules.append(rule)
    for key in ("listenerPath", "listenerMetadata"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}.{key}", "must be a string")
    profile.listener_path = raw.get("listenerPath") or ""
    profile.listener_metadata = raw.get("listenerMetadata") or ""
    if profile.listener_metadata and not profile.listener_path:
        raise ConfigError(f"{where}.listenerMetadata", "must not be set without listenerPath")
    if profile.notify and not profile.listener_path:
        raise ConfigError(f"{where}.listenerPath", "required when SCMP_ACT_NOTIFY is used")
    if profile.listener_path and not profile.listener_path.startswith("/"):
        raise ConfigError(f"{where}.listenerPath", "must be an absolute path")
    return profile


def _action_name(value: object, path: str) -> str:
    if not isinstance(value, str) or value not in ACTIONS:
        if value is None:
            raise ConfigError(path, "required field is missing")
        raise ConfigError(path, f"unknown seccomp action {value!r}")
    return value


def _action(name: str, errno_ret: object, errno_path: str) -> int:
    if errno_ret is None:
        return ACTIONS[name] | (EPERM if name in _TAKES_ERRNO else 0)
    if name not in _TAKES_ERRNO:
        raise ConfigError(
            errno_path, f"{name} takes no errno (only SCMP_ACT_ERRNO, SCMP_ACT_TRACE)"
        )
    code = _integer(errno_ret, 0, MAX_ERRNO)
    if code is None:
        raise ConfigError(
            errno_path, f"must be an integer from 0 to {MAX_ERRNO}, not {errno_ret!r}"
        )
    return ACTIONS[name] | code


def _integer(value: object, low: int, high: int) -> int | None:
    """``value`` if it is a JSON integer from ``low`` to ``high``, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return None


def _list(raw: dict[str, object], key: str, where: str, *, strings: bool = True) -> list[object]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where}.{key}", "must be an array")
    if strings:
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{where}.{key}[{index}]", "must be a string")
    return value


def _parse_rule(entry: object, where: str) -> Rule:
    if not isinstance(entry, dict):
        raise ConfigError(where, "must be an object")
    names = entry.get("names")
    if not isinstance(names, list) or not names:
        raise ConfigError(f"{where}.names", "must be an array of at least one syscall name")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.names[{index}]", "must be a non-empty string")
    action = _action(
        _action_name(entry.get("action"), f"{where}.action"),
        entry.get("errnoRet"),
        f"{where}.errnoRet",
    )
    conditions = [
        _parse_condition(arg, f"{where}.args[{index}]")
        for index, arg in enumerate(_list(entry, "args", where, strings=False))
    ]
    indexes = [condition[0] for condition in conditions]
    if len(set(indexes)) < len(indexes):
        # Two tests of one argument: libseccomp cannot AND them; each its own rule.
        condition_sets = [[condition] for condition in conditions]
    else:
        condition_sets = [conditions]
    return Rule(list(names), action, condition_sets, where)


def _parse_condition(arg: object, where: str) -> tuple[int, int, int, int]:
    if not isinstance(arg, dict):
        raise ConfigError(where, "must be an object")
    index = _integer(arg.get("index"), 0, MAX_ARGUMENTS - 1)
    if index is None:
        raise ConfigError(
            f"{where}.index",
            f"must be an integer from 0 to {MAX_ARGUMENTS - 1}, not {arg.get('index')!r}",
        )
    value = _integer(arg.get("value"), 0, _U64)
    if value is None:
        raise ConfigError(f"{where}.value", f"must be a uint64, not {arg.get('value')!r}")
    raw_two = arg.get("valueTwo")
    value_two = _integer(0 if raw_two is None else raw_two, 0, _U64)
    if value_two is None:
        raise ConfigError(f"{where}.valueTwo", f"must be a uint64, not {arg.get('valueTwo')!r}")
    op = arg.get("op")
    if not isinstance(op, str) or op not in OPERATORS:
        raise ConfigError(f"{where}.op", f"unknown seccomp operator {op!r}")
    return index, OPERATORS[op], value, value_two


def library() -> Libseccomp:
    """The libseccomp binding; ConfigError when the library is not installed."""
    from corral.linux.libseccomp import open_library

    try:
        return open_library()
    except OSError:
        raise ConfigError("linux.seccomp", NOT_INSTALLED) from None


def check_seccomp(spec: Spec, *, cache_dir: str = "") -> None:
    """What ``create`` verifies before anything exists: the profile, the library, the
    architectures, flags and the listener this library and kernel can do; then the
    program is compiled (or read from ``cache_dir``), so its errors come now too and
    the init, forked later, finds it in memory."""
    raw = (spec.raw.get("linux") or {}).get("seccomp")
    if raw is None:
        return
    profile = parse_profile(raw)
    lib = library()
    check_support(lib, profile)
    compiled_program(raw, cache_dir=cache_dir)


def check_support(lib: Libseccomp, profile: Profile) -> None:
    """ConfigError for what this libseccomp (and kernel) cannot do, naming the field."""
    for name, path in profile.architectures:
        if not lib.arch_resolve_name(_libseccomp_arch(name)):
            raise ConfigError(path, f"{name} is not known to libseccomp {_version(lib)}")
    supported = supported_flags(lib)
    for name, path in profile.flags:
        if name not in supported:
            raise ConfigError(
                path, f"{name} is not supported by libseccomp {_version(lib)} on this kernel"
            )
    if profile.notify and lib.api_level() < NOTIFY_API_LEVEL:
        raise ConfigError(
            f"{profile.where}.syscalls",
            f"SCMP_ACT_NOTIFY needs libseccomp >= 2.5 and Linux >= 5.7 (API level "
            f"{lib.api_level()} < {NOTIFY_API_LEVEL})",
        )


def supported_flags(lib: Libseccomp) -> list[str]:
    """The flags this libseccomp and kernel accept: set each on a scratch filter."""
    ctx = lib.init(ACTIONS["SCMP_ACT_ALLOW"])
    try:
        supported = []
        for name, attribute in FLAGS.items():
            try:
                lib.attr_set(ctx, attribute, 1)
            except OSError:
                continue
            supported.append(name)
        return supported
    finally:
        lib.release(ctx)


def known_architectures(lib: Libseccomp) -> list[str]:
    """config-linux.md's architectures this libseccomp knows."""
    return [name for name in ARCHITECTURES if lib.arch_resolve_name(_libseccomp_arch(name))]


def _libseccomp_arch(name: str) -> str:
    return name[len("SCMP_ARCH_") :].lower()


def _version(lib: Libseccomp) -> str:
    return ".".join(str(part) for part in lib.version())


def unknown_syscalls(lib: Libseccomp, profile: Profile) -> list[str]:
    """The names of the profile libseccomp does not know (they are skipped)."""
    from corral.linux.libseccomp import SYSCALL_UNKNOWN

    return [
        name
        for rule in profile.rules
        for name in rule.names
        if lib.syscall_resolve_name(name) == SYSCALL_UNKNOWN
    ]


def compile_profile(
    lib: Libseccomp, profile: Profile, *, debug: Callable[[str], None] | None = None
) -> int:
    """A libseccomp filter context holding ``profile``; the caller releases it.

    ``debug`` receives one line per syscall name skipped as unknown.
    """
    from corral.linux.libseccomp import SYSCALL_UNKNOWN

    where = profile.where
    try:
        ctx = lib.init(profile.default_action)
    except OSError as error:
        raise ConfigError(f"{where}.defaultAction", _why(error)) from None
    try:
        _set_attribute(lib, ctx, _ATTR_CTL_NNP, 0, where)
        for name, path in profile.flags:
            _set_attribute(lib, ctx, FLAGS[name], 1, path)
        for name, path in profile.architectures:
            token = lib.arch_resolve_name(_libseccomp_arch(name))
            if not token:
                raise ConfigError(path, f"{name} is not known to libseccomp {_version(lib)}")
            try:
                lib.arch_add(ctx, token)
            except OSError as error:
                raise CreateError(f"{path}: {_why(error)}") from None
        if len(profile.rules) > _OPTIMIZE_ABOVE:
            try:
                lib.attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)
            except OSError:
                pass  # an older libseccomp: a linear filter works too, slower
        for rule in profile.rules:
            for name in rule.names:
                number = lib.syscall_resolve_name(name)
                if number == SYSCALL_UNKNOWN:
                    if debug is not None:
                        debug(f'unknown seccomp syscall "{name}" ignored')
                    continue
                for conditions in rule.condition_sets:
                    try:
                        lib.rule_add(ctx, rule.action, number, conditions)
                    except OSError as error:
                        raise CreateError(
                            f"{rule.where}: adding the rule for {name}: {_why(error)}"
                        ) from None
    except BaseException:
        lib.release(ctx)
        raise
    return ctx


def _set_attribute(lib: Libseccomp, ctx: int, attribute: int, value: int, path: str) -> None:
    try:
        lib.attr_set(ctx, attribute, value)
    except OSError as error:
        raise CreateError(
            f"{path}: not supported by libseccomp or the kernel: {_why(error)}"
        ) from None


def _why(error: OSError) -> str:
    import os

    return os.strerror(error.errno) if error.errno else str(error)


def preload() -> None:
    """Import now what loading needs: the container's init calls this before
    ``pivot_root``, after which the host's library file is out of reach."""
    library()
    from corral.linux import libseccomp, seccomp_notify  # noqa: F401


# seccomp(2) flags (linux/seccomp.h) of the profile's flags, for loading a compiled program.
_KERNEL_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}
_NEW_LISTENER = 8
_TSYNC_ESRCH = 16  # with a listener, TSYNC must report failure as ESRCH, not a tid
CACHE_PREFIX = "seccomp-"  # <state root>/seccomp-<sha256>.bpf: files, never container ids
# How many compiled profiles the state root keeps; the least recently used go first. A
# host sees a handful (podman's, containerd's RuntimeDefault, a few Localhost ones);
# profiles generated per container would otherwise pile up a file each.
CACHE_ENTRIES = 32
_compiled: dict[str, bytes] = {}  # profile JSON -> program, for this process and its forks


def kernel_flags(profile: Profile) -> int:
    """The seccomp(2) flags libseccomp would pass when loading ``profile``."""
    flags = 0
    for name, _ in profile.flags:
        flags |= _KERNEL_FLAGS[name]
    if profile.notify:
        flags |= _NEW_LISTENER
        if flags & _KERNEL_FLAGS["SECCOMP_FILTER_FLAG_TSYNC"]:
            flags |= _TSYNC_ESRCH
    return flags


def compiled_program(
    raw: object,
    *,
    where: str = "linux.seccomp",
    cache_dir: str = "",
    debug: Callable[[str], None] | None = None,
) -> bytes:
    """The BPF program (struct sock_filter[]) of the profile ``raw``.

    libseccomp builds it (:func:`compile_profile`, then ``seccomp_export_bpf``): about
    15 ms for podman's profile (docs/seccomp.md), so it is kept, in memory for this
    process (the init, forked after ``create`` checked the profile, finds it there), and
    in ``cache_dir`` as ``seccomp-<sha256>.bpf``, keyed by the profile's JSON, the
    library's version, its API level (what the kernel supports) and the machine.
    """
    from corral.core import jsonio

    text = jsonio.dumps(raw)
    if text in _compiled:
        return _compiled[text]
    profile = parse_profile(raw, where)
    lib = library()
    path = f"{cache_dir}/{CACHE_PREFIX}{_cache_key(lib, text)}.bpf" if cache_dir else ""
    program = _read_cache(path) if path else b""
    if not program:
        program = _export(lib, profile, debug)
        if path:
            _write_cache(path, program)
            _evict_cache(cache_dir, CACHE_ENTRIES)
    _compiled[text] = program
    return program


def _cache_key(lib: Libseccomp, text: str) -> str:
    import hashlib
    import os

    identity = f"{_version(lib)} {lib.api_level()} {os.uname().machine}\n{text}"
    return hashlib.sha256(identity.encode()).hexdigest()


def _export(lib: Libseccomp, profile: Profile, debug: Callable[[str], None] | None) -> bytes:
    import os

    ctx = compile_profile(lib, profile, debug=debug)
    fd = os.memfd_create("corral-seccomp", os.MFD_CLOEXEC)
    try:
        try:
            lib.export_bpf(ctx, fd)
        except OSError as error:
            raise CreateError(f"{profile.where}: generating the filter: {_why(error)}") from None
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)
        lib.release(ctx)


def _read_cache(path: str) -> bytes:
    import os

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return b""
    if not data or len(data) % 8:
        return b""  # not whole sock_filter entries
    try:
        os.utime(path)  # its modification time says when it was last used
    except OSError:
        pass
    return data


def _evict_cache(directory: str, keep: int) -> None:
    """Remove the least recently used cached programs beyond ``keep``."""
    import os

    entries = []
    try:
        with os.scandir(directory) as found:
            for entry in found:
                if entry.name.startswith(CACHE_PREFIX) and entry.name.endswith(".bpf"):
                    try:
                        entries.append((entry.stat().st_mtime_ns, entry.path))
                    except OSError:
                        continue
    except OSError:
        return
    entries.sort()
    for _, path in entries[: max(len(entries) - keep, 0)]:
        try:
            os.unlink(path)
        except OSError:
            pass  # another create removed it first


def _write_cache(path: str, program: bytes) -> None:
    """Write atomically (a reader sees the whole program or none); a failure only
    costs the next ``create`` the compilation."""
    import os

    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        # The state root, made as the state store makes it when the first create comes.
        os.makedirs(path.rpartition("/")[0], 0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, program)
        finally:
            os.close(fd)
        os.rename(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass


def load_seccomp(
    raw: dict[str, object],
    *,
    container_state: dict[str, object] | None = None,
    where: str = "linux.seccomp",
    hand_over: Callable[[int], None] | None = None,
    debug: Callable[[str], None] | None = None,
    sc: Syscalls | None = None,
) -> None:
    """Load the profile ``raw`` into the calling thread (compiled by
    :func:`compiled_program`, so usually already in memory or in the cache).

    With ``SCMP_ACT_NOTIFY`` rules the filter comes with a listener descriptor, which
    must reach ``listenerPath`` before this process execs (else the notified calls
    fail with ENOSYS once the last descriptor is closed):

    * ``hand_over(fd)``, if given, passes it on (the init asks its parent, which
      copies it with pidfd_getfd(2) and sends it: see :mod:`corral.linux.seccomp_notify`);
    * otherwise this process sends it to ``listenerPath`` itself, as resolved in its
      mount namespace, with ``container_state`` (runtime.md's state) in the message
      and its own pid (as its pid namespace sees it) as the process's.

    This process's own descriptor is closed afterwards either way: the container's
    program must never hold the means to answer its own notifications.
    """
    import os

    profile = parse_profile(raw, where)
    program = compiled_program(raw, where=where, debug=debug)
    if sc is None:
        from corral.linux.syscalls import Syscalls

        sc = Syscalls()
    try:
        result = sc.seccomp_set_mode_filter(kernel_flags(profile), program)
    except OSError as error:
        reason = _why(error)
        if error.errno == 13:  # EACCES
            reason += " (loading needs CAP_SYS_ADMIN or no_new_privs)"
        raise CreateError(f"{where}: loading the filter: {reason}") from None
    if not profile.notify:
        return
    notify_fd = result
    try:
        if hand_over is not None:
            hand_over(notify_fd)
        else:
            from corral.linux.seccomp_notify import process_state, send_to_listener

            send_to_listener(
                profile.listener_path,
                notify_fd,
                process_state(container_state or {}, os.getpid(), profile.listener_metadata),
                where=where,
            )
    finally:
        os.close(notify_fd)
