"""eBPF programs for the cgroup v2 device controller.

On cgroup v2 there is no ``devices.allow``: access to device nodes is decided by a
``BPF_PROG_TYPE_CGROUP_DEVICE`` program attached to the cgroup (Documentation/
admin-guide/cgroup-v2.rst, "Device controller"). The kernel calls it with a
``struct bpf_cgroup_dev_ctx`` (include/uapi/linux/bpf.h)::

    u32 access_type;  /* low 16 bits: BPF_DEVCG_DEV_*, high 16 bits: BPF_DEVCG_ACC_* */
    u32 major;
    u32 minor;

for every open(2) and mknod(2) of a device node, with the requested accesses or-ed
together (an ``O_RDWR`` open asks READ|WRITE at once), and the access is refused with
``EPERM`` unless the program returns 1.

This module has three small layers: :func:`encode` packs one ``struct bpf_insn``
(8 bytes: opcode, dst and src register nibbles, a signed 16-bit offset, a signed 32-bit
immediate; Documentation/bpf/standardization/instruction-set.rst), :class:`Assembler`
turns a list of instructions with symbolic jump targets into bytes, and
:func:`device_program` writes the program for a device controller *state*: the
default behaviour and the exceptions, exactly what the v1 controller keeps
(corral.linux.cgroups.devices computes it from the rules, so v1 and v2 decide alike).

The program reads the context once into r2 (type), r3 (access), r4 (major) and
r5 (minor), then has one block per exception that jumps to the next block as soon as
one field does not match. As in the v1 kernel code (security/device_cgroup.c):

* default deny: an exception allows a request only if it grants *every* requested
  access (``match_exception``): ``if r3 & ~granted goto next``;
* default allow: an exception denies a request as soon as it shares *one* access
  with it (``match_exception_partial``): ``if r3 & denied == 0 goto next``.

Every exception of a state has the same verdict (the opposite of the default), so
the order of the blocks does not change the decision. Programs only jump forward
and call no helper, so the verifier accepts them on any kernel that has the program
type (4.15), and no GPL-only helper means the license string is free.
"""

from __future__ import annotations

import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# Instruction classes, sizes, modes and sources (include/uapi/linux/bpf_common.h, bpf.h).
BPF_LDX = 0x01
BPF_ALU = 0x04  # 32-bit: the result is zero-extended into the 64-bit register
BPF_JMP = 0x05
BPF_ALU64 = 0x07
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10
BPF_MEM = 0x60
BPF_K = 0x00  # the operand is the immediate
BPF_X = 0x08  # the operand is the src register
# ALU operations
BPF_AND = 0x50
BPF_RSH = 0x70
BPF_MOV = 0xB0
# JMP operations
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JSET = 0x40
BPF_JNE = 0x50
BPF_EXIT = 0x90

# struct bpf_cgroup_dev_ctx
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2
BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4
DEVICE_TYPES = {"b": BPF_DEVCG_DEV_BLOCK, "c": BPF_DEVCG_DEV_CHAR}

# Registers: r0 is the return value, r1 the context on entry.
R0, R1, R2, R3, R4, R5 = range(6)
_TYPE, _ACCESS, _MAJOR, _MINOR = R2, R3, R4, R5

INSN_SIZE = 8
_S32_MAX = 0x7FFFFFFF


