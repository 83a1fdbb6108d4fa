"""``corral update`` on live containers, as root: the cgroup files change and the new
limits hold (a fork refused, a process OOM-killed), bad values are one line naming
the flag or field and change nothing. Runs on cgroup v1, hybrid and v2 hosts: the
files are found from ``/proc/<init>/cgroup`` and the host's hierarchy."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import create_detached, requires_root, wait_for_status
from corral.linux.cgroups.hierarchy import detect

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from conftest import Corral

    MakeBundle = Callable[..., Path]

pytestmark = requires_root

MIB = 1 << 20


def limited(spec: dict[str, Any]) -> None:
    spec["linux"]["resources"] = {
        "memory": {"limit": 256 * MIB, "swap": 256 * MIB},
        "pids": {"limit": 100},
    }


@pytest.fixture
def running(corral: Corral, make_bundle: MakeBundle, container_id: str) -> str:
    """A started container (256 MiB, 100 pids) whose init sleeps; its id."""
    hierarchy = detect()
    needed = {"memory", "pids"}
    if hierarchy.mode != "v2" and not needed <= set(hierarchy.v1_roots):
        pytest.skip("the v1 memory and pids controllers are not both mounted")
    bundle = make_bundle(["sleep", "1000"], edit=limited)
    create_detached(corral, bundle, container_id)
    corral("start", container_id)
    wait_for_status(corral, container_id, "running")
    return container_id


def cgroup_file(corral: Corral, container_id: str, controller: str, name: str) -> str:
    """The host path of the container's ``name`` file of ``controller``."""
    pid = corral.state(container_id)["pid"]
    hierarchy = detect()
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    for line in lines:
        _number, controllers, path = line.split(":", 2)
        if hierarchy.mode == "v2" and controllers == "":
            return f"{hierarchy.unified_root}{path}/{name}"
        if hierarchy.mode != "v2" and controller in controllers.split(","):
            return f"{hierarchy.v1_roots[controller]}{path}/{name}"
    raise AssertionError(f"no {controller} cgroup for pid {pid}: {lines}")


def read(corral: Corral, container_id: str, controller: str, name: str) -> str:
    with open(cgroup_file(corral, container_id, controller, name)) as f:
        return f.read().strip()


def memory_limit(corral: Corral, container_id: str) -> int:
    name = "memory.max" if detect().mode == "v2" else "memory.limit_in_bytes"
    return int(read(corral, container_id, "memory", name))


def run_exec(corral: Corral, container_id: str, script: str) -> subprocess.CompletedProcess[str]:
    return corral("exec", container_id, "sh", "-c", script, check=False, stdin=subprocess.DEVNULL)


def test_memory_and_pids_flags_change_the_files(corral: Corral, running: str) -> None:
    assert memory_limit(corral, running) == 256 * MIB
    assert read(corral, running, "pids", "pids.max") == "100"
    corral("update", "--memory", "32m", "--memory-swap", "32m", "--pids-limit", "7", running)
    assert memory_limit(corral, running) == 32 * MIB
    assert read(corral, running, "pids", "pids.max") == "7"
    corral("update", "--pids-limit", "-1", running)
    assert read(corral, running, "pids", "pids.max") == "max"
    assert memory_limit(corral, running) == 32 * MIB  # untouched by the second update


def test_a_lower_pids_limit_refuses_forks(corral: Corral, running: str) -> None:
    script = "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait; echo done"
    before = run_exec(corral, running, script)
    assert before.returncode == 0, before.stderr
    assert "can't fork" not in before.stdout + before.stderr
    corral("update", "--pids-limit", "4", running)
    after = run_exec(corral, running, script)
    assert "can't fork" in after.stdout + after.stderr, after
    corral("update", "--pids-limit", "100", running)
    again = run_exec(corral, running, script)
    assert again.returncode == 0 and "can't fork" not in again.stdout + again.stderr


def test_a_lower_memory_limit_kills_a_large_process(corral: Corral, running: str) -> None:
    # dd fills a 64 MiB buffer: fine under 256 MiB, OOM-killed (SIGKILL) under 32 MiB.
    script = "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo status=$?"
    assert "status=0" in run_exec(corral, running, script).stdout
    corral("update", "--memory", "32m", "--memory-swap", "32m", running)
    result = run_exec(corral, running, script)
    assert "status=137" in result.stdout, result
    assert corral.state(running)["status"] == "running"  # the sleeping init survives


def test_resources_from_stdin(corral: Corral, running: str) -> None:
    document = {"pids": {"limit": 42}, "memory": {"limit": 48 * MIB, "swap": 48 * MIB}}
    corral("update", "--resources", "-", running, input=json.dumps(document))
    assert read(corral, running, "pids", "pids.max") == "42"
    assert memory_limit(corral, running) == 48 * MIB


def test_resources_file_ignores_the_flags(corral: Corral, running: str, tmp_path: Path) -> None:
    path = tmp_path / "resources.json"
    path.write_text('{"pids": {"limit": 11}}')
    corral("update", "--resources", str(path), "--pids-limit", "12", running)
    assert read(corral, running, "pids", "pids.max") == "11"


