"""linux.seccomp translated into libseccomp calls, against a recording fake binding.

No root and no library needed: :class:`FakeLib` records each call the way
:class:`corral.linux.libseccomp.Libseccomp` would make it, and knows a few syscalls.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Any

import pytest

from corral.errors import ConfigError, CreateError
from corral.linux import seccomp, seccomp_notify
from corral.linux.seccomp import ACTIONS, OPERATORS, compile_profile, load_seccomp, parse_profile

KNOWN = {"mkdir": 83, "mkdirat": 258, "kill": 62, "write": 1, "personality": 135}
ARCH_TOKENS = {"x86_64": 0xC000003E, "x86": 0x40000003, "x32": 0x4000003E, "aarch64": 0xC00000B7}


class FakeLib:
    """Records the libseccomp calls; ``attr_fails`` lists attributes it refuses."""

    def __init__(self, attr_fails: tuple[int, ...] = (), api: int = 6) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.attr_fails = attr_fails
        self.api = api
        self.released: list[int] = []
        self._next = 100

    def version(self) -> tuple[int, int, int]:
        return (2, 5, 4)

    def api_level(self) -> int:
        return self.api

    def init(self, default_action: int) -> int:
        self._next += 1
        self.calls.append(("init", default_action))
        return self._next

    def release(self, ctx: int) -> None:
        self.released.append(ctx)

    def attr_set(self, ctx: int, attribute: int, value: int) -> None:
        if attribute in self.attr_fails:
            raise OSError(errno.EOPNOTSUPP, "seccomp_attr_set")
        self.calls.append(("attr", attribute, value))

    def arch_resolve_name(self, name: str) -> int:
        return ARCH_TOKENS.get(name, 0)

    def arch_add(self, ctx: int, token: int) -> None:
        self.calls.append(("arch", token))

    def syscall_resolve_name(self, name: str) -> int:
        return KNOWN.get(name, -1)

    def rule_add(
        self, ctx: int, action: int, syscall: int, conditions: list[tuple[int, int, int, int]]
    ) -> None:
        self.calls.append(("rule", action, syscall, tuple(conditions)))

    def load(self, ctx: int) -> None:
        self.calls.append(("load",))

    def export_bpf(self, ctx: int, fd: int) -> None:
        # A stand-in program: one sock_filter per rule recorded so far.
        self.calls.append(("export",))
        os.write(fd, b"\x06\x00\x00\x00\x00\x00\xff\x7f" * max(1, len(rules(self))))


class FakeSyscalls:
    """Records seccomp(2); with NEW_LISTENER it returns a descriptor (of /dev/null)."""

    def __init__(self, error: int = 0) -> None:
        self.loaded: list[tuple[int, bytes]] = []
        self.error = error

    def seccomp_set_mode_filter(self, flags: int, program: bytes) -> int:
        if self.error:
            raise OSError(self.error, "seccomp")
        self.loaded.append((flags, program))
        return os.open("/dev/null", os.O_RDONLY) if flags & 8 else 0


@pytest.fixture(autouse=True)
def _fresh_memory_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "_compiled", {})


def rules(lib: FakeLib) -> list[tuple[Any, ...]]:
    return [call[1:] for call in lib.calls if call[0] == "rule"]


def compiled(raw: dict[str, Any], lib: FakeLib | None = None, **kwargs: Any) -> FakeLib:
    lib = lib or FakeLib()
    compile_profile(lib, parse_profile(raw), **kwargs)  # type: ignore[arg-type]
    return lib


def allow_but(*entries: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(entries), **extra}


# -- actions and errno ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SCMP_ACT_KILL", 0x00000000),
        ("SCMP_ACT_KILL_THREAD", 0x00000000),
        ("SCMP_ACT_KILL_PROCESS", 0x80000000),
        ("SCMP_ACT_TRAP", 0x00030000),
        ("SCMP_ACT_ERRNO", 0x00050000 | errno.EPERM),
        ("SCMP_ACT_TRACE", 0x7FF00000 | errno.EPERM),
        ("SCMP_ACT_LOG", 0x7FFC0000),
        ("SCMP_ACT_NOTIFY", 0x7FC00000),
    ],
)
def test_every_action_becomes_libseccomp_value(name: str, value: int) -> None:
    raw = allow_but({"names": ["mkdir"], "action": name})
    if name == "SCMP_ACT_NOTIFY":
        raw["listenerPath"] = "/run/agent.sock"
    assert rules(compiled(raw)) == [(value, 83, ())]


def test_allow_rule_under_a_deny_default() -> None:
    lib = compiled({"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [
        {"names": ["write"], "action": "SCMP_ACT_ALLOW"}]})  # fmt: skip
    assert lib.calls[0] == ("init", 0x80000000)
    assert rules(lib) == [(0x7FFF0000, 1, ())]


def test_errno_ret_and_default_errno_ret() -> None:
    lib = compiled(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": errno.ENOSYS,
            "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXFULL},
                {"names": ["kill"], "action": "SCMP_ACT_TRACE", "errnoRet": 0},
                {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
            ],
        }
    )
    assert lib.calls[0] == ("init", 0x00050000 | errno.ENOSYS)
    assert rules(lib) == [
        (0x00050000 | errno.EXFULL, 83, ()),
        (0x7FF00000, 62, ()),
        (0x7FFF0000, 1, ()),
    ]


def test_default_errno_is_eperm() -> None:
    assert compiled({"defaultAction": "SCMP_ACT_ERRNO"}).calls[0] == ("init", 0x00050001)


@pytest.mark.parametrize("action", ["SCMP_ACT_ALLOW", "SCMP_ACT_KILL", "SCMP_ACT_LOG"])
def test_errno_ret_on_an_action_without_errno_is_an_error(action: str) -> None:
    with pytest.raises(ConfigError, match=r"linux.seccomp.syscalls\[0\].errnoRet"):
        parse_profile(allow_but({"names": ["mkdir"], "action": action, "errnoRet": 1}))
    with pytest.raises(ConfigError, match=r"linux.seccomp.defaultErrnoRet"):
        parse_profile({"defaultAction": action, "defaultErrnoRet": 1})


@pytest.mark.parametrize("bad", [-1, 4096, "1", True, 1.5])
def test_errno_ret_range(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"syscalls\[0\].errnoRet: must be an integer"):
        parse_profile(allow_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": bad}))


def test_rule_with_the_default_action_is_skipped() -> None:
    lib = compiled(allow_but({"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}))
    assert rules(lib) == []
    # ERRNO with another errno than the default's is a different action: kept.
    lib = compiled({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2},
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO"}]})  # fmt: skip
    assert rules(lib) == [(0x00050002, 83, ())]


# -- conditions -----------------------------------------------------------------------------


@pytest.mark.parametrize(("op", "number"), sorted(OPERATORS.items()))
def test_every_operator(op: str, number: int) -> None:
    raw = allow_but(
        {
            "names": ["kill"],
            "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 1, "value": 9, "valueTwo": 3, "op": op}],
        }
    )
    assert rules(compiled(raw)) == [(0x00050001, 62, ((1, number, 9, 3),))]


def test_operator_numbers_are_libseccomps() -> None:
    # enum scmp_compare in seccomp.h
    assert OPERATORS == {
        "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
        "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
    }  # fmt: skip


def test_conditions_on_different_arguments_are_one_rule() -> None:
    raw = allow_but(
        {
            "names": ["kill"],
            "action": "SCMP_ACT_ERRNO",
            "args": [
                {"index": 0, "value": 1, "op": "SCMP_CMP_GT"},
                {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
            ],
        }
    )
    assert rules(compiled(raw)) == [(0x00050001, 62, ((0, 6, 1, 0), (1, 4, 9, 0)))]


def test_conditions_on_one_argument_are_separate_rules() -> None:
    raw = allow_but(
        {
            "names": ["kill", "mkdir"],
            "action": "SCMP_ACT_ERRNO",
            "args": [
                {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 1, "op": "SCMP_CMP_NE"},
            ],
        }
    )
    assert rules(compiled(raw)) == [
        (0x00050001, 62, ((1, 4, 9, 0),)),
        (0x00050001, 62, ((1, 4, 15, 0),)),
        (0x00050001, 62, ((0, 1, 1, 0),)),
        (0x00050001, 83, ((1, 4, 9, 0),)),
        (0x00050001, 83, ((1, 4, 15, 0),)),
        (0x00050001, 83, ((0, 1, 1, 0),)),
    ]


def test_value_two_defaults_to_zero_and_null_is_zero() -> None:
    arg = {"index": 1, "value": 2**64 - 1, "valueTwo": None, "op": "SCMP_CMP_MASKED_EQ"}
    raw = allow_but({"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [arg]})
    assert rules(compiled(raw)) == [(0x00050001, 62, ((1, 7, 2**64 - 1, 0),))]


@pytest.mark.parametrize(
    ("arg", "field"),
    [
        ({"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}, "index"),
        ({"index": -1, "value": 1, "op": "SCMP_CMP_EQ"}, "index"),
        ({"value": 1, "op": "SCMP_CMP_EQ"}, "index"),
        ({"index": 0, "value": 2**64, "op": "SCMP_CMP_EQ"}, "value"),
        ({"index": 0, "op": "SCMP_CMP_EQ"}, "value"),
        ({"index": 0, "value": 1, "valueTwo": -1, "op": "SCMP_CMP_EQ"}, "valueTwo"),
        ({"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}, "op"),
        ({"index": 0, "value": 1}, "op"),
    ],
)
def test_bad_condition_names_its_field(arg: dict[str, Any], field: str) -> None:
    raw = allow_but({"names": ["mkdir"], "action": "SCMP_ACT_LOG"},
                    {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [arg]})  # fmt: skip
    with pytest.raises(ConfigError, match=rf"linux.seccomp.syscalls\[1\].args\[0\].{field}:"):
        parse_profile(raw)


# -- names, architectures, flags --------------------------------------------------------------


def test_unknown_syscall_names_are_skipped_with_a_debug_line() -> None:
    lines: list[str] = []
    raw = allow_but({"names": ["fchmodat2", "mkdir", "no_such_call"], "action": "SCMP_ACT_ERRNO"})
    lib = compiled(raw, debug=lines.append)
    assert rules(lib) == [(0x00050001, 83, ())]
    assert lines == [
        'unknown seccomp syscall "fchmodat2" ignored',
        'unknown seccomp syscall "no_such_call" ignored',
    ]
    assert seccomp.unknown_syscalls(lib, parse_profile(raw)) == ["fchmodat2", "no_such_call"]  # type: ignore[arg-type]


def test_architectures_are_added_by_token() -> None:
    lib = compiled(allow_but(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]))
    assert [c for c in lib.calls if c[0] == "arch"] == [
        ("arch", 0xC000003E), ("arch", 0x40000003), ("arch", 0x4000003E)]  # fmt: skip


def test_unknown_architecture_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError, match=r"linux.seccomp.architectures\[1\]: unknown architecture"
    ):
        parse_profile(allow_but(architectures=["SCMP_ARCH_X86", "SCMP_ARCH_Z80"]))


def test_architecture_this_libseccomp_lacks_names_the_field() -> None:
    profile = parse_profile(allow_but(architectures=["SCMP_ARCH_X86", "SCMP_ARCH_LOONGARCH64"]))
    with pytest.raises(
        ConfigError,
        match=r"architectures\[1\]: SCMP_ARCH_LOONGARCH64 is not known to libseccomp 2.5.4",
    ):
        seccomp.check_support(FakeLib(), profile)  # type: ignore[arg-type]


def test_no_new_privs_attribute_is_always_off() -> None:
    assert ("attr", 3, 0) in compiled(allow_but()).calls


@pytest.mark.parametrize(
    ("flag", "attribute"),
    [
        ("SECCOMP_FILTER_FLAG_TSYNC", 4),
        ("SECCOMP_FILTER_FLAG_LOG", 6),
        ("SECCOMP_FILTER_FLAG_SPEC_ALLOW", 7),
        ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", 10),
    ],
)
def test_each_flag_is_a_filter_attribute(flag: str, attribute: int) -> None:
    assert ("attr", attribute, 1) in compiled(allow_but(flags=[flag])).calls


def test_unknown_flag_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"linux.seccomp.flags\[0\]: unknown seccomp flag"):
        parse_profile(allow_but(flags=["SECCOMP_FILTER_FLAG_NEW_LISTENER"]))


def test_unsupported_flag_names_its_index() -> None:
    lib = FakeLib(attr_fails=(10,))
    supported = seccomp.supported_flags(lib)  # type: ignore[arg-type]
    assert supported == [f"SECCOMP_FILTER_FLAG_{n}" for n in ("TSYNC", "LOG", "SPEC_ALLOW")]
    flags = ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    profile = parse_profile(allow_but(flags=flags))
    with pytest.raises(ConfigError, match=r"linux.seccomp.flags\[1\]: SECCOMP_FILTER_FLAG_WAIT"):
        seccomp.check_support(lib, profile)  # type: ignore[arg-type]
    with pytest.raises(CreateError, match=r"linux.seccomp.flags\[1\]: not supported"):
        compile_profile(lib, profile)  # type: ignore[arg-type]
    assert lib.released  # the half-built filter is freed


def test_more_than_32_entries_turn_on_the_binary_tree() -> None:
    many = [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": n} for n in range(33)]
    assert ("attr", 8, 2) in compiled(allow_but(*many)).calls
    assert ("attr", 8, 2) not in compiled(allow_but(*many[:32])).calls


# -- the profile's shape ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], r"^config.json: linux.seccomp: must be an object"),
        ({}, r"linux.seccomp.defaultAction: required field is missing"),
        ({"defaultAction": "SCMP_ACT_DENY"}, r"defaultAction: unknown seccomp action"),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, r"defaultAction: SCMP_ACT_NOTIFY cannot be"),
        (allow_but({"names": [], "action": "SCMP_ACT_ERRNO"}), r"syscalls\[0\].names: must be"),
        (allow_but({"names": [""], "action": "SCMP_ACT_ERRNO"}), r"syscalls\[0\].names\[0\]"),
        (allow_but({"names": ["mkdir"]}), r"syscalls\[0\].action: required field is missing"),
        (allow_but({"names": ["mkdir"], "action": "KILL"}), r"syscalls\[0\].action: unknown"),
        (allow_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": {}}),
         r"syscalls\[0\].args: must be an array"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": ["mkdir"]}, r"syscalls\[0\]: must be"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}, r"linux.seccomp.syscalls: must be"),
        (allow_but(architectures=[1]), r"architectures\[0\]: must be a string"),
        (allow_but({"names": ["write"], "action": "SCMP_ACT_NOTIFY"}, listenerPath="/a"),
         r"syscalls\[0\].action: SCMP_ACT_NOTIFY cannot be used for the write syscall"),
        (allow_but({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}),
         r"linux.seccomp.listenerPath: required when SCMP_ACT_NOTIFY is used"),
        (allow_but(listenerMetadata="x"), r"listenerMetadata: must not be set without"),
        (allow_but(listenerPath="rel.sock"), r"listenerPath: must be an absolute path"),
        (allow_but(listenerPath=3), r"listenerPath: must be a string"),
    ],
)  # fmt: skip
def test_bad_profiles_name_the_field(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_profile(raw)


def test_listener_path_without_notify_is_ignored() -> None:
    profile = parse_profile(allow_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                                      listenerPath="/run/agent.sock"))  # fmt: skip
    assert not profile.notify


def test_notify_needs_api_level_6() -> None:
    profile = parse_profile(allow_but({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
                                      listenerPath="/a.sock"))  # fmt: skip
    with pytest.raises(ConfigError, match=r"SCMP_ACT_NOTIFY needs libseccomp >= 2\.5"):
        seccomp.check_support(FakeLib(api=5), profile)  # type: ignore[arg-type]
    seccomp.check_support(FakeLib(api=6), profile)  # type: ignore[arg-type]


def test_actions_table_has_every_spec_action() -> None:
    spec_actions = {"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                    "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
                    "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"}  # fmt: skip
    assert set(ACTIONS) == spec_actions


# -- the library --------------------------------------------------------------------------


def test_missing_library_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.linux import libseccomp
    from corral.spec.model import parse_config

    def missing() -> None:
        raise OSError("libseccomp.so.2: cannot open shared object file")

    monkeypatch.setattr(libseccomp, "open_library", missing)
    spec = parse_config(
        {
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["true"], "cwd": "/"},
            "linux": {"seccomp": allow_but()},
        }
    )
    with pytest.raises(ConfigError) as caught:
        seccomp.check_seccomp(spec)
    assert str(caught.value) == (
        "config.json: linux.seccomp: libseccomp is not installed (Debian: libseccomp2)"
    )


def test_config_without_seccomp_does_not_open_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.linux import libseccomp
    from corral.spec.model import parse_config

    monkeypatch.setattr(libseccomp, "open_library", lambda: pytest.fail("opened"))
    spec = parse_config({"ociVersion": "1.0.2", "root": {"path": "rootfs"},
                         "process": {"args": ["true"], "cwd": "/"}, "linux": {}})  # fmt: skip
    seccomp.check_seccomp(spec)


# -- loading and the notify hand-off --------------------------------------------------------


def test_load_installs_the_exported_program(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = FakeLib()
    monkeypatch.setattr(seccomp, "library", lambda: lib)
    sc = FakeSyscalls()
    raw = allow_but(
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}, flags=["SECCOMP_FILTER_FLAG_LOG"]
    )
    load_seccomp(raw, sc=sc)  # type: ignore[arg-type]
    assert sc.loaded == [(2, b"\x06\x00\x00\x00\x00\x00\xff\x7f")]  # LOG, one rule
    assert lib.released == [101]  # the compiled context is freed after the export


def test_program_is_compiled_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = FakeLib()
    monkeypatch.setattr(seccomp, "library", lambda: lib)
    raw = allow_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"})
    first = seccomp.compiled_program(raw)
    assert seccomp.compiled_program(raw) == first
    assert [c for c in lib.calls if c[0] == "export"] == [("export",)]


def test_program_cache_file_in_the_state_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    lib = FakeLib()
    monkeypatch.setattr(seccomp, "library", lambda: lib)
    raw = allow_but({"names": ["mkdir", "kill"], "action": "SCMP_ACT_ERRNO"})
    program = seccomp.compiled_program(raw, cache_dir=str(tmp_path))
    (cached,) = tmp_path.iterdir()
    assert cached.name.startswith("seccomp-") and cached.name.endswith(".bpf")
    assert cached.read_bytes() == program
    assert oct(cached.stat().st_mode & 0o777) == "0o600"
    # Another process (an empty memory cache) reads the file instead of compiling.
    monkeypatch.setattr(seccomp, "_compiled", {})
    again = FakeLib()
    monkeypatch.setattr(seccomp, "library", lambda: again)
    assert seccomp.compiled_program(raw, cache_dir=str(tmp_path)) == program
    assert ("export",) not in again.calls
    # A different profile is another file.
    seccomp.compiled_program(allow_but(), cache_dir=str(tmp_path))
    assert len(list(tmp_path.iterdir())) == 2


def test_cache_keeps_the_most_recently_used_programs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setattr(seccomp, "library", FakeLib)
    monkeypatch.setattr(seccomp, "CACHE_ENTRIES", 3)
    profiles = [allow_but({"names": [name], "action": "SCMP_ACT_ERRNO"}) for name in "abcde"]

    def files() -> set[str]:
        return {path.name for path in tmp_path.iterdir()}

    def compile_anew(raw: Any) -> None:
        monkeypatch.setattr(seccomp, "_compiled", {})  # as a new process would
        seccomp.compiled_program(raw, cache_dir=str(tmp_path))

    names: list[str] = []
    for index, raw in enumerate(profiles[:3]):
        compile_anew(raw)
        (name,) = files() - set(names)
        names.append(name)
        os.utime(tmp_path / name, ns=(index * 10**9, index * 10**9))  # a, then b, then c
    compile_anew(profiles[0])  # a used again: now the most recent
    compile_anew(profiles[3])  # d: one too many, b (least recently used) goes
    assert names[1] not in files()
    assert {names[0], names[2]} <= files()
    assert len(files()) == 3
    # An unrelated file in the state root (a container's directory) is never touched.
    (tmp_path / "c1").mkdir()
    compile_anew(profiles[4])
    assert (tmp_path / "c1").is_dir()
    assert len([name for name in files() if name.endswith(".bpf")]) == 3


def test_corrupt_cache_file_is_recompiled(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    lib = FakeLib()
    monkeypatch.setattr(seccomp, "library", lambda: lib)
    raw = allow_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"})
    program = seccomp.compiled_program(raw, cache_dir=str(tmp_path))
    (cached,) = tmp_path.iterdir()
    cached.write_bytes(b"short")  # not whole sock_filter entries
    monkeypatch.setattr(seccomp, "_compiled", {})
    again = FakeLib()
    monkeypatch.setattr(seccomp, "library", lambda: again)
    assert seccomp.compiled_program(raw, cache_dir=str(tmp_path)) == program
    assert ("export",) in again.calls
    assert cached.read_bytes() == program


@pytest.mark.parametrize(
    ("flags", "notify", "expected"),
    [
        ([], False, 0),
        (["SECCOMP_FILTER_FLAG_TSYNC"], False, 1),
        (["SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"], False, 36),
        ([], True, 8),
        (["SECCOMP_FILTER_FLAG_TSYNC"], True, 1 | 8 | 16),  # TSYNC_ESRCH with a listener
    ],
)
def test_kernel_flags(flags: list[str], notify: bool, expected: int) -> None:
    entry = {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" if notify else "SCMP_ACT_LOG"}
    profile = parse_profile(allow_but(entry, flags=flags, listenerPath="/a.sock"))
    assert seccomp.kernel_flags(profile) == expected


def test_load_failure_explains_eacces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "library", FakeLib)
    with pytest.raises(CreateError, match="needs CAP_SYS_ADMIN or no_new_privs"):
        load_seccomp(allow_but(), sc=FakeSyscalls(errno.EACCES))  # type: ignore[arg-type]


def test_notify_fd_is_handed_over_then_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "library", FakeLib)
    seen: list[int] = []
    raw = allow_but({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}, listenerPath="/a.sock")
    sc = FakeSyscalls()
    load_seccomp(raw, hand_over=seen.append, sc=sc)  # type: ignore[arg-type]
    assert len(seen) == 1
    assert sc.loaded[0][0] == 8  # SECCOMP_FILTER_FLAG_NEW_LISTENER
    with pytest.raises(OSError):
        os.fstat(seen[0])  # closed after the hand-off


def test_notify_sent_directly_to_the_listener(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setattr(seccomp, "library", FakeLib)
    path = str(tmp_path / "agent.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    raw = allow_but({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}, listenerPath=path,
                    listenerMetadata="meta")  # fmt: skip
    state = {"ociVersion": "1.3.0", "id": "c1", "status": "running", "pid": 7, "bundle": "/b"}
    load_seccomp(raw, container_state=state, sc=FakeSyscalls())  # type: ignore[arg-type]
    connection, _ = server.accept()
    data, ancillary, _, _ = connection.recvmsg(65536, socket.CMSG_SPACE(16))
    import json

    message = json.loads(data)
    assert message == {"ociVersion": message["ociVersion"], "fds": ["seccompFd"],
                       "pid": os.getpid(), "metadata": "meta", "state": state}  # fmt: skip
    ((level, kind, payload),) = ancillary
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
    (fd,) = struct.unpack("i", payload)
    assert os.readlink(f"/proc/self/fd/{fd}") == "/dev/null"  # the fake's "listener"
    os.close(fd)
    assert connection.recv(1) == b""  # the runtime closed the connection
    connection.close()
    server.close()


def test_send_to_a_missing_listener_names_the_path(tmp_path: Any) -> None:
    path = str(tmp_path / "none.sock")
    with pytest.raises(CreateError, match=rf'linux.seccomp.listenerPath "{path}": '):
        seccomp_notify.send_to_listener(path, 0, {"ociVersion": "1.3.0"})


def test_process_state_omits_empty_metadata() -> None:
    message = seccomp_notify.process_state({"id": "c"}, 42, "")
    assert message["fds"] == ["seccompFd"]
    assert message["pid"] == 42
    assert "metadata" not in message


def test_find_notify_fd_reads_proc_links(tmp_path: Any) -> None:
    fd_dir = tmp_path / "5" / "fd"
    fd_dir.mkdir(parents=True)
    os.symlink("/dev/null", fd_dir / "3")
    os.symlink("anon_inode:seccomp notify", fd_dir / "7")
    assert seccomp_notify.find_notify_fd(5, proc=str(tmp_path)) == 7
    os.unlink(fd_dir / "7")
    with pytest.raises(CreateError, match="holds no seccomp listener"):
        seccomp_notify.find_notify_fd(5, proc=str(tmp_path))
