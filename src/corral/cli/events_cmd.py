"""``corral events [--stats] [--interval 5s] <id>``: stats and OOM notices as JSON lines.

As runc's ``events``: each event is one compact JSON object on its own line,
``{"type":"stats","id":...,"data":{...}}`` (the layout of
:mod:`corral.linux.cgroups.stats`) or ``{"type":"oom","id":...}``. With ``--stats``
one stats event is printed and the command exits (containerd's go-runc ``Stats``
runs exactly ``events --stats <id>`` and decodes one event). Without it, a stats
event follows every ``--interval`` (Go duration syntax; go-runc passes
``--interval=Ns``), an oom event each time the kernel's OOM killer acts in the
container's memory cgroup, and the stream ends when the container stops. stdout is
flushed after each event: the reader is a pipe.

The checks come in runc's order: the id exists ("container does not exist"), the
interval is positive, the container is not stopped ("container with id X is not
running").
"""

from __future__ import annotations

import sys
import time
from typing import Protocol

from corral.core import fastos
from corral.errors import ContainerNotRunningError, CorralError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.cli.args import Parsed
    from corral.core.runtime import Runtime
    from corral.core.state import Record

# How often the stream checks that the container still runs: the delay between the
# container's exit and the end of the stream.
LIVENESS_SECONDS = 0.1

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # Go accepts both micro signs
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> float:
    """A Go ``time.ParseDuration`` string ("5s", "500ms", "1m30s", "1.5h", "0") in
    seconds; a UsageError worded as runc's flag parser words it."""
    error = UsageError(f'invalid value "{text}" for flag -interval: parse error')
    rest = text
    sign = 1.0
    if rest[:1] in ("+", "-"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise error
    total = 0.0
    while rest:
        index = 0
        while index < len(rest) and (rest[index].isdigit() or rest[index] == "."):
            index += 1
        number = rest[:index]
        if not number or number == "." or number.count(".") > 1 or not number.isascii():
            raise error
        rest = rest[index:]
        index = 0
        while index < len(rest) and not (rest[index].isdigit() or rest[index] == "."):
            index += 1
        unit = rest[:index]
        if unit not in _UNITS:
            raise error  # a missing or unknown unit
        rest = rest[index:]
        total += float(number) * _UNITS[unit]
    return sign * total


def cmd_events(options: Parsed, parsed: Parsed) -> int:
    from corral.core.runtime import Runtime
    from corral.errors import ContainerNotFoundError

    container_id = parsed.args[0]
    interval = parse_duration(parsed.text("interval"))
    runtime = Runtime(options.text("root"))
    if not runtime.store.exists(container_id):
        raise ContainerNotFoundError(container_id)
    if interval <= 0:
        raise CorralError("duration interval must be greater than 0")
    record = runtime.store.load(container_id)
    if not _running(runtime, record):
        raise CorralError(f"container with id {container_id} is not running")
    if parsed.flag("stats"):
        _emit_stats(runtime, record)
        return 0
    return _stream(runtime, record, interval)


def _running(runtime: Runtime, record: Record) -> bool:
    from corral.core import state as st

    return runtime.status(record) != st.STOPPED


def stats_event(container_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "stats", "id": container_id, "data": data}


def oom_event(container_id: str) -> dict[str, Any]:
    return {"type": "oom", "id": container_id}


def _write(event: dict[str, Any]) -> None:
    from corral.core import jsonio

    sys.stdout.write(jsonio.dumps(event) + "\n")
    sys.stdout.flush()


def _collect(runtime: Runtime, record: Record) -> dict[str, Any]:
    data = runtime.stats(record.id)
    if sys.platform.startswith("linux"):
        if data.get("network_interfaces") is None:
            from corral.linux.cgroups.stats import read_network_interfaces

            data["network_interfaces"] = read_network_interfaces(record.pid)
    return data


def _emit_stats(runtime: Runtime, record: Record) -> None:
    _write(stats_event(record.id, _collect(runtime, record)))


class OomNotices(Protocol):
    """What the stream needs of an OOM watcher (corral.linux.cgroups.oom)."""

    gone: bool

    def wait(self, timeout: float) -> int: ...

    def close(self) -> None: ...


def _oom_watcher(record: Record) -> OomNotices | None:
    document = record.extra.get("cgroup")
    # An explicit platform block: the FreeBSD type check must not follow Linux modules.
    if document and sys.platform.startswith("linux"):
        from corral.linux.cgroups.manager import manager_from_record
        from corral.linux.cgroups.oom import watch_oom

        try:
            return watch_oom(manager_from_record(document))
        except OSError as error:
            message = error.strerror or str(error)
            raise CorralError(f"cannot watch for OOM events: {message}") from None
    return None


def _stream(runtime: Runtime, record: Record, interval: float) -> int:
    watcher = _oom_watcher(record)
    try:
        next_stats = time.monotonic() + interval
        while True:
            wait = min(max(next_stats - time.monotonic(), 0.0), LIVENESS_SECONDS)
            notices = watcher.wait(wait) if watcher is not None else _sleep(wait)
            for _ in range(notices):
                _write(oom_event(record.id))
            if (watcher is not None and watcher.gone) or not _running(runtime, record):
                # One last look: an OOM kill is often what stopped the container.
                if watcher is not None and not watcher.gone:
                    for _ in range(watcher.wait(0.0)):
                        _write(oom_event(record.id))
                return 0
            if time.monotonic() >= next_stats:
                # A fixed period, as Go's time.Tick; a late tick is dropped, not made up for.
                next_stats += interval
                if next_stats <= time.monotonic():
                    next_stats = time.monotonic() + interval
                try:
                    _emit_stats(runtime, record)
                except ContainerNotRunningError:
                    continue  # it stopped since the check above: the next one ends the stream
                except CorralError as error:
                    # As runc: a failed read is reported and the stream goes on.
                    fastos.tell(f"corral: {error}\n")
    finally:
        if watcher is not None:
            watcher.close()


def _sleep(seconds: float) -> int:
    time.sleep(seconds)
    return 0