@pytest.mark.parametrize(
    ("argv", "stdin", "words"),
    [
        (("--memory", "-5"), None, "--memory: invalid size: '-5'"),
        (("--pids-limit", "-9"), None, "--pids-limit: must be -1 (unlimited) or 0 or more"),
        (("--cpu-share", "1"), None, "--cpu-share: must be 2 to 262144, not 1"),
        (("--memory", "1m", "--memory-swap", "512k"), None, "--memory-swap: 524288 is below"),
        (("--resources", "-"), '{"memory": {"limit": -5}}', "stdin: memory.limit: must be -1"),
        (("--resources", "-"), '{"pids": {"limit": "x"}}', "stdin: pids.limit: must be an int"),
        (("--resources", "-"), "{", "stdin: not a JSON document"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_field_and_changes_nothing(
    corral: Corral, running: str, argv: tuple[str, ...], stdin: str | None, words: str
) -> None:
    result = corral("update", *argv, running, check=False, input=stdin or "")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert words in lines[0]
    assert memory_limit(corral, running) == 256 * MIB
    assert read(corral, running, "pids", "pids.max") == "100"


def test_a_memory_limit_below_the_usage_names_the_limit_and_its_cause(
    corral: Corral, running: str
) -> None:
    if detect().mode == "v2":
        pytest.skip("cgroup v2 takes a limit below the usage (it reclaims, then OOM-kills)")
    with open("/proc/swaps") as f:
        if len(f.read().splitlines()) > 1:
            pytest.skip("with swap, reclaim may meet a 4k limit")
    result = corral("update", "--memory", "4k", "--memory-swap", "4k", running, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    # The cause (usage above the limit), not the memsw retry's EINVAL, and not config.json.
    assert "update: linux.resources.memory.limit: " in lines[0]
    assert "Device or resource busy" in lines[0]
    assert "config.json" not in lines[0]
    assert memory_limit(corral, running) == 256 * MIB


def test_one_field_of_a_pair_keeps_the_other(corral: Corral, running: str) -> None:
    # The merged document: swap alone keeps the limit (v2 writes swap - limit).
    corral("update", "--memory-swap", "512m", running)
    assert memory_limit(corral, running) == 256 * MIB
    if detect().mode == "v2":
        assert read(corral, running, "memory", "memory.swap.max") == str(256 * MIB)
    else:
        assert read(corral, running, "memory", "memory.memsw.limit_in_bytes") == str(512 * MIB)


def test_cpu_burst_and_idle_flags(corral: Corral, running: str) -> None:
    v2 = detect().mode == "v2"
    burst_file = "cpu.max.burst" if v2 else "cpu.cfs_burst_us"
    try:
        read(corral, running, "cpu", burst_file)
        read(corral, running, "cpu", "cpu.idle")
    except (OSError, AssertionError):
        pytest.skip("no cpu controller with burst and idle files (Linux 5.14/5.15)")
    corral("update", "--cpu-quota", "50000", "--cpu-burst", "20000", running)
    assert read(corral, running, "cpu", burst_file) == "20000"
    # Shares, then idle: the weight cannot change while idle, so the shares must not be
    # re-sent by the next update (which would then fail with EINVAL).
    corral("update", "--cpu-share", "512", running)
    corral("update", "--cpu-idle", "1", running)
    assert read(corral, running, "cpu", "cpu.idle") == "1"
    corral("update", "--pids-limit", "20", running)
    assert read(corral, running, "pids", "pids.max") == "20"
    # Back to normal, the kernel resets the weight; the update writes the shares again.
    corral("update", "--cpu-idle", "0", running)
    assert read(corral, running, "cpu", "cpu.idle") == "0"
    if v2:
        assert read(corral, running, "cpu", "cpu.weight") != "100"
    else:
        assert read(corral, running, "cpu", "cpu.shares") == "512"
    result = corral("update", "--cpu-idle", "3", running, check=False)
    assert result.returncode == 1
    assert "invalid value for --cpu-idle: must be 0 to 1, not 3" in result.stderr


def test_a_field_this_hierarchy_cannot_apply_is_named(corral: Corral, running: str) -> None:
    document: dict[str, Any]
    if detect().mode == "v2":
        document, field = {"memory": {"swappiness": 10}}, "memory.swappiness"
    else:
        document, field = {"unified": {"pids.max": "3"}}, "unified"
    result = corral("update", "--resources", "-", running, check=False, input=json.dumps(document))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert field in result.stderr
    assert read(corral, running, "pids", "pids.max") == "100"


def test_update_of_a_stopped_container_fails(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    bundle = make_bundle(["true"], edit=limited)
    create_detached(corral, bundle, container_id)
    corral("start", container_id)
    wait_for_status(corral, container_id, "stopped")
    result = corral("update", "--pids-limit", "5", container_id, check=False)
    assert result.returncode == 1
    assert "container not running" in result.stderr
