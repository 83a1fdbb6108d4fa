"""The VM runner's pieces without a VM: cpio, module order, vmlinux, exit-status plumbing.

These run everywhere in well under a second, so a broken builder fails here with a clear
message rather than as a guest that never boots. The module is imported from tools/ (it is
not part of the corral package), hence ``importlib``.
"""

from __future__ import annotations

import importlib
import lzma
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def load(name: str) -> Any:
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module(f"vmtest.{name}")


def elf64(sections: dict[str, bytes], notes: bytes = b"") -> bytes:
    """A minimal little-endian ELF64: the given sections (+ .shstrtab) and one PT_NOTE."""
    names = b"\0" + b"".join(name.encode() + b"\0" for name in sections) + b".shstrtab\0"
    body = b""
    placed: list[tuple[int, int, int]] = []  # (name offset, data offset, size)
    name_offset = 1
    data_start = 64 + 56  # after the ELF header and one program header
    for name, data in sections.items():
        placed.append((name_offset, data_start + len(body), len(data)))
        name_offset += len(name) + 1
        body += data
    notes_offset = data_start + len(body)
    body += notes
    placed.append((name_offset, data_start + len(body), len(names)))
    body += names
    section_table = data_start + len(body)
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    counts = (len(placed) + 1, len(placed))  # sections (with the null one), .shstrtab's index
    header += struct.pack(
        "<HHIQQQIHHHHHH", 1, 62, 1, 0, 64, section_table, 0, 64, 56, 1, 64, *counts
    )
    program = struct.pack("<IIQQQQQQ", 4, 4, notes_offset, 0, 0, len(notes), len(notes), 4)
    table = b"\0" * 64  # section 0 is the null section
    for name_at, offset, size in placed:
        table += struct.pack("<IIQQQQIIQQ", name_at, 1, 0, 0, offset, size, 0, 0, 1, 0)
    return header + program + body + table


def test_cpio_archive_unpacks_with_busybox(tmp_path: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    writer = load("cpio").CpioWriter()
    writer.directory("etc")
    writer.file("etc/passwd", b"root:x:0:0::/:/bin/sh\n", 0o600)
    writer.symlink("etc/link", "passwd")
    writer.file("odd", b"abcde", 0o755)  # a size that needs padding
    archive = tmp_path / "a.cpio"
    archive.write_bytes(writer.getvalue())
    out = tmp_path / "out"
    out.mkdir()
    with open(archive, "rb") as stdin:
        subprocess.run([busybox, "cpio", "-i", "-d"], stdin=stdin, cwd=out, check=True)
    assert (out / "etc" / "passwd").read_bytes() == b"root:x:0:0::/:/bin/sh\n"
    assert (out / "etc" / "passwd").stat().st_mode & 0o777 == 0o600
    assert os.readlink(out / "etc" / "link") == "passwd"
    assert (out / "odd").read_bytes() == b"abcde"
    assert (out / "odd").stat().st_mode & 0o777 == 0o755


def test_cpio_refuses_a_name_twice() -> None:
    writer = load("cpio").CpioWriter()
    writer.directory("bin")
    with pytest.raises(ValueError, match="added twice"):
        writer.symlink("/bin/", "usr/bin")


def write_module(directory: Path, name: str, depends: str) -> None:
    info = f"license=GPL\0depends={depends}\0name={name}\0".encode()
    (directory / f"{name.replace('_', '-')}.ko").write_bytes(elf64({".modinfo": info}))


def test_modules_load_after_their_dependencies(tmp_path: Path) -> None:
    modinfo = load("modinfo")
    write_module(tmp_path, "ninep", "ninepnet,netfs")
    write_module(tmp_path, "ninepnet", "")
    write_module(tmp_path, "netfs", "fs_cache")
    write_module(tmp_path, "fs_cache", "")
    index = modinfo.index_modules(str(tmp_path))
    assert sorted(index) == ["fs_cache", "netfs", "ninep", "ninepnet"]  # "-" read as "_"
    assert modinfo.read_modinfo(index["ninep"])["depends"] == ["ninepnet,netfs"]
    assert modinfo.load_order(["ninep"], index) == ["ninepnet", "fs_cache", "netfs", "ninep"]


def test_missing_module_and_cycle_are_errors(tmp_path: Path) -> None:
    modinfo = load("modinfo")
    write_module(tmp_path, "a", "b")
    write_module(tmp_path, "b", "a")
    write_module(tmp_path, "c", "gone")
    index = modinfo.index_modules(str(tmp_path))
    with pytest.raises(ValueError, match="cycle"):
        modinfo.load_order(["a"], index)
    with pytest.raises(ValueError, match=r"gone \(needed by c\)"):
        modinfo.load_order(["c"], index)


def fake_bzimage(kernel: bytes) -> bytes:
    payload = lzma.compress(kernel, format=lzma.FORMAT_XZ) + struct.pack("<I", len(kernel))
    setup = bytearray(2 * 512)  # boot sector + one setup sector
    setup[0x1F1] = 1
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x20F)
    struct.pack_into("<II", setup, 0x248, 16, len(payload) - 4)
    return bytes(setup) + b"\0" * 16 + payload


def test_vmlinux_comes_out_of_a_bzimage_with_its_pvh_note() -> None:
    vmlinux = load("vmlinux")
    note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + b"\x00\x10\x00\x01"
    kernel = elf64({".text": b"\x90" * 100}, notes=note)
    extracted = vmlinux.extract_vmlinux(fake_bzimage(kernel))
    assert extracted == kernel
    assert vmlinux.has_pvh_entry(extracted)
    assert not vmlinux.has_pvh_entry(elf64({".text": b"\x90"}, notes=note.replace(b"Xen", b"Abc")))
    with pytest.raises(ValueError, match="not a bzImage"):
        vmlinux.extract_vmlinux(b"\0" * 4096)


def test_guest_status_from_marker_rc_file_or_nothing(tmp_path: Path) -> None:
    qemu = load("qemu")
    noisy = (
        "\x1bc\x1b[?7l\x1b[2JSeaBIOS\r\nVMTEST: running\r\n"
        "VMTEST-RC=3\r\n[    6.760410] reboot: Power down\n"
    )
    assert qemu.guest_status(noisy, str(tmp_path)) == 3
    assert qemu.guest_status("[ 1.0] Kernel panic", str(tmp_path)) == 125
    (tmp_path / "rc").write_text("2\n")
    assert qemu.guest_status("no marker here", str(tmp_path)) == 2


def test_qemu_command_asks_for_cgroup2_only_and_read_only_usr() -> None:
    qemu = load("qemu")
    shares = [
        qemu.Share("/usr", "hostusr", "vmtest_usr=1", read_only=True),
        qemu.Share("/work/x", "vmsrc", "vmtest_src=/work/x", read_only=False),
    ]
    command = qemu.qemu_command("/k/vmlinux", "/k/initramfs.cpio", shares)
    words = command[command.index("-append") + 1].split()
    assert "cgroup_no_v1=all" in words
    assert {"vmtest_usr=1", "vmtest_src=/work/x"} <= set(words)
    assert command[command.index("-accel") + 1] == "tcg"
    virtfs = [command[i + 1] for i, word in enumerate(command) if word == "-virtfs"]
    assert virtfs[0].endswith(",readonly=on") and "mount_tag=hostusr" in virtfs[0]
    assert "readonly" not in virtfs[1]
    with pytest.raises(ValueError, match="no spaces or commas"):
        qemu.Share("/a,b", "t", "w", read_only=True)
