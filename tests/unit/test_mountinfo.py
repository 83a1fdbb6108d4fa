"""The mountinfo(5) parser the rootfs, cgroup and Intel RDT code share."""

from __future__ import annotations

from corral.linux import mountinfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


def test_fields_escapes_and_optional_fields(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(
        "22 1 0:21 / /proc rw,relatime shared:5 - proc proc rw\n"
        "30 22 0:27 /sub /mnt/with\\040space rw - tmpfs tmpfs rw,size=4k\n"
        "31 22 0:28 / /many rw shared:1 master:2 propagate_from:3 - tmpfs none rw\n"
        "32 22 0:29 / /no-super-options rw - tmpfs none\n"
    )
    assert mountinfo.read(str(table)) == [
        ("/proc", "/", "proc", "rw"),
        ("/mnt/with space", "/sub", "tmpfs", "rw,size=4k"),
        ("/many", "/", "tmpfs", "rw"),
        ("/no-super-options", "/", "tmpfs", ""),
    ]


def test_malformed_lines_are_skipped() -> None:
    # No separator; a "-" among the fixed fields is a path, not the separator; nothing
    # after the separator.
    text = "22 1 0:21 / /x rw proc proc rw\n22 1 0:21 - /y rw\n22 1 0:21 / /z rw -\n"
    assert mountinfo.parse(text) == []


def test_unescape_octal() -> None:
    assert mountinfo.unescape("/mnt/memory\\040again") == "/mnt/memory again"
    assert mountinfo.unescape("/a\\134b\\011c") == "/a\\b\tc"
    assert mountinfo.unescape("/plain") == "/plain"


def test_reads_this_process_table() -> None:
    assert any(mount_point == "/" for mount_point, _, _, _ in mountinfo.read())
