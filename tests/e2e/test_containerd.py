"""containerd's ``io.containerd.runc.v2`` shim driving the runtime under test.

``ctr --runc-binary`` is what a ``BinaryName`` runtime entry does: the shim calls the
binary with runc's command line (create, start, state, kill, delete, exec, pause,
resume, ps, update, events). Each test runs once with corral and once with runc.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from e2e.clients import IMAGE, Ctr, host_memory_limit, run_in_pty

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def ctr(containerd: Ctr, ctr_name: str) -> Iterator[Ctr]:
    yield containerd
    containerd.cleanup(ctr_name)


def run(ctr: Ctr, runtime: str, name: str, *args: str, command: list[str]) -> tuple[int, str]:
    result = ctr("run", "--rm", "--runc-binary", runtime, *args, IMAGE, name, *command, check=False)
    return result.returncode, result.stdout + result.stderr


def start_detached(ctr: Ctr, runtime: str, name: str, *args: str, command: list[str]) -> None:
    ctr("run", "-d", "--runc-binary", runtime, *args, IMAGE, name, *command)
    wait_for_task(ctr, name, "RUNNING")


def wait_for_task(ctr: Ctr, name: str, status: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        for line in ctr("task", "ls", check=False).stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == name:
                seen = fields[-1]
                if seen == status:
                    return
        time.sleep(0.1)
    raise AssertionError(f"task {name} is {seen or 'missing'}, not {status}")


def test_run_attached_prints_and_returns_exit_code(ctr: Ctr, runtime: str, ctr_name: str) -> None:
    status, output = run(ctr, runtime, ctr_name, command=["sh", "-c", "echo hello-e2e; exit 7"])
    assert "hello-e2e" in output
    assert status == 7


def test_env_cwd_and_read_only_rootfs(ctr: Ctr, runtime: str, ctr_name: str) -> None:
    status, output = run(
        ctr,
        runtime,
        ctr_name,
        "--env",
        "E2E_VALUE=forty-two",
        "--cwd",
        "/tmp",
        "--read-only",
        command=["sh", "-c", 'echo "$E2E_VALUE"; pwd; touch /made 2>/dev/null || echo ro-ok'],
    )
    assert status == 0, output
    assert output.split() == ["forty-two", "/tmp", "ro-ok"]


def test_bind_mount(ctr: Ctr, runtime: str, ctr_name: str, tmp_path: Path) -> None:
    (tmp_path / "from-host").write_text("host data\n")
    status, output = run(
        ctr,
        runtime,
        ctr_name,
        "--mount",
        f"type=bind,src={tmp_path},dst=/host,options=rbind:ro",
        command=["sh", "-c", "cat /host/from-host; touch /host/x 2>/dev/null || echo ro-ok"],
    )
    assert status == 0, output
    assert output.split("\n")[:2] == ["host data", "ro-ok"]


def test_user_and_hostname_from_a_spec_file(
    ctr: Ctr, runtime: str, ctr_name: str, tmp_path: Path, busybox_rootfs: Path
) -> None:
    # ctr 1.6 has no --user/--hostname: a full spec via --config sets them, as a CRI client does.
    spec = json.loads(ctr("oci", "spec").stdout)
    spec["process"]["user"] = {"uid": 65534, "gid": 65534, "additionalGids": [65534]}
    spec["process"]["args"] = ["sh", "-c", "id -u; id -g; hostname"]
    spec["process"]["env"] = ["PATH=/bin"]
    spec["hostname"] = "e2e-host"
    spec["root"] = {"path": str(busybox_rootfs), "readonly": True}
    config = tmp_path / "config.json"
    config.write_text(json.dumps(spec))
    result = ctr(
        "run", "--rm", "--runc-binary", runtime, "--config", str(config), ctr_name, check=False
    )  # fmt: skip
    status, output = result.returncode, result.stdout + result.stderr
    assert status == 0, output
    assert output.split() == ["65534", "65534", "e2e-host"]


def test_memory_limit(ctr: Ctr, runtime: str, ctr_name: str) -> None:
    limit = 64 * 1024 * 1024
    start_detached(ctr, runtime, ctr_name, "--memory-limit", str(limit), command=["sleep", "60"])
    assert host_memory_limit(task_pid(ctr, ctr_name)) == limit


def task_pid(ctr: Ctr, name: str) -> int:
    for line in ctr("task", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields[0] == name:
            return int(fields[1])
    raise AssertionError(f"no task {name}")


def test_tty(ctr: Ctr, runtime: str, ctr_name: str) -> None:
    command = [
        "ctr", "--address", ctr.address, "--namespace", "corral-e2e",
        "run", "--rm", "-t", "--runc-binary", runtime, IMAGE, ctr_name,
        "sh", "-c", "test -t 0 && echo is-a-tty; exit 3",
    ]  # fmt: skip
    status, output = run_in_pty(command)
    assert "is-a-tty" in output
    assert status == 3


def test_detached_exec_ps_pause_resume_kill_delete(ctr: Ctr, runtime: str, ctr_name: str) -> None:
    start_detached(ctr, runtime, ctr_name, command=["sh", "-c", "while true; do sleep 0.1; done"])
    executed = ctr(
        "task", "exec", "--exec-id", "x1", ctr_name, "sh", "-c", "echo in-exec; exit 5",
        check=False,
    )  # fmt: skip
    assert "in-exec" in executed.stdout
    assert executed.returncode == 5
    pids = ctr("task", "ps", ctr_name).stdout.split("\n")[1:]
    assert len([line for line in pids if line.strip()]) >= 1
    ctr("task", "pause", ctr_name)
    wait_for_task(ctr, ctr_name, "PAUSED")
    ctr("task", "resume", ctr_name)
    wait_for_task(ctr, ctr_name, "RUNNING")
    ctr("task", "kill", "--signal", "SIGKILL", ctr_name)
    wait_for_task(ctr, ctr_name, "STOPPED")
    ctr("task", "delete", ctr_name)
    assert ctr_name not in ctr("task", "ls", "-q").stdout.split()


def test_metrics_come_from_events_stats(ctr: Ctr, runtime: str, ctr_name: str) -> None:
    start_detached(ctr, runtime, ctr_name, command=["sleep", "60"])
    metrics = ctr("task", "metrics", "--format", "json", ctr_name, check=False)
    assert metrics.returncode == 0, metrics.stderr
    data = json.loads(metrics.stdout)
    assert data, "no metrics"


def test_runtime_log_is_json(ctr: Ctr, runtime: str, ctr_name: str) -> None:
    # A failing create: the shim reads the runtime's --log (json) to report the error.
    status, output = run(ctr, runtime, ctr_name, command=["/no/such/program"])
    assert status != 0
    assert "no/such/program" in output
    assert os.path.basename(runtime) in ("corral", "runc")
