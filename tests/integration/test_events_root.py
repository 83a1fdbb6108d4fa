"""``corral events`` on real busybox containers: stats, the stream, OOM notices, and the
key set of runc's own ``events --stats`` for the same bundle."""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import time

import pytest

from conftest import corral_command, create_detached, requires_root, wait_for_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from conftest import Corral

    MakeBundle = Callable[..., Path]

pytestmark = requires_root

MB = 1024 * 1024


def limits(memory: int | None = None, pids: int | None = None) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        resources = spec["linux"].setdefault("resources", {})
        if memory is not None:
            resources["memory"] = {"limit": memory, "swap": memory}
        if pids is not None:
            resources["pids"] = {"limit": pids}

    return edit


def start(corral: Corral, bundle: Path, container_id: str) -> None:
    create_detached(corral, bundle, container_id)
    corral("start", container_id)
    wait_for_status(corral, container_id, "running")


def events(corral: Corral, *args: str, timeout: float = 30) -> list[dict[str, Any]]:
    result = corral("events", *args, timeout=timeout)
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_stats_count_the_processes_and_the_memory(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    script = "sleep 100 & sleep 100 & sleep 100 & wait"
    bundle = make_bundle(["sh", "-c", script], edit=limits(memory=64 * MB, pids=40))
    start(corral, bundle, container_id)
    # sh and its three sleeps; wait until the sleeps are forked.
    deadline = time.monotonic() + 5
    while True:
        (event,) = events(corral, "--stats", container_id)
        if event["data"]["pids"].get("current") == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert event["type"] == "stats" and event["id"] == container_id
    data = event["data"]
    assert data["pids"] == {"current": 4, "limit": 40}
    assert data["memory"]["usage"]["usage"] > 0
    assert data["memory"]["usage"]["limit"] == 64 * MB
    assert data["cpu"]["usage"]["total"] > 0


class EventsStream:
    """``corral events`` running in the background; its events read one at a time."""

    def __init__(self, corral: Corral, *args: str) -> None:
        command = [*corral_command(), "--root", corral.root, "events", *args]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.stdout = self.process.stdout

    def next(self, timeout: float = 30) -> dict[str, Any] | None:
        """The next event, or None at the end of the stream."""
        ready, _, _ = select.select([self.stdout], [], [], timeout)
        assert ready, "no event within the timeout"
        line = self.stdout.readline()
        return json.loads(line) if line else None

    def rest(self, timeout: float = 30) -> list[dict[str, Any]]:
        """Every event until the stream ends; it must end within ``timeout``."""
        remaining, _ = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0
        return [json.loads(line) for line in remaining.splitlines()]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def control_dir(tmp_path: Path) -> tuple[Path, Callable[[dict[str, Any]], None]]:
    """A host directory the container sees at /ctl, and the ``edit`` that mounts it."""
    host = tmp_path / "ctl"
    host.mkdir()

    def edit(spec: dict[str, Any]) -> None:
        spec["mounts"].append(
            {"destination": "/ctl", "type": "bind", "source": str(host), "options": ["bind"]}
        )

    return host, edit


def test_stream_ticks_until_the_container_exits(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    # The container runs until the test creates /ctl/stop (slow hosts, such as the
    # emulated VM of tools/vmtest, make fixed sleeps unreliable).
    host, edit = control_dir(tmp_path)
    script = "while [ ! -e /ctl/stop ]; do sleep 0.05; done"
    start(corral, make_bundle(["sh", "-c", script], edit=edit), container_id)
    stream = EventsStream(corral, "--interval", "200ms", container_id)
    try:
        first = [stream.next() for _ in range(3)]
        (host / "stop").touch()
        stopped = time.monotonic()
        rest = stream.rest()
        ended_after = time.monotonic() - stopped
    finally:
        stream.close()
    assert all(event is not None and event["type"] == "stats" for event in first), first
    assert all(event["type"] == "stats" for event in rest), rest
    assert ended_after < 10  # it ended with the container, not at a timeout


def test_stopped_container_is_refused(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    bundle = make_bundle(["true"])
    start_result = create_detached(corral, bundle, container_id)
    assert start_result.exists()
    corral("start", container_id)
    wait_for_status(corral, container_id, "stopped")
    result = corral("events", "--stats", container_id, check=False)
    assert result.returncode == 1
    assert f"container with id {container_id} is not running" in result.stderr


def test_oom_kill_is_reported(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    # The hog (a shell variable growing past the limit) starts once `events` is
    # watching (its first stats event is printed after the OOM watcher is set up); the
    # OOM killer picks it (the biggest process), the init goes on and exits.
    host, edit = control_dir(tmp_path)
    hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}"
    script = f'while [ ! -e /ctl/go ]; do sleep 0.05; done; sh -c "{hog}"; sleep 0.3'

    def limited(spec: dict[str, Any]) -> None:
        edit(spec)
        limits(memory=32 * MB)(spec)

    start(corral, make_bundle(["sh", "-c", script], edit=limited), container_id)
    stream = EventsStream(corral, "--interval", "200ms", container_id)
    try:
        first = stream.next()
        (host / "go").touch()
        rest = stream.rest(timeout=60)
    finally:
        stream.close()
    assert first is not None and first["type"] == "stats"
    assert {"type": "oom", "id": container_id} in rest, rest


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON document ("memory.usage.limit"); list items as "[]"."""
    paths = set()
    if isinstance(value, dict):
        for key, item in value.items():
            paths.add(prefix + key)
            paths |= key_paths(item, prefix + key + ".")
    elif isinstance(value, list):
        for item in value:
            paths |= key_paths(item, prefix + "[].")
    return paths


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_keys_match_runcs_events_stats(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    bundle = make_bundle(["sleep", "30"], edit=limits(memory=64 * MB, pids=40))
    start(corral, bundle, container_id)
    ours = events(corral, "--stats", container_id)[0]["data"]

    runc_root = str(tmp_path / "runc-root")
    runc_id = container_id + "-runc"
    subprocess.run(
        ["runc", "--root", runc_root, "run", "-d", runc_id],
        cwd=bundle,
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # the container keeps runc's stdio: no pipes
        stderr=subprocess.DEVNULL,
        timeout=30,
    )
    try:
        result = subprocess.run(
            ["runc", "--root", runc_root, "events", "--stats", runc_id],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        theirs = json.loads(result.stdout)["data"]
    finally:
        subprocess.run(
            ["runc", "--root", runc_root, "delete", "--force", runc_id],
            check=False,
            capture_output=True,
            timeout=30,
        )

    def comparable(data: dict[str, Any]) -> set[str]:
        # Left out: counters that may be zero in one container and not in the other
        # (omitempty), the hugetlb sizes (runc 1.1 reads hugetlb from v1 only), and
        # memory.usage.max, which on v2 is memory.peak: runc reads it since 1.2, not 1.1.
        volatile = ("cpu.throttling.", "blkio.", "hugetlb.", "memory.cache")
        paths = key_paths(data) - {"memory.usage.max"}
        return {path for path in paths if not path.startswith(volatile)}

    assert comparable(ours) == comparable(theirs)
    assert ours["network_interfaces"] == theirs["network_interfaces"]
    assert ours["memory"]["usage"]["limit"] == theirs["memory"]["usage"]["limit"]
    assert ours["pids"]["limit"] == theirs["pids"]["limit"]
    assert ours["cpuset"].get("cpus") == theirs["cpuset"].get("cpus")
