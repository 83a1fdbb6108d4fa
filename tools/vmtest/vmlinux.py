"""The ELF ``vmlinux`` inside an x86 bzImage, so qemu can boot it through the PVH entry.

Under TCG (software emulation) a bzImage spends seconds in its own decompressor. qemu
boots an ELF kernel that carries the ``XEN_ELFNOTE_PHYS32_ENTRY`` note (Debian sets
``CONFIG_PVH=y``) straight at its 32-bit entry instead, which halves the boot
(docs/vm-testing.md). The bzImage's setup header says where the compressed kernel is:
``setup_sects`` at 0x1f1, and ``payload_offset``/``payload_length`` at 0x248/0x24c, counted
from the protected-mode code that starts after the (setup_sects + 1) 512-byte sectors
(Documentation/arch/x86/boot.rst, boot protocol 2.08+).
"""

from __future__ import annotations

import struct

XEN_ELFNOTE_PHYS32_ENTRY = 18
PT_NOTE = 4


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The decompressed ELF kernel of ``bzimage``; ValueError if it is not one we can read."""
    if bzimage[0x202:0x206] != b"HdrS":
        raise ValueError("not a bzImage (no HdrS setup header)")
    (version,) = struct.unpack_from("<H", bzimage, 0x206)
    if version < 0x208:
        raise ValueError(f"boot protocol {version:#x} has no payload fields (needs 2.08)")
    setup_sects = bzimage[0x1F1] or 4  # 0 means 4, for very old kernels
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = bzimage[start : start + length]
    kernel = _decompress(payload)
    if kernel[:4] != b"\x7fELF":
        raise ValueError("the bzImage payload is not an ELF kernel")
    return kernel


def has_pvh_entry(elf: bytes) -> bool:
    """True if the ELF64 kernel has the Xen PVH entry note that qemu's ``-kernel`` looks for."""
    (program_table,) = struct.unpack_from("<Q", elf, 0x20)
    entry_size, count = struct.unpack_from("<HH", elf, 0x36)
    for index in range(count):
        base = program_table + index * entry_size
        (kind,) = struct.unpack_from("<I", elf, base)
        if kind != PT_NOTE:
            continue
        offset, _, _, size = struct.unpack_from("<QQQQ", elf, base + 8)
        position, end = offset, offset + size
        while position + 12 <= end:
            name_size, desc_size, note_type = struct.unpack_from("<III", elf, position)
            name = elf[position + 12 : position + 12 + name_size].rstrip(b"\0")
            if name == b"Xen" and note_type == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            position += 12 + _align4(name_size) + _align4(desc_size)
    return False


def _decompress(payload: bytes) -> bytes:
    # The kernel appends the decompressed size (4 bytes) after the stream; the stdlib
    # decompressors leave such trailing bytes alone.
    if payload[:6] == b"\xfd7zXZ\0":
        import lzma

        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    if payload[:2] == b"\x1f\x8b":
        import zlib

        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
    if payload[:3] == b"BZh":
        import bz2

        return bz2.BZ2Decompressor().decompress(payload)
    raise ValueError(f"bzImage payload compressed in a format the stdlib lacks ({payload[:4]!r})")


def _align4(size: int) -> int:
    return (size + 3) & ~3
