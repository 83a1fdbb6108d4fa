"""The OCI lifecycle through the ``corral`` command, with real busybox containers.

Each test drives create/start/state/kill/delete/run/list as a client (containerd, a
person) would and checks what the kernel says: exit statuses, ``/proc/<pid>``, files
the container's program writes into a bind-mounted host directory.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import corral_command, create_detached, requires_root, wait_for_status, wait_until

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from conftest import Corral

    MakeBundle = Callable[..., Path]

pytestmark = requires_root

LONG = ["sleep", "30"]


def bind_out(host_dir: Path) -> Callable[[dict[str, Any]], None]:
    """An ``edit`` that bind-mounts ``host_dir`` read-write on the container's /tmp."""

    def edit(spec: dict[str, Any]) -> None:
        spec["mounts"].append(
            {"destination": "/tmp", "type": "bind", "source": str(host_dir), "options": ["bind"]}
        )

    return edit


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def start(corral: Corral, make_bundle: MakeBundle, container_id: str, args: list[str]) -> int:
    """Create and start ``args``; the init's pid."""
    bundle = make_bundle(args)
    create_detached(corral, bundle, container_id)
    corral("start", container_id)
    pid: int = corral.state(container_id)["pid"]
    return pid


# -- run -------------------------------------------------------------------------------


@pytest.mark.parametrize(("script", "status"), [("exit 0", 0), ("exit 3", 3), ("exit 255", 255)])
def test_run_returns_the_programs_exit_status(
    run_inside: Callable[..., subprocess.CompletedProcess[str]], script: str, status: int
) -> None:
    assert run_inside(script, check=False).returncode == status


