"""In-root path resolution: openat2(RESOLVE_IN_ROOT) and the user-space fallback agree.

None of this needs root: openat2 and mkdirat work on a temporary directory.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from corral.linux import paths
from corral.linux.paths import (
    _open_by_walking,
    create_file_in_root,
    mkdir_all_in_root,
    open_in_root,
)
from corral.linux.syscalls import RESOLVE_NO_SYMLINKS, Syscalls

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

PATH_DIR = os.O_PATH | os.O_DIRECTORY


class NoOpenat2(Syscalls):
    """A kernel before 5.6: openat2 fails with ENOSYS."""

    def __init__(self) -> None:
        self.openat2_calls = 0

    def openat2(self, dirfd: int, path: str, flags: int, mode: int, resolve: int) -> int:
        self.openat2_calls += 1
        raise OSError(errno.ENOSYS, "openat2: Function not implemented")


@pytest.fixture
def sc() -> Syscalls:
    return Syscalls()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A small rootfs with the links an image may hold to escape its root."""
    base = tmp_path / "rootfs"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "passwd").write_text("root:x:0:0\n")
    (base / "usr" / "lib").mkdir(parents=True)
    (base / "file").write_text("")
    (base / "abs").symlink_to("/etc")  # absolute: the host's /etc if followed naively
    (base / "up").symlink_to("../../../../../..")  # far above the root
    (base / "usr" / "lib" / "rel").symlink_to("../../etc")
    (base / "dangling").symlink_to("/no/such/dir")
    (base / "loop").symlink_to("loop")
    return base


@pytest.fixture
def root_fd(root: Path) -> Iterator[int]:
    fd = os.open(root, PATH_DIR | os.O_CLOEXEC)
    yield fd
    os.close(fd)


def same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    finally:
        os.close(fd)


CASES = [
    ("/abs/passwd", "etc/passwd"),  # /etc inside the root, not the host's
    ("/up/etc/passwd", "etc/passwd"),  # ../../.. stops at the root
    ("/../../../etc", "etc"),
    ("/usr/lib/rel/passwd", "etc/passwd"),
    ("/usr/lib/../../etc/./passwd", "etc/passwd"),
    ("/", "."),
    ("", "."),
]


@pytest.mark.parametrize(("path", "expected"), CASES)
def test_symlinks_resolve_inside_the_root(
    sc: Syscalls, root: Path, root_fd: int, path: str, expected: str
) -> None:
    assert same_file(open_in_root(sc, root_fd, path, os.O_PATH), root / expected)


@pytest.mark.parametrize(("path", "expected"), CASES)
def test_the_fallback_resolves_the_same_way(
    root: Path, root_fd: int, path: str, expected: str
) -> None:
    assert same_file(_open_by_walking(root_fd, path, os.O_PATH, no_symlinks=False), root / expected)


def test_without_openat2_the_fallback_is_used_once_found_missing(
    root: Path, root_fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths, "_have_openat2", None)
    fake = NoOpenat2()
    assert same_file(open_in_root(fake, root_fd, "/abs/passwd", os.O_RDONLY), root / "etc/passwd")
    assert same_file(open_in_root(fake, root_fd, "/up/etc", PATH_DIR), root / "etc")
    assert fake.openat2_calls == 1  # not asked again


def test_the_fallback_opens_with_the_flags_asked(root: Path, root_fd: int) -> None:
    fd = _open_by_walking(root_fd, "/abs/passwd", os.O_RDONLY, no_symlinks=False)
    try:
        assert os.read(fd, 4) == b"root"
    finally:
        os.close(fd)
    with pytest.raises(NotADirectoryError):
        _open_by_walking(root_fd, "/file", PATH_DIR, no_symlinks=False)
    with pytest.raises(NotADirectoryError):
        _open_by_walking(root_fd, "/file/x", os.O_PATH, no_symlinks=False)