def encode(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One ``struct bpf_insn`` in this machine's byte order.

    The two register fields are 4-bit C bitfields declared dst first, which a
    little-endian compiler puts in the low nibble.
    """
    if not (0 <= dst <= 10 and 0 <= src <= 10):
        raise ValueError(f"no such register: r{dst}/r{src}")
    if not -0x8000 <= off <= 0x7FFF:
        raise ValueError(f"jump offset {off} does not fit 16 bits")
    if not -0x80000000 <= imm <= 0xFFFFFFFF:
        raise ValueError(f"immediate {imm} does not fit 32 bits")
    if imm > _S32_MAX:
        imm -= 1 << 32  # the same 32 bits, as the s32 the struct holds
    regs = dst | src << 4 if sys.byteorder == "little" else dst << 4 | src
    return struct.pack("=BBhi", code, regs, off, imm)


class Assembler:
    """Instructions with symbolic jump targets, resolved by :meth:`assemble`.

    A jump names a label; the kernel wants the distance from the instruction after
    the jump, which is only known once the whole program is written.
    """

    __slots__ = ("_instructions", "_labels")

    def __init__(self) -> None:
        # (code, dst, src, off, imm, jump target or None)
        self._instructions: list[tuple[int, int, int, int, int, str | None]] = []
        self._labels: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._instructions)

    def label(self, name: str) -> None:
        if name in self._labels:
            raise ValueError(f"label {name!r} defined twice")
        self._labels[name] = len(self._instructions)

    def emit(self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> None:
        self._instructions.append((code, dst, src, off, imm, None))

    def jump(self, code: int, target: str, dst: int = 0, src: int = 0, imm: int = 0) -> None:
        self._instructions.append((code, dst, src, 0, imm, target))

    # -- shorthands for what the device program uses --------------------------------

    def load_u32(self, dst: int, src: int, offset: int) -> None:
        self.emit(BPF_LDX | BPF_MEM | BPF_W, dst, src, off=offset)

    def mov64_imm(self, dst: int, imm: int) -> None:
        self.emit(BPF_ALU64 | BPF_MOV | BPF_K, dst, imm=imm)

    def mov32_imm(self, dst: int, imm: int) -> None:
        self.emit(BPF_ALU | BPF_MOV | BPF_K, dst, imm=imm)

    def mov32_reg(self, dst: int, src: int) -> None:
        self.emit(BPF_ALU | BPF_MOV | BPF_X, dst, src)

    def and32_imm(self, dst: int, imm: int) -> None:
        self.emit(BPF_ALU | BPF_AND | BPF_K, dst, imm=imm)

    def rsh32_imm(self, dst: int, imm: int) -> None:
        self.emit(BPF_ALU | BPF_RSH | BPF_K, dst, imm=imm)

    def exit(self) -> None:
        self.emit(BPF_JMP | BPF_EXIT)

    def assemble(self) -> bytes:
        out = bytearray()
        for index, (code, dst, src, offset, imm, target) in enumerate(self._instructions):
            if target is not None and target not in self._labels:
                raise ValueError(f"jump to undefined label {target!r}")
            off = offset if target is None else self._labels[target] - (index + 1)
            out += encode(code, dst, src, off, imm)
        return bytes(out)


def device_program(default_allow: bool, exceptions: Iterable[tuple[str, int, int, int]]) -> bytes:
    """The program deciding like a v1 devices cgroup in this state (pure).

    ``exceptions`` are ``(type, major, minor, access)`` with type ``"b"`` or ``"c"``,
    ``-1`` for a wildcard major or minor, and access a mask of ``BPF_DEVCG_ACC_*``.
    """
    asm = Assembler()
    asm.load_u32(_TYPE, R1, 0)
    asm.mov32_reg(_ACCESS, _TYPE)
    asm.and32_imm(_TYPE, 0xFFFF)
    asm.rsh32_imm(_ACCESS, 16)
    asm.load_u32(_MAJOR, R1, 4)
    asm.load_u32(_MINOR, R1, 8)
    verdict = 0 if default_allow else 1
    for number, (kind, major, minor, access) in enumerate(exceptions):
        if kind not in DEVICE_TYPES:
            raise ValueError(f"exception type must be b or c, not {kind!r}")
        if not 0 < access <= 7:
            raise ValueError(f"exception access {access} is not a subset of rwm")
        skip = f"next{number}"
        asm.jump(BPF_JMP | BPF_JNE | BPF_K, skip, _TYPE, imm=DEVICE_TYPES[kind])
        for register, value in ((_MAJOR, major), (_MINOR, minor)):
            if value != -1:
                _jump_unless_equal(asm, register, value, skip)
        if default_allow:
            # A deny exception applies as soon as one requested access is in it.
            asm.mov32_reg(R0, _ACCESS)
            asm.and32_imm(R0, access)
            asm.jump(BPF_JMP | BPF_JEQ | BPF_K, skip, R0, imm=0)
        else:
            # An allow exception applies only if it grants everything requested.
            asm.jump(BPF_JMP | BPF_JSET | BPF_K, skip, _ACCESS, imm=0xFFFF & ~access)
        asm.mov64_imm(R0, verdict)
        asm.exit()
        asm.label(skip)
    asm.mov64_imm(R0, 1 - verdict)
    asm.exit()
    return asm.assemble()


def _jump_unless_equal(asm: Assembler, register: int, value: int, target: str) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"device number {value} does not fit 32 bits")
    if value <= _S32_MAX:
        asm.jump(BPF_JMP | BPF_JNE | BPF_K, target, register, imm=value)
    else:
        # A 64-bit compare would sign-extend the immediate; the context's u32 is
        # zero-extended. A 32-bit mov zero-extends, so compare registers instead.
        asm.mov32_imm(R0, value)
        asm.jump(BPF_JMP | BPF_JNE | BPF_X, target, register, R0)
