"""corral update: flags → linux.resources, --resources documents, and the call to the runtime."""

from __future__ import annotations

import copy
import io
import subprocess
import sys
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from corral.backend import Backend, CreatedInit, CreateRequest
from corral.cli import update_cmd
from corral.cli.args import Parsed, parse
from corral.cli.main import COMMANDS, GLOBAL_FLAGS
from corral.cli.update_cmd import (
    intel_rdt_from_flags,
    ram_in_bytes,
    read_resources_document,
    update_resources_from_flags,
)
from corral.core.procinfo import read_start_time
from corral.core.runtime import Runtime
from corral.core.state import Record
from corral.errors import ConfigError, UsageError
from corral.linux.cgroups.v2resources import plan_v2

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def flags(*argv: str) -> Parsed:
    return parse([*argv, "c1"], COMMANDS["update"].flags)


def resources(*argv: str) -> dict[str, Any]:
    return update_resources_from_flags(flags(*argv))


# --- memory sizes as runc reads them (docker/go-units RAMInBytes) --------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1048576", 1048576),
        ("512k", 512 << 10),
        ("512K", 512 << 10),
        ("10m", 10 << 20),
        ("10M", 10 << 20),
        ("10mb", 10 << 20),
        ("10MiB", 10 << 20),
        ("1g", 1 << 30),
        ("1 GB", 1 << 30),
        ("2t", 2 << 40),
        ("1p", 1 << 50),
        ("1.5g", 3 << 29),
        ("0.5k", 512),
        ("100b", 100),
        ("0", 0),
    ],
)
def test_ram_in_bytes(text: str, value: int) -> None:
    assert ram_in_bytes(text) == value


@pytest.mark.parametrize(
    "text", ["", "m", "1x", "1kk", "-1k", "1e3", "1.2.3", "1  m", "١٢", "0x10", "9999999p"]
)
def test_ram_in_bytes_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"size|large"):
        ram_in_bytes(text)


# --- flags ---------------------------------------------------------------------


def test_no_flags_change_nothing() -> None:
    assert resources() == {}


def test_only_the_given_flags_appear() -> None:
    assert resources("--memory", "10m", "--pids-limit", "20") == {
        "memory": {"limit": 10 << 20},
        "pids": {"limit": 20},
    }


def test_every_flag() -> None:
    got = resources(
        "--blkio-weight=300",
        "--cpu-period=100000",
        "--cpu-quota=-1",
        "--cpu-burst=0",
        "--cpu-idle=1",
        "--cpu-share=512",
        "--cpu-rt-period=1000000",
        "--cpu-rt-runtime=-1",
        "--cpuset-cpus=0-1",
        "--cpuset-mems=0",
        "--memory=1g",
        "--memory-reservation=512m",
        "--memory-swap=-1",
        "--pids-limit=-1",
    )
    assert got == {
        "blockIO": {"weight": 300},
        "cpu": {
            "period": 100000,
            "quota": -1,
            "burst": 0,
            "idle": 1,
            "shares": 512,
            "realtimePeriod": 1000000,
            "realtimeRuntime": -1,
            "cpus": "0-1",
            "mems": "0",
        },
        "memory": {"limit": 1 << 30, "reservation": 512 << 20, "swap": -1},
        "pids": {"limit": -1},
    }