@pytest.mark.parametrize("walk", [False, True])
def test_no_symlinks_refuses_any_link_on_the_way(sc: Syscalls, root_fd: int, walk: bool) -> None:
    with pytest.raises(OSError) as caught:
        if walk:
            _open_by_walking(root_fd, "/abs/passwd", os.O_PATH, no_symlinks=True)
        else:
            open_in_root(sc, root_fd, "/abs/passwd", os.O_PATH, resolve=RESOLVE_NO_SYMLINKS)
    assert caught.value.errno == errno.ELOOP
    # and a path without links is fine
    os.close(open_in_root(sc, root_fd, "/etc/passwd", os.O_PATH, resolve=RESOLVE_NO_SYMLINKS))


@pytest.mark.parametrize("walk", [False, True])
def test_a_symlink_loop_is_eloop(sc: Syscalls, root_fd: int, walk: bool) -> None:
    with pytest.raises(OSError) as caught:
        if walk:
            _open_by_walking(root_fd, "/loop/x", os.O_PATH, no_symlinks=False)
        else:
            open_in_root(sc, root_fd, "/loop/x", os.O_PATH)
    assert caught.value.errno == errno.ELOOP


def test_mkdir_all_creates_through_links_inside_the_root(
    sc: Syscalls, root: Path, root_fd: int
) -> None:
    fd = mkdir_all_in_root(sc, root_fd, "/abs/new/deeper")
    assert same_file(fd, root / "etc/new/deeper")
    fd = mkdir_all_in_root(sc, root_fd, "/up/var/lib/x", 0o700)
    assert same_file(fd, root / "var/lib/x")
    assert (root / "var/lib/x").stat().st_mode & 0o777 == 0o700 & ~current_umask()


def test_mkdir_all_returns_existing_directories(sc: Syscalls, root: Path, root_fd: int) -> None:
    assert same_file(mkdir_all_in_root(sc, root_fd, "/usr/lib"), root / "usr/lib")
    assert same_file(mkdir_all_in_root(sc, root_fd, "/"), root)


def test_mkdir_all_result_is_an_o_path_directory(sc: Syscalls, root_fd: int) -> None:
    fd = mkdir_all_in_root(sc, root_fd, "/a/b")
    try:
        flags = os.get_inheritable(fd), os.O_PATH & _fd_flags(fd)
        assert flags == (False, os.O_PATH)
    finally:
        os.close(fd)


@pytest.mark.parametrize("path", ["/file/x", "/file", "/abs/passwd/x"])
def test_a_file_where_a_directory_is_expected_is_named(
    sc: Syscalls, root_fd: int, path: str
) -> None:
    with pytest.raises(NotADirectoryError) as caught:
        mkdir_all_in_root(sc, root_fd, path)
    first = "/file" if path.startswith("/file") else "/abs/passwd"
    assert f"{first}: exists and is not a directory" in str(caught.value)


def test_mkdir_all_does_not_create_through_a_dangling_link(
    sc: Syscalls, root: Path, root_fd: int
) -> None:
    with pytest.raises(NotADirectoryError) as caught:
        mkdir_all_in_root(sc, root_fd, "/dangling/x")
    assert "/dangling" in str(caught.value)
    assert "symbolic link" in str(caught.value)
    assert not (root / "no").exists()


def test_create_file_makes_an_empty_file_and_its_parents(
    sc: Syscalls, root: Path, root_fd: int
) -> None:
    fd = create_file_in_root(sc, root_fd, "/abs/resolv.conf")
    os.close(fd)
    assert (root / "etc/resolv.conf").read_text() == ""
    fd = create_file_in_root(sc, root_fd, "/run/secrets/token")
    os.close(fd)
    assert (root / "run/secrets/token").is_file()
    # an existing file is opened, not truncated
    assert same_file(create_file_in_root(sc, root_fd, "/etc/passwd"), root / "etc/passwd")
    assert (root / "etc/passwd").read_text() == "root:x:0:0\n"


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fd_flags(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL)
