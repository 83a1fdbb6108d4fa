"""podman 4 (with conmon) driving the runtime under test through ``--runtime``.

podman calls the runtime's create, start, exec (``--process``, ``--detach``,
``--tty --console-socket``), pause, resume, update ``--resources``, kill and
``delete --force``. Each test runs once with corral and once with runc.
"""

from __future__ import annotations

import time

from e2e.clients import IMAGE, Podman, run_in_pty


def test_run_rm_output_and_exit_code(podman: Podman) -> None:
    result = podman("run", "--rm", IMAGE, "sh", "-c", "echo from-podman; exit 4", check=False)
    assert result.stdout.split() == ["from-podman"]
    assert result.returncode == 4
    assert podman("ps", "-a", "-q").stdout.split() == []


def test_user_workdir_read_only_and_cap_drop(podman: Podman) -> None:
    result = podman(
        "run", "--rm", "--user", "65534:65534", "--workdir", "/tmp", "--read-only",
        "--cap-drop", "ALL", IMAGE,
        "sh", "-c", "id -u; id -g; pwd; touch /x 2>/dev/null || echo ro-ok; "
        "grep CapEff /proc/self/status",
    )  # fmt: skip
    lines = result.stdout.split("\n")
    assert lines[:4] == ["65534", "65534", "/tmp", "ro-ok"]
    assert lines[4].split() == ["CapEff:", "0000000000000000"]


def test_cap_drop_removes_one_capability(podman: Podman) -> None:
    # CAP_CHOWN is bit 0 of the effective set: dropping it must clear that bit only.
    kept = podman("run", "--rm", IMAGE, "grep", "CapEff", "/proc/self/status").stdout.split()[1]
    dropped = podman(
        "run", "--rm", "--cap-drop", "CHOWN", IMAGE, "grep", "CapEff", "/proc/self/status"
    ).stdout.split()[1]  # fmt: skip
    assert int(kept, 16) & 1 == 1
    assert int(dropped, 16) == int(kept, 16) & ~1


def test_memory_and_pids_limits(podman: Podman) -> None:
    name = f"limits-{time.monotonic_ns()}"
    podman(
        "run", "-d", "--name", name, "--memory", "64m", "--pids-limit", "10", IMAGE,
        "sleep", "60",
    )  # fmt: skip
    try:
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout)
        assert cgroup_value(pid, "memory", "memory.limit_in_bytes", "memory.max") == str(64 << 20)
        assert cgroup_value(pid, "pids", "pids.max", "pids.max") == "10"
        # The limit is enforced: more than 10 processes cannot exist in the container.
        forked = podman(
            "exec", name, "sh", "-c",
            "for i in $(seq 20); do sleep 5 & done 2>/dev/null; echo done", check=False,
        )  # fmt: skip
        assert forked.returncode != 0 or "can't fork" in forked.stderr + forked.stdout
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def cgroup_value(pid: int, controller: str, v1_file: str, v2_file: str) -> str:
    with open(f"/proc/{pid}/cgroup") as table:
        lines = [line.rstrip("\n").split(":", 2) for line in table]
    for _, controllers, path in lines:
        if controller in controllers.split(","):
            with open(f"/sys/fs/cgroup/{controller}{path}/{v1_file}") as value:
                return value.read().strip()
    path = next(path for hid, _, path in lines if hid == "0")
    with open(f"/sys/fs/cgroup{path}/{v2_file}") as value:
        return value.read().strip()


def test_detached_exec_logs_stop(podman: Podman) -> None:
    name = f"detached-{time.monotonic_ns()}"
    podman(
        "run", "-d", "--name", name, IMAGE,
        "sh", "-c", "echo started; trap 'echo got-term; exit 0' TERM; "
        "while true; do sleep 0.1; done",
    )  # fmt: skip
    try:
        executed = podman("exec", "-e", "X=1", name, "sh", "-c", 'echo "x=$X"; exit 6', check=False)
        assert executed.stdout.split() == ["x=1"]
        assert executed.returncode == 6
        podman("pause", name)
        assert podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip() == "paused"
        podman("unpause", name)
        podman("stop", "-t", "10", name)
        state = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
        assert state.stdout.split() == ["exited", "0"]
        logs = podman("logs", name).stdout.split()
        assert logs == ["started", "got-term"]
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def test_interactive_tty(podman: Podman) -> None:
    status, output = run_in_pty(
        podman.command("run", "--rm", "-it", IMAGE, "sh", "-c", "test -t 0 && echo tty-ok; exit 2"),
        env=podman.env(),
    )
    assert "tty-ok" in output
    assert status == 2


def test_exec_with_tty(podman: Podman) -> None:
    name = f"exec-tty-{time.monotonic_ns()}"
    podman("run", "-d", "--name", name, IMAGE, "sleep", "60")
    try:
        status, output = run_in_pty(
            podman.command("exec", "-it", name, "sh", "-c", "test -t 1 && echo exec-tty-ok"),
            env=podman.env(),
        )
        assert "exec-tty-ok" in output
        assert status == 0
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