def test_runc_no_change_values() -> None:
    # runc: an empty string and --blkio-weight 0 change nothing; --pids-limit 0 is a limit
    assert resources("--memory", "", "--cpuset-cpus", "", "--blkio-weight", "0") == {}
    assert resources("--pids-limit", "0") == {"pids": {"limit": 0}}


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("--memory", "lots"), "--memory: invalid size: 'lots'"),
        (("--memory", "-5"), "--memory: invalid size: '-5'"),
        (("--memory-swap", "1x"), "--memory-swap"),
        (("--cpu-share", "-1"), '--cpu-share: parsing "-1": invalid syntax'),
        (("--cpu-share", "1"), "--cpu-share: must be 2 to 262144, not 1"),
        (("--cpu-period", "1.5"), "--cpu-period: parsing"),
        (("--cpu-period", str(1 << 64)), "value out of range"),
        (("--cpu-quota", "-7"), "--cpu-quota: must be -1 (unlimited) or positive, not -7"),
        (("--cpu-quota", "+5"), "--cpu-quota: parsing"),
        (("--cpu-idle", "2"), "--cpu-idle: must be 0 to 1, not 2"),
        (("--cpu-idle", "x"), '--cpu-idle: parsing "x": invalid syntax'),
        (("--cpu-burst", "-1"), '--cpu-burst: parsing "-1": invalid syntax'),
        (("--cpu-quota", "1000", "--cpu-burst", "2000"), "--cpu-burst: 2000 is above the quota"),
        (("--pids-limit", "-3"), "--pids-limit: must be -1 (unlimited) or 0 or more, not -3"),
        (("--pids-limit", ""), "--pids-limit: parsing"),
        (("--blkio-weight", "2000"), "--blkio-weight: must be 1 to 1000, not 2000"),
        (("--cpuset-cpus", "0-x"), '--cpuset-cpus: "0-x" is not a list'),
        (("--memory", "10m", "--memory-swap", "5m"), "--memory-swap: 5242880 is below"),
    ],
)
def test_bad_values_name_the_flag(argv: tuple[str, ...], words: str) -> None:
    with pytest.raises(UsageError) as info:
        resources(*argv)
    message = str(info.value)
    assert message.startswith("invalid value for --")
    assert words in message
    assert "\n" not in message


def test_intel_rdt_flags() -> None:
    assert intel_rdt_from_flags(flags()) == {}
    parsed = flags("--l3-cache-schema", "L3:0=ff", "--mem-bw-schema", "MB:0=50")
    assert intel_rdt_from_flags(parsed) == {"l3CacheSchema": "L3:0=ff", "memBwSchema": "MB:0=50"}
    with pytest.raises(UsageError, match="--mem-bw-schema: must be one line starting with MB:"):
        intel_rdt_from_flags(flags("--mem-bw-schema", "L3:0=ff"))


# --- --resources ---------------------------------------------------------------


def test_resources_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"memory": {"limit": 1048576}, "pids": {"limit": 0}}')
    assert read_resources_document(str(path)) == {
        "memory": {"limit": 1048576},
        "pids": {"limit": 0},
    }


def test_resources_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b'{"cpu": {"shares": 100}}'))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert read_resources_document("-") == {"cpu": {"shares": 100}}


def test_resources_errors_name_the_document_and_field(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"memory": {"limit": -4}}')
    with pytest.raises(ConfigError) as info:
        read_resources_document(str(path))
    assert str(info.value) == f"{path}: memory.limit: must be -1 (unlimited) or positive, not -4"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a JSON document"):
        read_resources_document(str(path))
    path.write_text("[]")
    with pytest.raises(ConfigError, match="must be an object"):
        read_resources_document(str(path))
    with pytest.raises(UsageError, match="No such file"):
        read_resources_document(str(tmp_path / "missing.json"))
    # Device rules are applied by update too, so they are checked here as well.
    path.write_text('{"devices": [{"allow": true, "access": "rwx"}]}')
    with pytest.raises(ConfigError) as info:
        read_resources_document(str(path))
    assert str(info.value) == (
        f'{path}: devices[0].access: must be a combination of r, w and m, not "rwx"'
    )


# --- the command ---------------------------------------------------------------


class Recorder:
    calls: ClassVar[list[tuple[Any, ...]]] = []

    def __init__(self, root: str) -> None:
        self.root = root

    def update(self, container_id: str, resources: dict[str, Any], **kwargs: Any) -> None:
        Recorder.calls.append((self.root, container_id, resources, kwargs))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    import corral.core.runtime

    Recorder.calls = []
    monkeypatch.setattr(corral.core.runtime, "Runtime", Recorder)
    return Recorder