def test_run_of_a_program_killed_by_sigkill_exits_137(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    bundle = make_bundle(LONG)
    command = [*corral_command(), "--root", corral.root, "run", "--bundle", str(bundle)]
    with subprocess.Popen(
        [*command, container_id],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as run:
        assert wait_until(
            lambda: corral("state", container_id, check=False).stdout.count('"running"') == 1
        )
        corral("kill", container_id, "KILL")
        _, stderr = run.communicate(timeout=10)
    assert run.returncode == 137, stderr
    # run deletes the container once its program is gone.
    assert not os.path.exists(os.path.join(corral.root, container_id))


def test_run_passes_stdin_to_the_program(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    bundle = make_bundle(["sh", "-c", "read -r line; echo got $line"])
    result = corral("run", "--bundle", str(bundle), container_id, input="hello\n")
    assert result.stdout == "got hello\n"


def test_run_forwards_sigterm_to_the_container(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    script = 'trap "echo got TERM; exit 7" TERM; echo ready; sleep 30 & wait'
    bundle = make_bundle(["sh", "-c", script])
    command = [*corral_command(), "--root", corral.root, "run", "--bundle", str(bundle)]
    with subprocess.Popen(
        [*command, container_id], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    ) as run:
        assert run.stdout is not None
        assert run.stdout.readline() == "ready\n"
        run.terminate()
        rest, _ = run.communicate(timeout=10)
    assert (run.returncode, rest) == (7, "got TERM\n")


def without_pid_namespace(spec: dict[str, Any]) -> None:
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "pid"]


def test_run_without_a_pid_namespace(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    # Outside a pid namespace of its own the program is not pid 1 and can kill itself.
    bundle = make_bundle(["sh", "-c", "echo $$; kill -KILL $$"], edit=without_pid_namespace)
    result = corral("run", "--bundle", str(bundle), container_id, check=False)
    assert result.returncode == 137
    assert int(result.stdout) > 1


@pytest.mark.parametrize(
    "command", [["kill", "--all", "{id}", "KILL"], ["delete", "--force", "{id}"]]
)
def test_kill_all_and_delete_force_without_a_pid_namespace(
    corral: Corral, make_bundle: MakeBundle, container_id: str, command: list[str]
) -> None:
    # With no pid namespace, killing the init does not take its children with it.
    bundle = make_bundle(["sh", "-c", "sleep 30 & sleep 30 & wait"], edit=without_pid_namespace)
    create_detached(corral, bundle, container_id, "--detach", command="run")
    pid: int = corral.state(container_id)["pid"]
    assert wait_until(lambda: len(children(pid)) == 2)
    sleeps = children(pid)
    corral(*(arg.format(id=container_id) for arg in command))
    assert wait_until(lambda: not any(alive(p) for p in sleeps))


def children(pid: int) -> list[int]:
    """Live direct children of ``pid``."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as file:
            return [int(p) for p in file.read().split() if alive(int(p))]
    except FileNotFoundError:
        return []


def test_run_detach_returns_with_the_container_running(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    create_detached(corral, make_bundle(LONG), container_id, "--detach", command="run")
    state = corral.state(container_id)
    assert state["status"] == "running"
    assert alive(state["pid"])


# -- create and start -------------------------------------------------------------------


def test_create_leaves_the_init_waiting_and_start_runs_the_program(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    bundle = make_bundle(["sh", "-c", "echo ran > /tmp/marker"], edit=bind_out(shared))
    create_detached(corral, bundle, container_id)
    state = corral.state(container_id)
    assert state["status"] == "created"
    assert state["pid"] > 0 and alive(state["pid"])
    assert not (shared / "marker").exists()

    corral("start", container_id)
    assert wait_until((shared / "marker").exists)
    assert wait_until(lambda: (shared / "marker").read_text() == "ran\n")
    wait_for_status(corral, container_id, "stopped")
    assert corral.state(container_id)["pid"] == 0


def test_the_containers_stdout_is_creates_not_starts(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    bundle = make_bundle(["echo", "from the container"])
    create_out = create_detached(corral, bundle, container_id)
    with open(tmp_path / "start.out", "w") as start_out:
        corral(
            "start", container_id, capture_output=False, stdout=start_out, stderr=subprocess.PIPE
        )
    wait_for_status(corral, container_id, "stopped")
    assert create_out.read_text() == "from the container\n"
    assert (tmp_path / "start.out").read_text() == ""


def test_pid_file_holds_the_init_pid(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "init.pid"
    create_detached(corral, make_bundle(LONG), container_id, "--pid-file", str(pid_file))
    assert pid_file.read_text().strip() == str(corral.state(container_id)["pid"])


def test_a_relative_pid_file_is_relative_to_the_working_directory(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    bundle = make_bundle(LONG)
    out = tmp_path / "create.out"
    with open(out, "w") as stdout:
        corral(
            "create",
            "--pid-file",
            "rel.pid",
            "--bundle",
            str(bundle),
            container_id,
            cwd=tmp_path,
            capture_output=False,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stdout,
        )
    assert (tmp_path / "rel.pid").read_text() == str(corral.state(container_id)["pid"])


def test_start_twice_is_refused(corral: Corral, make_bundle: MakeBundle, container_id: str) -> None:
    pid = start(corral, make_bundle, container_id, LONG)
    again = corral("start", container_id, check=False)
    assert again.returncode != 0
    assert again.stderr == "corral: cannot start an already running container\n"
    assert corral.state(container_id)["status"] == "running"
    assert alive(pid)


def test_start_of_a_stopped_container_is_refused(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    start(corral, make_bundle, container_id, ["true"])
    wait_for_status(corral, container_id, "stopped")
    again = corral("start", container_id, check=False)
    assert again.returncode != 0
    assert again.stderr.startswith("corral: cannot start")


# -- kill ---------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", ["KILL", "9", "SIGKILL", "kill"])
def test_kill_by_name_number_or_sig_prefix_stops_the_container(
    corral: Corral, make_bundle: MakeBundle, container_id: str, signal: str
) -> None:
    pid = start(corral, make_bundle, container_id, LONG)
    corral("kill", container_id, signal)
    wait_for_status(corral, container_id, "stopped")
    assert wait_until(lambda: not alive(pid))


@pytest.mark.parametrize("signal", ["USR1", "SIGUSR1", "10"])
def test_kill_delivers_the_named_signal(
    corral: Corral, make_bundle: MakeBundle, container_id: str, signal: str
) -> None:
    # A pid-namespace init gets only signals it handles (pid_namespaces(7)): trap USR1.
    script = 'trap "echo got USR1; exit 0" USR1; echo ready; sleep 30 & wait'
    bundle = make_bundle(["sh", "-c", script])
    out = create_detached(corral, bundle, container_id)
    corral("start", container_id)
    assert wait_until(lambda: out.read_text() == "ready\n")
    corral("kill", container_id, signal)
    wait_for_status(corral, container_id, "stopped")
    assert out.read_text() == "ready\ngot USR1\n"


def test_kill_without_a_signal_sends_sigterm(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    script = 'trap "echo got TERM; exit 0" TERM; echo ready; sleep 30 & wait'
    out = create_detached(corral, make_bundle(["sh", "-c", script]), container_id)
    corral("start", container_id)
    assert wait_until(lambda: out.read_text() == "ready\n")
    corral("kill", container_id)
    wait_for_status(corral, container_id, "stopped")
    assert out.read_text() == "ready\ngot TERM\n"


def test_kill_of_a_stopped_container_says_not_running(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    start(corral, make_bundle, container_id, ["true"])
    wait_for_status(corral, container_id, "stopped")
    result = corral("kill", container_id, "KILL", check=False)
    assert result.returncode != 0
    assert result.stderr == "corral: container not running\n"


def container_processes(init_pid: int) -> set[int]:
    """Pids (host view) of the processes in ``init_pid``'s pid namespace, init excluded."""
    target = os.readlink(f"/proc/{init_pid}/ns/pid")
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != init_pid:
            try:
                if os.readlink(f"/proc/{name}/ns/pid") == target and alive(int(name)):
                    found.add(int(name))
            except OSError:
                continue
    return found


def test_kill_all_signals_every_process_not_only_the_init(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    # The init (sh, pid 1) ignores an unhandled TERM; its two sleeps do not.
    pid = start(corral, make_bundle, container_id, ["sh", "-c", "sleep 30 & sleep 30 & wait"])
    assert wait_until(lambda: len(container_processes(pid)) == 2)
    children = container_processes(pid)

    corral("kill", container_id, "TERM")
    assert not wait_until(lambda: not children & container_processes(pid), timeout=0.3)

    corral("kill", "--all", container_id, "TERM")
    assert wait_until(lambda: not children & container_processes(pid))


# -- delete -------------------------------------------------------------------------------


def test_delete_of_a_running_container_without_force_fails_and_leaves_it(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    pid = start(corral, make_bundle, container_id, LONG)
    result = corral("delete", container_id, check=False)
    assert result.returncode != 0
    assert result.stderr.startswith("corral: ")
    assert "not stopped" in result.stderr
    assert corral.state(container_id)["status"] == "running"
    assert alive(pid)


def test_delete_force_kills_the_container_and_removes_its_state(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    pid = start(corral, make_bundle, container_id, LONG)
    corral("delete", "--force", container_id)
    assert not os.path.exists(os.path.join(corral.root, container_id))
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"))
    missing = corral("state", container_id, check=False)
    assert missing.returncode != 0
    assert missing.stderr == "corral: container does not exist\n"


def test_delete_of_a_created_container_needs_no_force(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    create_detached(corral, make_bundle(LONG), container_id)
    pid: int = corral.state(container_id)["pid"]
    corral("delete", container_id)
    assert not os.path.exists(os.path.join(corral.root, container_id))
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"))


def test_delete_of_a_stopped_container(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    start(corral, make_bundle, container_id, ["true"])
    wait_for_status(corral, container_id, "stopped")
    corral("delete", container_id)
    assert not os.path.exists(os.path.join(corral.root, container_id))


def test_delete_force_of_a_missing_container_succeeds(corral: Corral) -> None:
    result = corral("delete", "--force", "no-such-container")
    assert result.stderr == ""
    plain = corral("delete", "no-such-container", check=False)
    assert plain.returncode != 0
    assert plain.stderr == "corral: container does not exist\n"


# -- list ---------------------------------------------------------------------------------


def test_list_shows_every_container_in_each_format(corral: Corral, make_bundle: MakeBundle) -> None:
    assert corral("list", "--format", "json").stdout.strip() == "null"
    ids = ["t-list-a", "t-list-b"]
    pids = {}
    for container_id in ids:
        bundle = make_bundle(LONG)
        create_detached(corral, bundle, container_id)
        pids[container_id] = corral.state(container_id)["pid"]
    corral("start", ids[1])

    assert corral("list", "-q").stdout.split() == ids

    listed = json.loads(corral("list", "--format", "json").stdout)
    assert [entry["id"] for entry in listed] == ids
    assert [entry["status"] for entry in listed] == ["created", "running"]
    assert [entry["pid"] for entry in listed] == [pids[i] for i in ids]

    table = corral("list").stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = [line.split() for line in table[1:]]
    assert [row[:3] for row in rows] == [
        [ids[0], str(pids[ids[0]]), "created"],
        [ids[1], str(pids[ids[1]]), "running"],
    ]
    assert all(row[-1] == "root" for row in rows)


def test_python_api_runs_a_container(
    tmp_path: Path, make_bundle: Callable[..., Path], container_id: str
) -> None:
    from corral import Runtime

    runtime = Runtime(root=str(tmp_path / "api-root"))
    bundle = make_bundle(["sh", "-c", "exit 7"])
    assert runtime.run(container_id, str(bundle)) == 7
    assert runtime.list() == []
    state = runtime.create(container_id, str(bundle))
    assert runtime.state(container_id)["status"] == "created"
    runtime.delete(container_id)
    assert runtime.list() == []
    assert not os.path.exists(f"/proc/{state['pid']}")  # killed, and reaped by delete


def test_init_survives_create_exiting_at_once(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    # Regression: the init drops PR_SET_PDEATHSIG only after `create` recorded it; if
    # `create` exited before the init had done so, the kernel killed the init and the
    # next `start` found a stopped container. Many quick rounds make the race visible.
    bundle = make_bundle(["sleep", "100"])
    for round_number in range(15):
        name = f"{container_id}-{round_number}"
        create_detached(corral, bundle, name)
        corral("start", name)
        assert corral.state(name)["status"] == "running"
        corral("delete", "--force", name)


def test_term_stops_a_created_container_like_runc(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    # The waiting init is pid 1 of its namespace: without a handler the kernel would drop
    # SIGTERM, but runc's created init dies of it, and so must corral's.
    bundle = make_bundle(["sleep", "100"])
    create_detached(corral, bundle, container_id)
    corral("kill", container_id, "TERM")
    wait_for_status(corral, container_id, "stopped")
