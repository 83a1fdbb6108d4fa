"""Cgroups through the CLI (root): placement, removal, limits, pause, ps, kill --all, update.

Every test probes the host's layout (pure v2, v1 or hybrid) and computes what it
expects from ``/proc/self/cgroup`` of this process (the CLI's parent, whose cgroups the
CLI inherits) by runc 1.1's rules, written out here independently of corral's code:
an absolute ``cgroupsPath`` is below each mount point; a relative one (and the default,
the container id) below the caller's own cgroup, on pure v2 below its parent.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from conftest import create_detached, requires_root, wait_for_status, wait_until

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from conftest import Corral

pytestmark = requires_root


def mounts() -> tuple[str, str | None, dict[str, str]]:
    """(mode, cgroup2 mount point, v1 hierarchy key -> mount point), from mountinfo."""
    unified = None
    v1: dict[str, str] = {}
    with open("/proc/self/mountinfo") as file:
        for line in file:
            fields = line.split()
            separator = fields.index("-")
            fstype, options, point = fields[separator + 1], fields[separator + 3], fields[4]
            if fstype == "cgroup2" and unified is None:
                unified = point
            elif fstype == "cgroup":
                for option in options.split(","):
                    if option not in ("rw", "ro", "xattr", "noprefix", "clone_children"):
                        v1.setdefault(option, point)
    controllers = [key for key in v1 if not key.startswith("name=")]
    if not controllers:
        return "v2", unified, {}
    return ("hybrid" if unified else "v1"), unified, v1


MODE, UNIFIED, V1 = mounts()


def own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """/proc/<pid>/cgroup: v1 key (or "" for cgroup2) -> path."""
    found = {}
    with open(f"/proc/{pid}/cgroup") as file:
        for line in file:
            _number, keys, path = line.rstrip("\n").split(":", 2)
            for key in keys.split(",") if keys else [""]:
                found[key] = path
    return found


def expected_paths(cgroups_path: str) -> dict[str, str]:
    """What /proc/<init>/cgroup must say per hierarchy for this cgroupsPath."""
    own = own_cgroups()
    keys = ([""] if UNIFIED else []) + list(V1)
    wanted = {}
    for key in keys:
        if cgroups_path.startswith("/"):
            wanted[key] = cgroups_path
            continue
        base = own[key]
        if MODE == "v2" and base != "/":
            base = os.path.dirname(base)
        wanted[key] = os.path.join(base, cgroups_path)
    return wanted


def directories(paths: dict[str, str]) -> list[str]:
    """The host directories of those cgroups."""
    found = []
    for key, path in paths.items():
        point = UNIFIED if key == "" else V1[key]
        assert point is not None
        found.append(point.rstrip("/") + path)
    return found


def memory_dir(paths: dict[str, str]) -> str:
    if MODE == "v2":
        return directories({"": paths[""]})[0]
    return directories({"memory": paths["memory"]})[0]


def set_linux(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        spec["linux"].update(fields)

    return edit


def init_pid(corral: Corral, container_id: str) -> int:
    return int(corral.state(container_id)["pid"])


@pytest.fixture
def sleeper(
    corral: Corral, make_bundle: Callable[..., Path], container_id: str
) -> Callable[..., int]:
    """``sleeper(edit=None, script=...)``: a running container; its init's pid."""

    def start(
        edit: Callable[[dict[str, Any]], None] | None = None, script: str = "sleep 100"
    ) -> int:
        bundle = make_bundle(["sh", "-c", script], edit=edit)
        create_detached(corral, bundle, container_id, "--detach", command="run")
        return init_pid(corral, container_id)

    return start


# -- placement and removal -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["default", "absolute", "relative"])
def test_cgroup_placement_and_removal(
    corral: Corral, sleeper: Callable[..., int], container_id: str, kind: str
) -> None:
    value = {
        "default": "",
        "absolute": f"/corral-test-{uuid.uuid4().hex[:8]}/{container_id}",
        "relative": f"corral-test-{uuid.uuid4().hex[:8]}/{container_id}",
    }[kind]
    wanted = expected_paths(value or container_id)
    pid = sleeper(set_linux(cgroupsPath=value) if value else None)
    seen = own_cgroups(pid)
    assert {key: seen[key] for key in wanted} == wanted
    dirs = directories(wanted)
    assert all(os.path.isdir(path) for path in dirs)
    corral("delete", "--force", container_id)
    assert [path for path in dirs if os.path.exists(path)] == []
    if kind != "default":
        # the parent created for it is gone too
        assert [p for p in dirs if os.path.exists(os.path.dirname(p))] == []


