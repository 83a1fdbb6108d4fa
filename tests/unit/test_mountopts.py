"""Mount options: every option of config.md recognised, translated as mount(8) does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.errors import ConfigError
from corral.linux.mountopts import (
    MOUNT_ATTR__ATIME,
    MOUNT_ATTR_NOATIME,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
    MOUNT_ATTR_STRICTATIME,
    check_mounts,
    parse_options,
)
from corral.linux.syscalls import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
)
from corral.spec.model import Spec, parse_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The option table of config.md ("Linux mount options"), runtime spec 1.3.
CONFIG_MD_OPTIONS = [
    "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "iversion",
    "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion",
    "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "nosymfollow", "private",
    "ratime", "rbind", "rdev", "rdiratime", "relatime", "remount", "rexec", "rnoatime",
    "rnodiratime", "rnoexec", "rnorelatime", "rnostrictatime", "rnosuid", "rnosymfollow", "ro",
    "rprivate", "rrelatime", "rro", "rrw", "rshared", "rslave", "rstrictatime", "rsuid",
    "rsymfollow", "runbindable", "rw", "shared", "silent", "slave", "strictatime", "suid",
    "symfollow", "sync", "tmpcopyup", "unbindable", "idmap", "ridmap",
]  # fmt: skip


@pytest.mark.parametrize("option", sorted(CONFIG_MD_OPTIONS))
def test_every_config_md_option_is_recognised(option: str) -> None:
    for fstype in ("tmpfs",) if option == "tmpcopyup" else ("tmpfs", "ext4"):
        parsed = parse_options([option], "mounts[0].options", fstype)
        assert parsed.data == "", f"{option} was passed to the filesystem as data"


@pytest.mark.parametrize(
    ("options", "flags", "cleared"),
    [
        (["ro"], MS_RDONLY, 0),
        (["ro", "rw"], 0, MS_RDONLY),  # later wins, as with mount(8)
        (["rw", "ro"], MS_RDONLY, 0),
        (["nosuid", "nodev", "noexec"], MS_NOSUID | MS_NODEV | MS_NOEXEC, 0),
        (["nosuid", "suid"], 0, MS_NOSUID),
        (["sync", "async"], 0, MS_SYNCHRONOUS),
        (["strictatime"], MS_STRICTATIME, 0),
        (["relatime", "norelatime"], 0, MS_RELATIME),
        (["defaults"], 0, 0),
        (["bind"], MS_BIND, 0),
        (["rbind"], MS_BIND | MS_REC, 0),
        (["remount", "ro"], MS_REMOUNT | MS_RDONLY, 0),
    ],
)
def test_flags(options: list[str], flags: int, cleared: int) -> None:
    parsed = parse_options(options, "mounts[0].options")
    assert (parsed.flags, parsed.cleared) == (flags, cleared)


def test_propagation_is_kept_apart_and_in_order() -> None:
    parsed = parse_options(["rbind", "rslave", "ro", "shared"], "m")
    assert parsed.propagation == [MS_SLAVE | MS_REC, MS_SHARED]
    assert parsed.flags == MS_BIND | MS_REC | MS_RDONLY
    assert parse_options(["private"], "m").propagation == [MS_PRIVATE]


def test_bind_remount_flags_leave_out_bind_and_rec() -> None:
    assert parse_options(["rbind", "ro", "nosuid"], "m").remount_flags == MS_RDONLY | MS_NOSUID
    assert parse_options(["rbind"], "m").remount_flags == 0
    assert parse_options(["bind", "remount"], "m").remount_flags == 0


def test_recursive_options_become_mount_setattr_bits() -> None:
    parsed = parse_options(["rbind", "rro", "rnosuid"], "m")
    assert (parsed.attr_set, parsed.attr_clr) == (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0)
    assert parsed.flags == MS_BIND | MS_REC  # nothing for mount(2) itself

    undone = parse_options(["rro", "rrw"], "m")
    assert (undone.attr_set, undone.attr_clr) == (0, MOUNT_ATTR_RDONLY)


def test_recursive_atime_clears_the_whole_field_and_the_last_mode_wins() -> None:
    parsed = parse_options(["rnoatime"], "m")
    assert (parsed.attr_set, parsed.attr_clr) == (MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME)
    parsed = parse_options(["rnoatime", "rro", "rstrictatime"], "m")
    assert parsed.attr_set == MOUNT_ATTR_STRICTATIME | MOUNT_ATTR_RDONLY
    assert parsed.attr_clr == MOUNT_ATTR__ATIME
    relatime = parse_options(["rnoatime", "rrelatime"], "m")
    assert (relatime.attr_set, relatime.attr_clr) == (0, MOUNT_ATTR__ATIME)


def test_filesystem_options_go_to_data_in_order() -> None:
    parsed = parse_options(["nosuid", "mode=755", "strictatime", "size=65536k"], "m", "tmpfs")
    assert parsed.data == "mode=755,size=65536k"
    assert parsed.flags == MS_NOSUID | MS_STRICTATIME


def test_devpts_options_of_the_default_config() -> None:
    options = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
    parsed = parse_options(options, "m", "devpts")
    assert parsed.data == "newinstance,ptmxmode=0666,mode=0620,gid=5"


def test_a_typo_on_a_pseudo_filesystem_names_the_option() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_options(["nosuid", "rox"], "mounts[3].options", "tmpfs")
    assert caught.value.path == "mounts[3].options[1]"
    assert '"rox"' in str(caught.value)


def test_unknown_keys_pass_through_for_other_filesystems() -> None:
    parsed = parse_options(["lowerdir=/a:/b", "upperdir=/u", "workdir=/w"], "m", "overlay")
    assert parsed.data == "lowerdir=/a:/b,upperdir=/u,workdir=/w"


def test_security_labels_are_accepted_everywhere() -> None:
    parsed = parse_options(['context="system_u:object_r:container_file_t:s0"'], "m", "tmpfs")
    assert parsed.data.startswith("context=")


def test_a_bind_mount_takes_no_data() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_options(["rbind", "ro", "mode=755"], "mounts[1].options")
    assert caught.value.path == "mounts[1].options[2]"
    assert "bind" in caught.value.message


def test_empty_option() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_options(["ro", ""], "mounts[0].options")
    assert caught.value.path == "mounts[0].options[1]"


# -- check_mounts ------------------------------------------------------------------------


def spec_with(mounts: list[Any]) -> Spec:
    return parse_config({"ociVersion": "1.2.0", "mounts": mounts})


def test_bind_source_relative_to_the_bundle(tmp_path: Path) -> None:
    os.mkdir(os.path.join(tmp_path, "volume"))
    check_mounts(
        spec_with([{"destination": "/v", "source": "volume", "options": ["bind"]}]), str(tmp_path)
    )
    with pytest.raises(ConfigError) as caught:
        check_mounts(
            spec_with(
                [
                    {"destination": "/v", "source": "volume", "options": ["bind"]},
                    {"destination": "/w", "source": "missing", "options": ["rbind"]},
                ]
            ),
            str(tmp_path),
        )
    assert caught.value.path == "mounts[1].source"
    assert os.path.join(str(tmp_path), "missing") in caught.value.message


def test_bind_without_source() -> None:
    with pytest.raises(ConfigError) as caught:
        check_mounts(spec_with([{"destination": "/v", "options": ["bind"]}]), "/")
    assert caught.value.path == "mounts[0].source"


def test_a_mount_that_is_neither_bind_nor_typed() -> None:
    with pytest.raises(ConfigError) as caught:
        check_mounts(spec_with([{"destination": "/v", "source": "x"}]), "/")
    assert caught.value.path == "mounts[0].type"
    # a remount of what is already there needs no type
    check_mounts(spec_with([{"destination": "/v", "options": ["remount", "ro"]}]), "/")


def test_type_bind_without_a_bind_option() -> None:
    mount = {"destination": "/v", "type": "bind", "source": "/", "options": ["ro"]}
    with pytest.raises(ConfigError) as caught:
        check_mounts(spec_with([mount]), "/")
    assert caught.value.path == "mounts[0].options"
    check_mounts(spec_with([{**mount, "options": ["rbind", "ro"]}]), "/")


def test_check_mounts_reports_option_errors_with_their_path() -> None:
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/tmp", "type": "ext4", "source": "/dev/x", "options": ["tmpcopyup"]},
    ]
    with pytest.raises(ConfigError) as caught:
        check_mounts(spec_with(mounts), "/")
    assert caught.value.path == "mounts[1].options[0]"
