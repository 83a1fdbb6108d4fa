"""The os-free helpers of the hot path agree with os.path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.core import fastos


@pytest.mark.parametrize(
    "path",
    ["/", "/a/b", "/a//b/", "/a/./b/../c", "/../..", "/a/b/../../..", "rel/x", ".", "../up"],
)
def test_absolute_matches_abspath(path: str) -> None:
    assert fastos.absolute(path) == os.path.abspath(path)


def test_fold_never_climbs_above_root() -> None:
    assert fastos.fold("/../../etc/./passwd") == "/etc/passwd"


def test_is_dir_and_exists(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path)
    assert fastos.is_dir(str(tmp_path))
    assert fastos.is_dir(str(tmp_path / "link"))  # follows links, as os.path.isdir
    assert not fastos.is_dir(str(tmp_path / "f"))
    assert fastos.exists(str(tmp_path / "f"))
    assert not fastos.exists(str(tmp_path / "missing"))
    assert not fastos.exists("bad\0path")
