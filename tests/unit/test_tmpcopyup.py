"""tmpcopyup's copy (corral.linux.rootfs.copy_up) and its option, on temporary dirs."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import pytest

from corral.errors import ConfigError
from corral.linux.mountopts import parse_options
from corral.linux.rootfs import copy_up

if TYPE_CHECKING:
    from pathlib import Path


def _tree(root: Path) -> None:
    (root / "etc").mkdir(mode=0o750)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.chmod(root / "etc" / "passwd", 0o640)
    (root / "etc" / "empty").mkdir()
    (root / "big").write_bytes(os.urandom(3 << 20))
    os.symlink("etc/passwd", root / "link")
    os.symlink("/nonexistent/target", root / "dangling")
    os.mkfifo(root / "fifo", 0o604)
    os.utime(root / "etc" / "passwd", ns=(1_000_000_000, 2_000_000_000))
    os.utime(root / "link", ns=(3_000_000_000, 4_000_000_000), follow_symlinks=False)
    os.utime(root / "etc", ns=(5_000_000_000, 6_000_000_000))
    os.chmod(root, 0o711)
    os.utime(root, ns=(7_000_000_000, 8_000_000_000))


def _copy(src: Path, dst: Path, **kwargs: bool) -> None:
    src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    dst_fd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
    try:
        copy_up(src_fd, dst_fd, **kwargs)
    finally:
        os.close(src_fd)
        os.close(dst_fd)


def test_copy_keeps_contents_modes_links_and_times(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir(mode=0o777)
    _tree(src)
    _copy(src, dst)
    assert (dst / "etc" / "passwd").read_text() == "root:x:0:0::/root:/bin/sh\n"
    assert (dst / "big").read_bytes() == (src / "big").read_bytes()
    assert stat.S_IMODE(os.stat(dst / "etc" / "passwd").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(dst / "etc").st_mode) == 0o750
    assert (dst / "etc" / "empty").is_dir()
    assert os.readlink(dst / "link") == "etc/passwd"
    assert os.readlink(dst / "dangling") == "/nonexistent/target"
    assert stat.S_ISFIFO(os.lstat(dst / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(dst / "fifo").st_mode) == 0o604
    assert os.stat(dst / "etc" / "passwd").st_mtime_ns == 2_000_000_000
    assert os.lstat(dst / "link").st_mtime_ns == 4_000_000_000
    assert os.stat(dst / "etc").st_mtime_ns == 6_000_000_000  # set after filling it
    assert stat.S_IMODE(os.stat(dst).st_mode) == 0o711  # the top takes the source's mode
    assert os.stat(dst).st_mtime_ns == 8_000_000_000
    assert os.stat(dst / "etc" / "passwd").st_uid == os.stat(src / "etc" / "passwd").st_uid


def test_copy_does_not_follow_symlinks_out_of_the_tree(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host")
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    os.symlink(outside, src / "escape")
    _copy(src, dst)
    assert os.path.islink(dst / "escape")
    assert not (dst / "secret").exists()


def test_mode_option_keeps_the_tmpfs_mode(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(mode=0o700)
    dst.mkdir(mode=0o755)
    os.chmod(dst, 0o755)
    _copy(src, dst, keep_mode=False)
    assert stat.S_IMODE(os.stat(dst).st_mode) == 0o755


def test_copy_into_a_non_empty_target_refuses_to_overwrite(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "f").write_text("new")
    (dst / "f").write_text("old")
    with pytest.raises(FileExistsError):
        _copy(src, dst)
    assert (dst / "f").read_text() == "old"


def test_option_parses_for_tmpfs_only() -> None:
    assert parse_options(["tmpcopyup", "mode=755"], "mounts[0].options", "tmpfs").copy_up
    assert parse_options(["tmpcopyup"], "m", "tmpfs").data == ""
    assert not parse_options(["mode=755"], "m", "tmpfs").copy_up
    with pytest.raises(ConfigError) as caught:
        parse_options(["rbind", "tmpcopyup"], "mounts[2].options", "none")
    assert caught.value.path == "mounts[2].options[1]"
