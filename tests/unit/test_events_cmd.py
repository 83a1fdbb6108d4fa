"""corral events: Go durations, runc's error order and texts, the events' JSON lines.

The "container" here is a plain child process recorded in a private state root, and
Runtime.stats is replaced by a counter, so the stream's timing and ending are tested
without root or cgroups (tests/integration/test_events_root.py has the real thing).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from corral.cli import events_cmd
from corral.cli.main import main
from corral.core import state as st
from corral.core.procinfo import read_start_time
from corral.core.runtime import Runtime
from corral.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("500ms", 0.5),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("250us", 0.00025),
        ("250\u00b5s", 0.00025),
        ("10ns", 1e-8),
        ("0", 0.0),
        ("+2s", 2.0),
        ("-1s", -1.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert events_cmd.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "1x", "abc", "", "s", "1..5s", "1s5", "-", "5 s"])
def test_bad_durations_are_refused_as_runc_words_it(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        events_cmd.parse_duration(text)
    assert str(caught.value) == f'invalid value "{text}" for flag -interval: parse error'


def test_event_shapes() -> None:
    assert events_cmd.oom_event("c1") == {"type": "oom", "id": "c1"}
    assert events_cmd.stats_event("c1", {"pids": {}}) == {
        "type": "stats",
        "id": "c1",
        "data": {"pids": {}},
    }


# -- the command ----------------------------------------------------------------------


def record_for(root: Path, container_id: str, pid: int) -> None:
    store = Runtime(str(root)).store
    store.claim(container_id)
    start = read_start_time(pid) or 0
    store.save(
        st.Record(
            id=container_id,
            bundle="/nonexistent",
            rootfs="/nonexistent/rootfs",
            oci_version="1.3.0",
            created="2025-01-01T00:00:00Z",
            pid=pid,
            start_time=start,
            stored_status=st.CREATED,
        )
    )


@pytest.fixture
def fake_stats(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Runtime.stats returns {"pids": {"current": N}} with N counting the calls."""
    calls: list[str] = []

    def stats(self: Runtime, container_id: str) -> dict[str, Any]:
        calls.append(container_id)
        return {"pids": {"current": len(calls)}, "network_interfaces": None}

    monkeypatch.setattr(Runtime, "stats", stats, raising=False)
    return calls


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(["sleep", "0.7"], stdin=subprocess.DEVNULL)
    yield child
    child.kill()
    child.wait()


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stats_once(
    tmp_path: Path,
    fake_stats: list[str],
    sleeper: subprocess.Popen[bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    record_for(tmp_path, "c1", sleeper.pid)
    assert main(["--root", str(tmp_path), "events", "--stats", "c1"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.count("\n") == 1
    assert out.startswith('{"type":"stats","id":"c1","data":{')  # compact, as Go's encoder
    assert lines(out) == [
        {
            "type": "stats",
            "id": "c1",
            "data": {"pids": {"current": 1}, "network_interfaces": None},
        }
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stream_ticks_and_ends_when_the_container_stops(
    tmp_path: Path,
    fake_stats: list[str],
    sleeper: subprocess.Popen[bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    import time

    record_for(tmp_path, "c1", sleeper.pid)
    started = time.monotonic()
    assert main(["--root", str(tmp_path), "events", "--interval=150ms", "c1"]) == 0
    elapsed = time.monotonic() - started
    events = lines(capsys.readouterr().out)
    # sleep 0.7 with a 150 ms period: 4 ticks (the first after one period, as Go's
    # time.Tick), and the stream ends within a liveness period of the exit.
    assert 3 <= len(events) <= 5, events
    assert [event["data"]["pids"]["current"] for event in events] == list(range(1, len(events) + 1))
    assert all(event["type"] == "stats" and event["id"] == "c1" for event in events)
    assert 0.6 < elapsed < 1.5


def test_missing_container_is_reported_before_the_interval(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert main(["--root", str(tmp_path), "events", "--interval", "0s", "nope"]) == 1
    assert "container does not exist" in capfd.readouterr().err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_zero_interval_is_refused(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], capfd: pytest.CaptureFixture[str]
) -> None:
    record_for(tmp_path, "c1", sleeper.pid)
    assert main(["--root", str(tmp_path), "events", "--interval", "0s", "c1"]) == 1
    assert "duration interval must be greater than 0" in capfd.readouterr().err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stopped_container_is_refused(
    tmp_path: Path, fake_stats: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    record_for(tmp_path, "c1", child.pid)
    assert main(["--root", str(tmp_path), "events", "--stats", "c1"]) == 1
    assert "container with id c1 is not running" in capfd.readouterr().err
    assert fake_stats == []
