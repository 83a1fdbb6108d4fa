"""The rest of issue 4's Linux fields, checked from inside real busybox containers."""

from __future__ import annotations

import os

import pytest

from conftest import requires_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable
    from typing import Any

    RunInside = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = requires_root


def test_linux_devices_are_created(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["devices"] = [
            {"path": "/dev/corral-null", "type": "c", "major": 1, "minor": 3,
             "fileMode": 0o640, "uid": 0, "gid": 0}
        ]  # fmt: skip

    out = run_inside("stat -c '%F %t:%T %a' /dev/corral-null", edit=edit).stdout
    assert out.strip() == "character special file 1:3 640"


def test_personality_linux32(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["personality"] = {"domain": "LINUX32"}

    assert run_inside("uname -m", edit=edit).stdout.strip() in ("i686", "armv8l", "armv7l")


def test_time_namespace_offsets(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["namespaces"].append({"type": "time"})
        spec["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 365, "nanosecs": 0}}

    uptime = float(run_inside("cut -d' ' -f1 /proc/uptime", edit=edit).stdout)
    with open("/proc/uptime") as host:
        assert uptime - float(host.read().split()[0]) > 86400 * 364


def test_scheduler_nice(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["scheduler"] = {"policy": "SCHED_OTHER", "nice": 7}

    fields = run_inside("cat /proc/self/stat", edit=edit).stdout.rsplit(")", 1)[1].split()
    assert fields[16] == "7"  # field 19, nice (proc(5))


def test_apparmor_profile_without_apparmor_is_refused(run_inside: RunInside) -> None:
    import os

    if os.path.exists("/sys/module/apparmor/parameters/enabled"):
        with open("/sys/module/apparmor/parameters/enabled") as enabled:
            if enabled.read().strip() == "Y":
                pytest.skip("this host has AppArmor; the refusal is for hosts without it")

    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["apparmorProfile"] = "corral-test"

    result = run_inside("true", edit=edit, check=False)
    assert result.returncode != 0
    assert result.stderr.startswith("corral: config.json: process.apparmorProfile")


def test_mount_label_without_selinux_is_refused(run_inside: RunInside) -> None:
    import os

    if os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("this host has SELinux; the refusal is for hosts without it")

    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0"

    result = run_inside("true", edit=edit, check=False)
    assert result.returncode != 0
    assert result.stderr.startswith("corral: config.json: linux.mountLabel")


def test_io_priority(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 6}

    out = run_inside("ionice -p $$", edit=edit).stdout
    assert "best-effort" in out
    assert "6" in out


def test_idmapped_bind_mount(run_inside: RunInside, tmp_path: Any) -> None:
    shared = tmp_path / "idmapped"
    shared.mkdir()
    (shared / "owned").write_text("x")
    os.chown(shared / "owned", 1000, 1000)

    def edit(spec: dict[str, Any]) -> None:
        spec["mounts"].append(
            {
                "destination": "/idm",
                "type": "bind",
                "source": str(shared),
                "options": ["bind", "idmap"],
                "uidMappings": [{"containerID": 1000, "hostID": 0, "size": 1}],
                "gidMappings": [{"containerID": 1000, "hostID": 0, "size": 1}],
            }
        )

    result = run_inside("stat -c '%u %g' /idm/owned", edit=edit, check=False)
    if result.returncode != 0 and "not supported" in result.stderr.lower():
        pytest.skip(f"this kernel or filesystem refuses idmapped mounts: {result.stderr}")
    assert result.stdout.strip() == "0 0"
    assert os.stat(shared / "owned").st_uid == 1000  # the host's view is unchanged


def test_memory_policy(run_inside: RunInside) -> None:
    if not os.path.exists("/proc/self/numa_maps"):
        pytest.skip("this kernel has no NUMA support (no /proc/self/numa_maps)")

    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["memoryPolicy"] = {"mode": "MPOL_BIND", "nodes": "0"}

    result = run_inside("head -n 3 /proc/self/numa_maps", edit=edit, check=False)
    assert result.returncode == 0, result.stderr
    assert "bind:0" in result.stdout
