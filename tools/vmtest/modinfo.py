"""Kernel module dependencies without ``modules.dep``: read each ``.ko``'s ``.modinfo``.

``depmod`` normally writes ``modules.dep`` in the package's postinst, which never runs for
an unpacked package. The same facts are in every module: its ELF section ``.modinfo`` is a
run of NUL-terminated ``key=value`` strings, and ``depends=a,b`` names the modules whose
symbols it uses (written by modpost at build time). Module names treat ``-`` and ``_`` as
the same character (kernel/params.c ``parameq``), so names are compared with ``_`` only.
"""

from __future__ import annotations

import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


def module_name(path: str) -> str:
    """The module name a ``.ko`` file's name stands for (``virtio-gpu.ko`` → ``virtio_gpu``)."""
    return os.path.basename(path).removesuffix(".ko").replace("-", "_")


def read_modinfo(path: str) -> dict[str, list[str]]:
    """The ``.modinfo`` strings of an uncompressed ELF64 little-endian module, by key."""
    with open(path, "rb") as file:
        image = file.read()
    if image[:4] != b"\x7fELF" or image[4] != 2 or image[5] != 1:
        raise ValueError(f"{path}: not an uncompressed ELF64 little-endian module")
    # Elf64_Ehdr: e_shoff at 0x28, e_shentsize/e_shnum/e_shstrndx at 0x3a.
    (section_table,) = struct.unpack_from("<Q", image, 0x28)
    entry_size, count, names_index = struct.unpack_from("<HHH", image, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        # Elf64_Shdr: sh_name (4 bytes) ... sh_offset at +0x18, sh_size at +0x20.
        base = section_table + index * entry_size
        (name,) = struct.unpack_from("<I", image, base)
        offset, size = struct.unpack_from("<QQ", image, base + 0x18)
        return name, offset, size

    _, names_offset, _ = section(names_index)
    for index in range(count):
        name, offset, size = section(index)
        end = image.index(b"\0", names_offset + name)
        if image[names_offset + name : end] == b".modinfo":
            info: dict[str, list[str]] = {}
            for item in image[offset : offset + size].split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep:
                    info.setdefault(key, []).append(value)
            return info
    raise ValueError(f"{path}: no .modinfo section")


def index_modules(tree: str) -> dict[str, str]:
    """Every ``.ko`` under ``tree``, by module name."""
    found: dict[str, str] = {}
    for directory, _, files in os.walk(tree):
        for filename in files:
            if filename.endswith(".ko"):
                found[module_name(filename)] = os.path.join(directory, filename)
    return found


def load_order(wanted: Iterable[str], modules: dict[str, str]) -> list[str]:
    """``wanted`` and everything they depend on, each after its dependencies (insmod order).

    A wanted name that is not a module is an error: it is either built in (then do not ask
    for it) or misspelt, and a silent skip would only fail later at mount time.
    """
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, needed_by: str) -> None:
        name = name.replace("-", "_")
        if name in order:
            return
        if name in visiting:
            raise ValueError(f"module dependency cycle through {name}")
        if name not in modules:
            raise ValueError(f"module {name} (needed by {needed_by}) is not in the package")
        visiting.add(name)
        for depends in read_modinfo(modules[name]).get("depends", []):
            for dependency in filter(None, depends.split(",")):
                visit(dependency, name)
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name, "the VM")
    return order
