"""corral update: flags → linux.resources, --resources documents, and the call to the runtime."""

from __future__ import annotations

import io
import sys
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from corral.cli import update_cmd
from corral.cli.args import Parsed, parse
from corral.cli.main import COMMANDS, GLOBAL_FLAGS
from corral.cli.update_cmd import (
    intel_rdt_from_flags,
    ram_in_bytes,
    read_resources_document,
    update_resources_from_flags,
)
from corral.errors import ConfigError, CorralError, UsageError

if TYPE_CHECKING:
    from pathlib import Path


def flags(*argv: str) -> Parsed:
    return parse([*argv, "c1"], COMMANDS["update"].flags, context="update")


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
    assert recorder.calls == [("/tmp/r", "c1", {"memory": {"limit": 1 << 20}}, {})]


def test_cmd_update_resources_file_wins_over_flags(
    recorder: type[Recorder], tmp_path: Path
) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"pids": {"limit": 9}}')
    run("--resources", str(path), "--memory", "1m")
    assert recorder.calls == [("/tmp/r", "c1", {"pids": {"limit": 9}}, {})]


def test_cmd_update_refuses_intel_rdt_rather_than_ignore_it(recorder: type[Recorder]) -> None:
    with pytest.raises(CorralError, match=r"^--mem-bw-schema: updating Intel RDT"):
        run("--mem-bw-schema", "MB:0=50", "--memory", "1m")
    assert recorder.calls == []


def test_cmd_update_refuses_before_calling_the_runtime(recorder: type[Recorder]) -> None:
    with pytest.raises(UsageError):
        run("--memory", "-2")
    assert recorder.calls == []