def run(*argv: str) -> None:
    options = parse(["--root", "/tmp/r", "update"], GLOBAL_FLAGS, stop_at_first_arg=True)
    update_cmd.cmd_update(options, flags(*argv))


def test_cmd_update_passes_the_flags(recorder: type[Recorder]) -> None:
    run("--memory", "1m")
    assert recorder.calls == [("/tmp/r", "c1", {"memory": {"limit": 1 << 20}}, {"intel_rdt": []})]


def test_cmd_update_resources_file_wins_over_flags(
    recorder: type[Recorder], tmp_path: Path
) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"pids": {"limit": 9}}')
    run("--resources", str(path), "--memory", "1m")
    assert recorder.calls == [("/tmp/r", "c1", {"pids": {"limit": 9}}, {"intel_rdt": []})]


def test_cmd_update_passes_the_intel_rdt_lines_l3_first(recorder: type[Recorder]) -> None:
    run("--mem-bw-schema", "MB:0=50", "--l3-cache-schema", "L3:0=f", "--memory", "1m")
    assert recorder.calls == [
        ("/tmp/r", "c1", {"memory": {"limit": 1 << 20}}, {"intel_rdt": ["L3:0=f", "MB:0=50"]})
    ]


def test_cmd_update_refuses_before_calling_the_runtime(recorder: type[Recorder]) -> None:
    with pytest.raises(UsageError):
        run("--memory", "-2")
    assert recorder.calls == []


# --- Runtime.update: the merged document reaches the backend ---------------------


class UpdateBackend(Backend):
    """Creates a real (sleeping) init with a cgroup record; records every update."""

    platform = "fake"

    def __init__(self, fail: ConfigError | None = None) -> None:
        self.children: list[subprocess.Popen[bytes]] = []
        self.updates: list[tuple[Any, str]] = []
        self.fail = fail

    def check(self, request: CreateRequest) -> None:
        pass

    def create(self, request: CreateRequest) -> CreatedInit:
        child = subprocess.Popen(["sleep", "60"])
        self.children.append(child)
        start_time = None
        while start_time is None:
            start_time = read_start_time(child.pid)
        return CreatedInit(child.pid, start_time, {"cgroup": {"driver": "fake"}})

    def commit(self, init: CreatedInit) -> None:
        pass

    def is_paused(self, record: Record) -> bool:
        return False

    def update(self, record: Record, resources: dict[str, Any], *, where: str) -> None:
        self.updates.append((copy.deepcopy(resources), where))
        if self.fail is not None:
            raise self.fail

    def update_intel_rdt(self, record: Record, lines: list[str]) -> None:
        self.updates.append((list(lines), "intelRdt"))
        record.extra["intelRdtGroup"] = "/sys/fs/resctrl/c1"


@pytest.fixture
def update_backend() -> Iterator[UpdateBackend]:
    backend = UpdateBackend()
    yield backend
    for child in backend.children:
        child.kill()
        child.wait()


def created(tmp_path: Path, backend: UpdateBackend, config_resources: dict[str, Any]) -> Runtime:
    import json

    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    config = {
        "ociVersion": "1.3.0",
        "root": {"path": "rootfs"},
        "linux": {"resources": config_resources},
    }
    (bundle / "config.json").write_text(json.dumps(config))
    runtime = Runtime(str(tmp_path / "root"), backend=backend)
    runtime.create("c1", str(bundle))
    return runtime


def test_update_applies_the_change_over_the_config_resources(
    tmp_path: Path, update_backend: UpdateBackend
) -> None:
    config = {"memory": {"limit": 256 << 20}, "cpu": {"quota": 20000, "period": 50000}}
    runtime = created(tmp_path, update_backend, config)
    runtime.update("c1", {"memory": {"swap": 512 << 20}})
    runtime.update("c1", {"cpu": {"quota": 10000}})
    first, second = (resources for resources, _where in update_backend.updates)
    assert first == {
        "memory": {"limit": 256 << 20, "swap": 512 << 20},
        "cpu": {"quota": 20000, "period": 50000},
    }
    assert second["cpu"] == {"quota": 10000, "period": 50000}
    assert second["memory"] == first["memory"]  # the first update is kept
    # What cgroup v2 then writes: swap alone needs the limit, the quota keeps the period.
    plan = {name: value for name, value, _path in plan_v2(second)}
    assert plan["memory.swap.max"] == str(256 << 20)
    assert plan["cpu.max"] == "10000 50000"


