"""The eBPF encoding, the assembler, and device programs run in the test interpreter.

The decisive tests compare, request by request, the generated program (run by
tests/support/bpf_interp.py) with a model of the v1 devices controller written here
from security/device_cgroup.c's rules (the kernel's own behaviour: exceptions kept
as a list, merged and removed by exact key, ``match_exception`` for default deny,
``match_exception_partial`` for default allow). The model is fed the lines corral
would write to ``devices.allow``/``devices.deny``, so it also checks
plan_v1_devices.
"""

from __future__ import annotations

import itertools
import random
import struct

import pytest

from corral.errors import ConfigError
from corral.linux.cgroups.bpf import (
    BPF_ALU,
    BPF_ALU64,
    BPF_EXIT,
    BPF_JMP,
    BPF_JNE,
    BPF_K,
    BPF_MOV,
    BPF_X,
    Assembler,
    device_program,
    encode,
)
from corral.linux.cgroups.devices import (
    STANDARD_RULES,
    DeviceRule,
    device_program_for,
    plan_v1_devices,
)
from support.bpf_interp import BPFError, decide, device_context, run

ANY = -1
WILD = 0xFFFFFFFF  # how the kernel stores "*"


# -- a model of the v1 devices controller ---------------------------------------------------


class KernelModel:
    """security/device_cgroup.c, as far as devices.allow/deny/list and checks go."""

    def __init__(self) -> None:
        self.allow_all = True  # a new cgroup under the root inherits "a *:* rwm"
        self.exceptions: list[list[object]] = []  # [type, major, minor, set of letters]

    def write(self, file: str, line: str) -> None:
        allow = file == "devices.allow"
        if line.startswith("a"):
            self.allow_all = allow
            self.exceptions = []
            return
        kind, numbers, access = line.split()
        major_text, minor_text = numbers.split(":")
        major = WILD if major_text == "*" else int(major_text)
        minor = WILD if minor_text == "*" else int(minor_text)
        letters = set(access)
        adds = allow != self.allow_all  # an allow in a deny-all cgroup adds an exception
        for exception in self.exceptions:
            if exception[:3] == [kind, major, minor]:
                if adds:
                    exception[3] = exception[3] | letters  # type: ignore[operator]
                else:
                    exception[3] = exception[3] - letters  # type: ignore[operator]
                break
        else:
            if adds:
                self.exceptions.append([kind, major, minor, letters])
        self.exceptions = [e for e in self.exceptions if e[3]]

    def allows(self, kind: str, major: int, minor: int, access: str) -> bool:
        wanted = set(access)
        for e_kind, e_major, e_minor, e_access in self.exceptions:
            if e_kind != kind or e_major not in (WILD, major) or e_minor not in (WILD, minor):
                continue
            if self.allow_all and wanted & e_access:  # type: ignore[operator]
                return False  # match_exception_partial
            if not self.allow_all and wanted <= e_access:  # type: ignore[operator]
                return True  # match_exception
        return self.allow_all

    def devices_list(self) -> str:
        if self.allow_all:
            return "a *:* rwm\n"
        lines = []
        for kind, major, minor, access in self.exceptions:
            major_text = "*" if major == WILD else str(major)
            minor_text = "*" if minor == WILD else str(minor)
            letters = "".join(x for x in "rwm" if x in access)  # type: ignore[operator]
            lines.append(f"{kind} {major_text}:{minor_text} {letters}\n")
        return "".join(lines)


def v1_lines(rule: DeviceRule) -> list[tuple[str, str]]:
    """The writes the v1 file API takes for one rule, with corral's reading of a
    partial "a" rule (both types) instead of the kernel's reset."""
    file = "devices.allow" if rule.allow else "devices.deny"
    whole = rule.major == ANY and rule.minor == ANY and set(rule.access) == set("rwm")
    if rule.type == "a" and whole:
        return [(file, "a")]
    kinds = ["c", "b"] if rule.type == "a" else [rule.type]
    return [
        (file, DeviceRule(rule.allow, k, rule.major, rule.minor, rule.access).cgroup_string())
        for k in kinds
    ]


def kernel_after(rules: list[DeviceRule]) -> KernelModel:
    """The model after the rules, starting from deny-all as a container does."""
    model = KernelModel()
    model.write("devices.deny", "a")
    for rule in rules:
        for file, line in v1_lines(rule):
            model.write(file, line)
    return model


MAJORS = (1, 5, 8, 136, 3000000000)
MINORS = (0, 1, 3, 7, 4000000000)
ACCESSES = ("r", "w", "m", "rw", "rm", "wm", "rwm")


def requests() -> list[tuple[str, int, int, str]]:
    return list(itertools.product("bc", MAJORS, MINORS, ACCESSES))


