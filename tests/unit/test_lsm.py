"""AppArmor and SELinux: the fields, the host probes, the mount option and the attr writes.

The writes go to a directory standing in for ``/proc``; the fake's fstatfs says
whether that directory is procfs, which is what the write checks first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from corral.errors import ConfigError, CreateError
from corral.linux import lsm
from corral.linux.lsm import (
    PROC_SUPER_MAGIC,
    HostLsm,
    apparmor_enabled,
    apply_apparmor_profile,
    apply_selinux_label,
    check_lsm,
    check_lsm_host,
    label_mount_data,
    mount_label,
    selinux_enabled,
)
from corral.spec.model import Spec, parse_config

LABEL = "system_u:system_r:svirt_lxc_net_t:s0:c124,c675"


def make_spec(process: dict[str, Any] | None = None, **linux: Any) -> Spec:
    return parse_config(
        {
            "ociVersion": "1.2.0",
            "process": {"args": ["sh"], "cwd": "/", **(process or {})},
            "linux": {"namespaces": [{"type": "mount"}], **linux},
        }
    )


class FakeStatfs:
    def __init__(self, magic: int = PROC_SUPER_MAGIC) -> None:
        self.magic = magic
        self.checked: list[str] = []

    def fstatfs_type(self, fd: int) -> int:
        self.checked.append(os.readlink(f"/proc/self/fd/{fd}"))
        return self.magic


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    attr = tmp_path / "thread-self" / "attr"
    attr.mkdir(parents=True)
    (attr / "exec").write_text("")
    return tmp_path


# -- fields and host checks -------------------------------------------------------------


def test_fields_are_read() -> None:
    spec = make_spec({"apparmorProfile": "acme", "selinuxLabel": LABEL}, mountLabel="x:y:z:s0")
    assert lsm.apparmor_profile(spec) == "acme"
    assert lsm.selinux_label(spec) == LABEL
    assert mount_label(spec) == "x:y:z:s0"
    assert mount_label(make_spec()) == ""


@pytest.mark.parametrize(
    ("process", "linux", "path"),
    [
        ({"apparmorProfile": "a\nexec unconfined"}, {}, "process.apparmorProfile"),
        ({"selinuxLabel": "a\0b"}, {}, "process.selinuxLabel"),
        ({}, {"mountLabel": " x:y:z "}, "linux.mountLabel"),
        ({"apparmorProfile": 3}, {}, "process.apparmorProfile"),
    ],
)
def test_bad_labels_name_the_field(
    process: dict[str, Any], linux: dict[str, Any], path: str
) -> None:
    with pytest.raises(ConfigError) as info:
        check_lsm(make_spec(process, **linux))
    assert info.value.path == path


@pytest.mark.parametrize(
    ("process", "linux", "path", "message"),
    [
        ({"apparmorProfile": "acme"}, {}, "process.apparmorProfile",
         "AppArmor is not enabled on this host"),
        ({"selinuxLabel": LABEL}, {}, "process.selinuxLabel",
         "SELinux is disabled or not supported on this host"),
        ({}, {"mountLabel": LABEL}, "linux.mountLabel",
         "SELinux is disabled or not supported on this host"),
    ],
)  # fmt: skip
def test_a_host_without_the_lsm_refuses_its_label(
    process: dict[str, Any], linux: dict[str, Any], path: str, message: str
) -> None:
    spec = make_spec(process, **linux)
    with pytest.raises(ConfigError) as info:
        check_lsm_host(spec, HostLsm(apparmor=False, selinux=False))
    assert info.value.path == path
    assert message in str(info.value)
    check_lsm_host(spec, HostLsm(apparmor=True, selinux=True))


def test_apparmor_host_does_not_accept_selinux_labels() -> None:
    spec = make_spec({"apparmorProfile": "acme", "selinuxLabel": LABEL})
    with pytest.raises(ConfigError) as info:
        check_lsm_host(spec, HostLsm(apparmor=True, selinux=False))
    assert info.value.path == "process.selinuxLabel"


def test_no_labels_need_no_lsm() -> None:
    check_lsm_host(make_spec(), HostLsm(apparmor=False, selinux=False))


def test_this_host_without_lsms_refuses_labels() -> None:
    host = lsm.probe_host_lsm()
    if host.apparmor or host.selinux:
        pytest.skip("this host has an LSM enabled")
    with pytest.raises(ConfigError, match="AppArmor is not enabled"):
        check_lsm_host(make_spec({"apparmorProfile": "acme"}))


def test_apparmor_probe(tmp_path: Path) -> None:
    assert not apparmor_enabled(str(tmp_path))
    (tmp_path / "kernel" / "security" / "apparmor").mkdir(parents=True)
    enabled = tmp_path / "module" / "apparmor" / "parameters" / "enabled"
    enabled.parent.mkdir(parents=True)
    enabled.write_text("N\n")
    assert not apparmor_enabled(str(tmp_path))
    enabled.write_text("Y\n")
    assert apparmor_enabled(str(tmp_path))


def test_selinux_probe(tmp_path: Path) -> None:
    sys_root, proc = tmp_path / "sys", tmp_path / "proc"
    (proc / "self" / "attr").mkdir(parents=True)
    current = proc / "self" / "attr" / "current"
    current.write_text("system_u:system_r:unconfined_t:s0\0")
    assert not selinux_enabled(str(sys_root), str(proc))  # no selinuxfs
    (sys_root / "fs" / "selinux").mkdir(parents=True)
    (sys_root / "fs" / "selinux" / "enforce").write_text("1")
    assert selinux_enabled(str(sys_root), str(proc))
    current.write_text("kernel\0")
    assert not selinux_enabled(str(sys_root), str(proc))


# -- the mount option ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fstype", "data", "bind", "expected"),
    [
        ("tmpfs", "mode=755,size=65536k", False, f'mode=755,size=65536k,context="{LABEL}"'),
        ("devpts", "", False, f'context="{LABEL}"'),
        ("proc", "", False, ""),
        ("sysfs", "", False, ""),
        ("cgroup2", "nsdelegate", False, "nsdelegate"),
        ("mqueue", "", False, ""),
        ("none", "", True, ""),
        ("ext4", "", True, ""),
    ],
)
def test_mount_label_option(fstype: str, data: str, bind: bool, expected: str) -> None:
    assert label_mount_data(LABEL, fstype, data, bind=bind) == expected


def test_no_mount_label_no_option() -> None:
    assert label_mount_data("", "tmpfs", "mode=755", bind=False) == "mode=755"


# -- the attr writes -----------------------------------------------------------------


def test_apparmor_old_interface(proc: Path) -> None:
    sc = FakeStatfs()
    apply_apparmor_profile(sc, make_spec({"apparmorProfile": "acme"}), proc=str(proc))  # type: ignore[arg-type]
    assert (proc / "thread-self" / "attr" / "exec").read_text() == "exec acme"
    assert sc.checked == [str(proc / "thread-self" / "attr" / "exec")]


def test_apparmor_per_lsm_directory_wins(proc: Path) -> None:
    (proc / "thread-self" / "attr" / "apparmor").mkdir()
    (proc / "thread-self" / "attr" / "apparmor" / "exec").write_text("")
    apply_apparmor_profile(FakeStatfs(), make_spec({"apparmorProfile": "acme"}), proc=str(proc))  # type: ignore[arg-type]
    assert (proc / "thread-self" / "attr" / "apparmor" / "exec").read_text() == "exec acme"
    assert (proc / "thread-self" / "attr" / "exec").read_text() == ""


def test_selinux_label_is_written_bare(proc: Path) -> None:
    apply_selinux_label(FakeStatfs(), make_spec({"selinuxLabel": LABEL}), proc=str(proc))  # type: ignore[arg-type]
    assert (proc / "thread-self" / "attr" / "exec").read_text() == LABEL


def test_nothing_is_written_without_labels(proc: Path) -> None:
    sc = FakeStatfs()
    apply_apparmor_profile(sc, make_spec(), proc=str(proc))  # type: ignore[arg-type]
    apply_selinux_label(sc, make_spec(), proc=str(proc))  # type: ignore[arg-type]
    assert sc.checked == []
    assert (proc / "thread-self" / "attr" / "exec").read_text() == ""


def test_a_fake_proc_is_refused(proc: Path) -> None:
    """CVE-2019-16884: a /proc that is not procfs would swallow the label."""
    sc = FakeStatfs(magic=0x01021994)  # tmpfs
    with pytest.raises(CreateError, match="is not on procfs; refusing to run unconfined"):
        apply_apparmor_profile(sc, make_spec({"apparmorProfile": "acme"}), proc=str(proc))  # type: ignore[arg-type]
    assert (proc / "thread-self" / "attr" / "exec").read_text() == ""


def test_a_container_without_proc(tmp_path: Path) -> None:
    with pytest.raises(CreateError, match=r"^process\.selinuxLabel: opening .*no /proc mounted"):
        apply_selinux_label(FakeStatfs(), make_spec({"selinuxLabel": LABEL}), proc=str(tmp_path))  # type: ignore[arg-type]