def test_unlimited_memory_without_swap_drops_the_old_swap_limit(
    tmp_path: Path, update_backend: UpdateBackend
) -> None:
    runtime = created(tmp_path, update_backend, {"memory": {"limit": 1 << 20, "swap": 1 << 20}})
    runtime.update("c1", {"memory": {"limit": -1}})
    merged = update_backend.updates[0][0]
    assert merged == {"memory": {"limit": -1}}  # both unlimited, as a config saying so
    plan = {name: value for name, value, _path in plan_v2(merged)}
    assert plan["memory.max"] == plan["memory.swap.max"] == "max"


def test_a_refused_update_changes_nothing_in_the_record(
    tmp_path: Path, update_backend: UpdateBackend
) -> None:
    runtime = created(tmp_path, update_backend, {"pids": {"limit": 10}})
    update_backend.fail = ConfigError("linux.resources.pids.limit", "refused")
    with pytest.raises(ConfigError) as info:
        runtime.update("c1", {"pids": {"limit": 5}})
    # The document is the update's, not config.json.
    assert str(info.value) == "update: linux.resources.pids.limit: refused"
    update_backend.fail = None
    runtime.update("c1", {"memory": {"limit": 1 << 20}})
    assert update_backend.updates[-1][0] == {"pids": {"limit": 10}, "memory": {"limit": 1 << 20}}


def test_an_idle_group_keeps_no_shares_unless_the_update_gives_them(
    tmp_path: Path, update_backend: UpdateBackend
) -> None:
    # The kernel refuses a weight while cpu.idle is 1: re-sending the config's shares
    # with every later update would make them all fail. They are kept for idle 0
    # (the kernel then resets the weight to the default).
    runtime = created(tmp_path, update_backend, {"cpu": {"shares": 512}})
    runtime.update("c1", update_resources_from_flags(flags("--cpu-idle", "1")))
    runtime.update("c1", {"pids": {"limit": 9}})
    runtime.update("c1", {"cpu": {"idle": 0}})
    runtime.update("c1", {"cpu": {"idle": 1, "shares": 256}})  # asked for: sent (EINVAL)
    sent = [resources for resources, _where in update_backend.updates]
    assert sent[0] == {"cpu": {"idle": 1}}
    assert sent[1] == {"cpu": {"idle": 1}, "pids": {"limit": 9}}
    assert sent[2]["cpu"] == {"idle": 0, "shares": 512}
    assert sent[3]["cpu"] == {"idle": 1, "shares": 256}


def test_update_flags_are_registered_for_runc_clients() -> None:
    parsed = flags("--cpu-burst", "5000", "--cpu-idle", "0")
    assert parsed.given("cpu_burst") and parsed.given("cpu_idle")
    assert set(update_cmd.FLAGS) <= {flag.dest for flag in COMMANDS["update"].flags}


def test_intel_rdt_lines_go_first_and_the_group_is_recorded(
    tmp_path: Path, update_backend: UpdateBackend
) -> None:
    runtime = created(tmp_path, update_backend, {"pids": {"limit": 10}})
    update_backend.fail = ConfigError("linux.resources.pids.limit", "refused")
    with pytest.raises(ConfigError):
        runtime.update("c1", {"pids": {"limit": 5}}, intel_rdt=["L3:0=f"])
    assert [where for _, where in update_backend.updates] == ["intelRdt", "linux.resources"]
    assert update_backend.updates[0][0] == ["L3:0=f"]
    # saved although the cgroup part failed: delete must find the group it made
    record = runtime.store.load("c1")
    assert record.extra["intelRdtGroup"] == "/sys/fs/resctrl/c1"
    assert record.extra["resources"] == {"pids": {"limit": 10}}