def random_rule(rng: random.Random) -> DeviceRule:
    kind = rng.choice("abcc")
    major = rng.choice((ANY, ANY, 1, 5, 136, 3000000000))
    minor = rng.choice((ANY, ANY, 3, 7, 4000000000))
    access = "".join(x for x in "rwm" if rng.random() < 0.6) or "rwm"
    if kind == "a" and rng.random() < 0.5:
        major, minor, access = ANY, ANY, "rwm"  # a reset, now and then
    return DeviceRule(rng.random() < 0.5, kind, major, minor, access, "linux.resources.x")


# -- encoding -------------------------------------------------------------------------------


def test_encode_matches_hand_worked_bytes() -> None:
    # r0 = 1 (BPF_ALU64 | BPF_MOV | BPF_K = 0xb7), exit (0x95)
    assert encode(BPF_ALU64 | BPF_MOV | BPF_K, 0, imm=1) == bytes.fromhex("b700000001000000")
    assert encode(BPF_JMP | BPF_EXIT) == bytes.fromhex("9500000000000000")
    # if r4 != r0 goto +3: 0x5d, dst in the low nibble, src in the high one
    assert encode(BPF_JMP | BPF_JNE | BPF_X, 4, 0, 3) == bytes.fromhex("5d04030000000000")
    # w2 = 0x8000_0001 (an immediate above s32 is stored as the same 32 bits)
    assert encode(BPF_ALU | BPF_MOV | BPF_K, 2, imm=0x80000001) == bytes.fromhex("b402000001000080")
    # r3 = r2 (64-bit move of a register): src nibble 2, dst 3
    assert encode(BPF_ALU64 | BPF_MOV | BPF_X, 3, 2) == bytes.fromhex("bf23000000000000")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dst": 11}, "register"),
        ({"off": 0x8000}, "offset"),
        ({"imm": 1 << 32}, "immediate"),
        ({"imm": -(1 << 31) - 1}, "immediate"),
    ],
)
def test_encode_refuses_what_does_not_fit(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode(BPF_ALU64 | BPF_MOV | BPF_K, **kwargs)


def test_assembler_resolves_forward_and_backward_labels() -> None:
    asm = Assembler()
    asm.label("top")
    asm.jump(BPF_JMP | BPF_JNE | BPF_K, "end", 1, imm=7)  # index 0 -> end at 3: off 2
    asm.emit(BPF_ALU64 | BPF_MOV | BPF_K, 0, imm=5)
    asm.jump(BPF_JMP, "top")  # index 2 -> 0: off -3
    asm.label("end")
    asm.exit()
    code = asm.assemble()
    offsets = [struct.unpack_from("<h", code, 8 * i + 2)[0] for i in range(len(asm))]
    assert offsets == [2, 0, -3, 0]


def test_assembler_refuses_bad_labels() -> None:
    asm = Assembler()
    asm.label("x")
    with pytest.raises(ValueError, match="twice"):
        asm.label("x")
    asm.jump(BPF_JMP, "nowhere")
    with pytest.raises(ValueError, match="undefined"):
        asm.assemble()


# -- the interpreter itself (so that agreeing with it means something) --------------------


def test_interpreter_sign_extends_64_bit_immediates_and_zero_extends_32_bit_results() -> None:
    asm = Assembler()
    asm.emit(BPF_ALU64 | BPF_MOV | BPF_K, 0, imm=-1)  # r0 = 0xffff_ffff_ffff_ffff
    asm.exit()
    assert run(asm.assemble(), b"") == (1 << 64) - 1
    asm = Assembler()
    asm.emit(BPF_ALU | BPF_MOV | BPF_K, 0, imm=-1)  # w0 = 0xffff_ffff, upper half zero
    asm.exit()
    assert run(asm.assemble(), b"") == 0xFFFFFFFF


def test_interpreter_refuses_what_the_verifier_would() -> None:
    asm = Assembler()
    asm.exit()  # r0 never written
    with pytest.raises(BPFError, match="r0"):
        run(asm.assemble(), b"")
    with pytest.raises(BPFError, match="left the program"):
        run(encode(BPF_ALU64 | BPF_MOV | BPF_K, 0, imm=1), b"")
    # a load through r2, which holds a number
    load = encode(BPF_ALU64 | BPF_MOV | BPF_K, 2, imm=0) + encode(0x61, 0, 2, 0)
    with pytest.raises(BPFError, match="context pointer"):
        run(load + encode(BPF_JMP | BPF_EXIT), device_context(2, 1, 3, 2))
    # a read past the 12-byte context
    with pytest.raises(BPFError, match="out of bounds"):
        run(encode(0x61, 0, 1, 12) + encode(BPF_JMP | BPF_EXIT), device_context(2, 1, 3, 2))


def test_interpreter_reads_the_context_fields() -> None:
    context = device_context(2, 136, 4, 6)
    for offset, expected in ((0, 2 | 6 << 16), (4, 136), (8, 4)):
        code = encode(0x61, 0, 1, offset) + encode(BPF_JMP | BPF_EXIT)  # r0 = *(u32 *)(r1 + off)
        assert run(code, context) == expected
    assert run(encode(0x69, 0, 1, 2) + encode(BPF_JMP | BPF_EXIT), context) == 6  # u16 at 2


# -- device programs -----------------------------------------------------------------------


def test_empty_states_return_the_default() -> None:
    deny_all, allow_all = device_program(False, []), device_program(True, [])
    for request in requests():
        assert decide(deny_all, *request) is False
        assert decide(allow_all, *request) is True


def test_default_deny_needs_one_exception_granting_every_requested_access() -> None:
    program = device_program(False, [("c", 1, 3, 2), ("c", 1, ANY, 4)])  # c 1:3 r, c 1:* w
    assert decide(program, "c", 1, 3, "r")
    assert decide(program, "c", 1, 3, "w")
    # read and write together: no single exception grants both (as match_exception)
    assert not decide(program, "c", 1, 3, "rw")
    assert not decide(program, "c", 1, 5, "r")
    assert decide(program, "c", 1, 5, "w")
    assert not decide(program, "b", 1, 3, "r")  # the type matters


def test_default_allow_denies_on_one_shared_access() -> None:
    program = device_program(True, [("b", 8, ANY, 4)])  # deny b 8:* w
    assert decide(program, "b", 8, 1, "r")
    assert not decide(program, "b", 8, 1, "w")
    assert not decide(program, "b", 8, 1, "rw")  # partial match denies (runc's would allow)
    assert decide(program, "c", 8, 1, "rw")


def test_numbers_above_s32_compare_as_unsigned() -> None:
    big = 3000000000
    program = device_program(False, [("c", big, 4000000000, 7)])
    assert decide(program, "c", big, 4000000000, "rw")
    assert not decide(program, "c", big, 4000000001, "r")
    assert not decide(program, "c", big - 1, 4000000000, "r")


def test_device_program_refuses_bad_exceptions() -> None:
    with pytest.raises(ValueError, match="b or c"):
        device_program(False, [("a", 1, 3, 7)])
    with pytest.raises(ValueError, match="rwm"):
        device_program(False, [("c", 1, 3, 0)])
    with pytest.raises(ValueError, match="32 bits"):
        device_program(False, [("c", 1 << 32, 3, 7)])


def test_standard_rules_after_deny_all_match_the_kernel_model() -> None:
    rules = [DeviceRule(False, "a"), *STANDARD_RULES]
    program = device_program_for(rules)
    model = kernel_after(rules)
    for request in [*requests(), ("c", 1, 9, "rw"), ("c", 10, 200, "r"), ("c", 136, 12, "w")]:
        assert decide(program, *request) is model.allows(*request), request
    assert decide(program, "c", 1, 3, "rw") and not decide(program, "c", 1, 1, "r")
    assert decide(program, "c", 1, 1, "m")  # mknod of anything, not its use


def _check_case(rules: list[DeviceRule]) -> bool:
    """Program, v1 plan and kernel model agree on every request; False if corral
    refused the rules (then the kernel must indeed keep a wider exception)."""
    try:
        program = device_program_for(rules)
    except ConfigError as error:
        assert "wildcard" in str(error)
        return False
    model = kernel_after(rules)
    planned = KernelModel()
    for file, line in plan_v1_devices(rules):
        planned.write(file, line)
    for request in requests():
        expected = model.allows(*request)
        assert decide(program, *request) is expected, (rules, request)
        assert planned.allows(*request) is expected, (rules, request)
    return True


def test_random_rule_lists_decide_like_the_v1_controller() -> None:
    rng = random.Random(20240605)
    checked = 0
    for _ in range(400):
        rules = [random_rule(rng) for _ in range(rng.randint(1, 8))]
        if rng.random() < 0.7:
            rules.insert(0, DeviceRule(False, "a"))
        checked += _check_case(rules)
    assert checked > 250  # most cases are not refused


def test_random_transitions_reach_the_target_state() -> None:
    rng = random.Random(7)
    done = 0
    for _ in range(300):
        source_rules = [DeviceRule(rng.random() < 0.3, "a")]
        source_rules += [random_rule(rng) for _ in range(rng.randint(0, 6))]
        target_rules = [DeviceRule(False, "a")]
        target_rules += [random_rule(rng) for _ in range(rng.randint(0, 6))]
        try:
            kernel = KernelModel()
            for file, line in plan_v1_devices(source_rules):
                kernel.write(file, line)
            plan = plan_v1_devices(target_rules, kernel.devices_list())
        except ConfigError:
            continue
        before = kernel.devices_list()
        for file, line in plan:
            kernel.write(file, line)
        expected = kernel_after(target_rules)
        for request in requests():
            assert kernel.allows(*request) is expected.allows(*request), (before, plan, request)
        if not expected.allow_all and not before.startswith("a"):
            assert all(not line.startswith("a") for _, line in plan)  # no reset needed
        done += 1
    assert done > 150