def test_a_failed_create_leaves_no_cgroup(
    corral: Corral, make_bundle: Callable[..., Path], container_id: str
) -> None:
    value = f"/corral-test-{uuid.uuid4().hex[:8]}"
    bundle = make_bundle(["no-such-program"], edit=set_linux(cgroupsPath=value))
    result = corral("create", "--bundle", str(bundle), container_id, check=False)
    assert result.returncode == 1
    assert "no-such-program" in result.stderr
    dirs = directories(expected_paths(value))
    assert [path for path in dirs if os.path.exists(path)] == []


def test_a_bad_resource_value_fails_before_anything_is_created(
    corral: Corral, make_bundle: Callable[..., Path], container_id: str
) -> None:
    value = f"/corral-test-{uuid.uuid4().hex[:8]}"
    edit = set_linux(cgroupsPath=value, resources={"pids": {"limit": "many"}})
    bundle = make_bundle(["true"], edit=edit)
    result = corral("create", "--bundle", str(bundle), container_id, check=False)
    assert result.stderr.startswith("corral: config.json: linux.resources.pids.limit: ")
    assert [path for path in directories(expected_paths(value)) if os.path.exists(path)] == []
    assert not os.path.exists(os.path.join(corral.root, container_id))


def test_inside_the_cgroup_namespace_the_cgroup_is_the_root(
    run_inside: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    # The default config unshares a cgroup namespace: it is rooted at the container's
    # cgroup because the init joined it before unsharing.
    lines = run_inside("cat /proc/self/cgroup").stdout.split()
    assert lines and all(line.endswith(":/") for line in lines), lines


def test_without_a_cgroup_namespace_the_full_path_shows(
    run_inside: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    value = f"/corral-test-{uuid.uuid4().hex[:8]}/c"

    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["namespaces"] = [
            ns for ns in spec["linux"]["namespaces"] if ns["type"] != "cgroup"
        ]
        spec["linux"]["cgroupsPath"] = value

    lines = run_inside("cat /proc/self/cgroup", edit=edit).stdout.split()
    assert lines and all(line.endswith(":" + value) for line in lines), lines


# -- limits --------------------------------------------------------------------------


CGROUP_MOUNT = {
    "destination": "/sys/fs/cgroup",
    "type": "cgroup",
    "source": "cgroup",
    "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
}


def with_cgroup_mount(resources: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["resources"] = resources
        spec["mounts"].append(CGROUP_MOUNT)

    return edit


def test_memory_limit_is_visible_inside(
    run_inside: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    limit = 48 << 20
    inside = (
        "/sys/fs/cgroup/memory.max"
        if MODE == "v2"
        else ("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    )
    result = run_inside(f"cat {inside}", edit=with_cgroup_mount({"memory": {"limit": limit}}))
    assert result.stdout.strip() == str(limit)


def test_a_memory_hog_is_oom_killed(
    run_inside: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    limit = 32 << 20
    memory = {"limit": limit, "swap": limit}  # memory+swap = memory: it cannot swap
    # dd's 128 MiB block buffer is touched in full by the read from /dev/zero.
    script = "dd if=/dev/zero of=/dev/null bs=128M count=1 2>/dev/null; echo dd=$?"
    result = run_inside(script, edit=set_linux(resources={"memory": memory}), check=False)
    # the OOM killer takes dd (or, with memory.oom.group, the whole container)
    assert "dd=137" in result.stdout or result.returncode == 128 + 9, (result, result.stderr)
    assert "dd=0" not in result.stdout


@pytest.mark.parametrize("limit", [8, 100])
def test_pids_limit_stops_a_fork_loop(
    run_inside: Callable[..., subprocess.CompletedProcess[str]], limit: int
) -> None:
    script = "for i in $(seq 1 40); do sleep 10 & done; echo all forked"
    edit = set_linux(resources={"pids": {"limit": limit}})
    result = run_inside(script, edit=edit, check=False)
    if limit < 40:
        # busybox sh: "can't fork: Resource temporarily unavailable" (EAGAIN), and it stops
        assert "can't fork" in result.stderr
        assert "all forked" not in result.stdout
    else:
        assert result.stdout == "all forked\n", result.stderr


# -- pause, resume, ps, kill --all, update ----------------------------------------------


COUNTER = (
    "i=0; while true; do i=$((i+1)); echo $i > /dev/shm/counter.new; "
    "mv /dev/shm/counter.new /dev/shm/counter; sleep 0.02; done"
)


def read_counter(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/root/dev/shm/counter") as file:
            return int(file.read() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def test_pause_freezes_and_resume_thaws(
    corral: Corral, sleeper: Callable[..., int], container_id: str
) -> None:
    pid = sleeper(script=COUNTER)
    assert wait_until(lambda: read_counter(pid) > 3)
    corral("pause", container_id)
    assert corral.state(container_id)["status"] == "paused"
    frozen_at = read_counter(pid)
    time.sleep(0.4)
    assert read_counter(pid) == frozen_at
    again = corral("pause", container_id, check=False)
    assert again.returncode == 1 and "container not running" in again.stderr
    corral("resume", container_id)
    wait_for_status(corral, container_id, "running")
    assert wait_until(lambda: read_counter(pid) > frozen_at + 3)
    result = corral("resume", container_id, check=False)
    assert result.returncode == 1 and "container not paused" in result.stderr


def test_a_paused_container_is_deleted_with_force(
    corral: Corral, sleeper: Callable[..., int], container_id: str
) -> None:
    value = f"/corral-test-{uuid.uuid4().hex[:8]}"
    sleeper(set_linux(cgroupsPath=value))
    corral("pause", container_id)
    refused = corral("delete", container_id, check=False)
    assert "that is not stopped: paused" in refused.stderr
    corral("delete", "--force", container_id)
    assert [path for path in directories(expected_paths(value)) if os.path.exists(path)] == []


def shared_pid_namespace(spec: dict[str, Any]) -> None:
    spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "pid"]


def test_ps_json_and_kill_all(
    corral: Corral, sleeper: Callable[..., int], container_id: str
) -> None:
    # Without a pid namespace, killing the init would leave its children: --all must
    # reach each of them through the cgroup.
    pid = sleeper(shared_pid_namespace, script="sleep 100 & sleep 100 & sleep 100 & wait")
    assert wait_until(lambda: len(json.loads(corral("ps", "-f", "json", container_id).stdout)) == 4)
    pids = json.loads(corral("ps", "--format", "json", container_id).stdout)
    assert pids[0] == pid
    for child in pids[1:]:
        assert os.readlink(f"/proc/{child}/exe").endswith("busybox")
    corral("kill", "--all", container_id, "KILL")
    assert wait_until(
        lambda: not any(os.path.exists(f"/proc/{p}/stat") and _alive(p) for p in pids)
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_ps_table_keeps_the_header_and_the_containers_rows(
    corral: Corral, sleeper: Callable[..., int], container_id: str
) -> None:
    pid = sleeper()
    table = corral("ps", container_id).stdout.splitlines()
    ps = subprocess.run(["ps", "-ef"], capture_output=True, text=True, check=True)
    header = ps.stdout.splitlines()[0]
    assert table[0] == header
    assert [int(line.split()[1]) for line in table[1:]] == [pid]
    custom = corral("ps", container_id, "-o", "pid,comm").stdout.splitlines()
    assert custom[0].split() == ["PID", "COMMAND"]
    assert custom[1].split() == [str(pid), "sleep"]
    missing = corral("ps", container_id, "-o", "comm", check=False)
    assert "couldn't find PID field" in missing.stderr


def test_update_changes_a_live_containers_memory_limit(
    corral: Corral, sleeper: Callable[..., int], container_id: str
) -> None:
    from corral.core.runtime import Runtime

    value = f"/corral-test-{uuid.uuid4().hex[:8]}"
    sleeper(set_linux(cgroupsPath=value, resources={"memory": {"limit": 64 << 20}}))
    limit_file = memory_dir(expected_paths(value)) + (
        "/memory.max" if MODE == "v2" else "/memory.limit_in_bytes"
    )
    with open(limit_file) as file:
        assert file.read().strip() == str(64 << 20)
    Runtime(corral.root).update(container_id, {"memory": {"limit": 96 << 20}})
    with open(limit_file) as file:
        assert file.read().strip() == str(96 << 20)


def test_warm_up_migration_leaves_this_process_where_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The warm-up writes this process's pid into its own cgroup: it must move
    nothing, in any hierarchy (corral.linux.cgroups.warmup)."""
    from corral.linux.cgroups import warmup

    with open("/proc/self/cgroup") as table:
        before = table.read()
    procs = warmup.own_procs_file()
    assert procs is not None and os.path.exists(procs)
    monkeypatch.setattr(warmup, "_started", False)
    warmup.start()
    warmup.finish()
    with open("/proc/self/cgroup") as table:
        assert table.read() == before
