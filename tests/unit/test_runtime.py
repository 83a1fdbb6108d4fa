"""The lifecycle core, driven without root against a fake backend.

The fake backend's "init" is a real child process that does what a container's init
does at the end of create: it opens the exec fifo for writing (blocking) and, once
released, writes the byte and runs a tiny program. So these tests exercise the state
store, the status machine and the fifo handshake for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from corral.backend import Backend, CreatedInit, CreateRequest
from corral.core.procinfo import read_start_time
from corral.core.runtime import Runtime
from corral.core.state import Record
from corral.errors import (
    ConfigError,
    ContainerExistsError,
    ContainerNotFoundError,
    ContainerNotRunningError,
    CreateError,
    IllegalStateError,
    InvalidIdError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

INIT = """
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
os.write(fd, b"0"); os.close(fd)
open(sys.argv[2], "w").write("started")
time.sleep(float(sys.argv[3]))
"""


class FakeBackend(Backend):
    platform = "fake"

    def __init__(self, tmp: Path, *, fail: bool = False, runtime_seconds: float = 30) -> None:
        self.tmp = tmp
        self.fail = fail
        self.seconds = runtime_seconds
        self.children: list[subprocess.Popen[bytes]] = []
        self.destroyed: list[str] = []
        self.committed: list[int] = []

    def check(self, request: CreateRequest) -> None:
        if request.spec.hostname == "bad":
            raise ConfigError("hostname", "refused by the fake backend")

    def create(self, request: CreateRequest) -> CreatedInit:
        if self.fail:
            raise CreateError("mount /proc: Operation not permitted")
        fifo = f"{request.state_dir}/{request.fifo_name}"
        marker = str(self.tmp / f"{request.container_id}.started")
        child = subprocess.Popen([sys.executable, "-c", INIT, fifo, marker, str(self.seconds)])
        self.children.append(child)
        start_time = None
        while start_time is None:
            start_time = read_start_time(child.pid)
        return CreatedInit(child.pid, start_time, {"fake": True})

    def commit(self, init: CreatedInit) -> None:
        self.committed.append(init.pid)

    def processes(self, record: Record) -> list[int]:
        return [record.pid]

    def destroy(self, record: Record) -> None:
        self.destroyed.append(record.id)
        for child in self.children:
            if child.pid == record.pid:
                child.wait()

    def reap(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait()


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    import json

    directory = tmp_path / "bundle"
    (directory / "rootfs").mkdir(parents=True)
    config = {
        "ociVersion": "1.3.0",
        "root": {"path": "rootfs"},
        "hostname": "ok",
        "annotations": {"org.example": "yes"},
    }
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[FakeBackend]:
    fake = FakeBackend(tmp_path)
    yield fake
    fake.reap()


def test_full_lifecycle(tmp_path: Path, bundle: Path, backend: FakeBackend) -> None:
    runtime = Runtime(str(tmp_path / "root"), backend=backend)
    state = runtime.create("c1", str(bundle), pid_file=str(tmp_path / "pid"))
    assert state["status"] == "created"
    assert backend.committed == [state["pid"]]
    assert state["annotations"] == {"org.example": "yes"}
    assert (tmp_path / "pid").read_text() == str(state["pid"])
    assert not (tmp_path / "c1.started").exists()  # nothing runs before start

    runtime.start("c1")
    assert runtime.state("c1")["status"] == "running"
    for _ in range(200):
        if (tmp_path / "c1.started").exists():
            break
        time.sleep(0.01)
    assert (tmp_path / "c1.started").read_text() == "started"

    with pytest.raises(IllegalStateError, match="already running"):
        runtime.start("c1")
    with pytest.raises(IllegalStateError, match="not stopped: running"):
        runtime.delete("c1")
    assert [s["id"] for s in runtime.list()] == ["c1"]

    runtime.kill("c1", 9)
    backend.children[0].wait()
    assert runtime.state("c1")["status"] == "stopped"
    assert runtime.state("c1")["pid"] == 0
    with pytest.raises(ContainerNotRunningError):
        runtime.kill("c1", 15)
    with pytest.raises(IllegalStateError, match="has stopped"):
        runtime.start("c1")
    runtime.delete("c1")
    assert backend.destroyed == ["c1"]
    assert not (tmp_path / "root" / "c1").exists()
    with pytest.raises(ContainerNotFoundError, match="does not exist"):
        runtime.state("c1")


def test_second_create_is_refused_and_harmless(
    tmp_path: Path, bundle: Path, backend: FakeBackend
) -> None:
    runtime = Runtime(str(tmp_path / "root"), backend=backend)
    runtime.create("same", str(bundle))
    with pytest.raises(ContainerExistsError, match="same"):
        runtime.create("same", str(bundle))
    assert runtime.state("same")["status"] == "created"


def test_delete_created_kills_the_init(tmp_path: Path, bundle: Path, backend: FakeBackend) -> None:
    runtime = Runtime(str(tmp_path / "root"), backend=backend)
    pid = runtime.create("c2", str(bundle))["pid"]
    runtime.delete("c2")
    assert backend.children[0].wait(timeout=5) == -9
    assert read_start_time(pid) is None
    assert runtime.list() == []


def test_unwritable_pid_file_undoes_create(
    tmp_path: Path, bundle: Path, backend: FakeBackend
) -> None:
    runtime = Runtime(str(tmp_path / "root"), backend=backend)
    with pytest.raises(OSError):
        runtime.create("c7", str(bundle), pid_file=str(tmp_path / "no" / "such" / "pid"))
    assert backend.committed == []  # never released to wait for start
    assert read_start_time(backend.children[0].pid) is None  # killed and reaped
    assert backend.destroyed == ["c7"]
    assert os.listdir(tmp_path / "root") == []


def test_failed_create_leaves_nothing(tmp_path: Path, bundle: Path) -> None:
    runtime = Runtime(str(tmp_path / "root"), backend=FakeBackend(tmp_path, fail=True))
    with pytest.raises(CreateError, match="mount /proc"):
        runtime.create("broken", str(bundle))
    assert os.listdir(tmp_path / "root") == []


def test_backend_check_runs_before_anything(tmp_path: Path, bundle: Path) -> None:
    import json

    config = json.loads((bundle / "config.json").read_text())
    config["hostname"] = "bad"
    (bundle / "config.json").write_text(json.dumps(config))
    runtime = Runtime(str(tmp_path / "root"), backend=FakeBackend(tmp_path))
    with pytest.raises(ConfigError, match="hostname: refused"):
        runtime.create("c3", str(bundle))
    assert not (tmp_path / "root").exists() or os.listdir(tmp_path / "root") == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: (d / "config.json").write_text("{"), "config.json: not valid JSON"),
        (lambda d: (d / "config.json").unlink(), "config.json: no such file"),
        (lambda d: (d / "rootfs").rmdir(), "root.path: root filesystem .* does not exist"),
        (
            lambda d: (d / "config.json").write_text(
                '{"ociVersion": "1.0", "root": {"path": "r"}}'
            ),
            'ociVersion: "1.0" is not a SemVer',
        ),
    ],
)
def test_bad_bundles(
    tmp_path: Path, bundle: Path, backend: FakeBackend, mutate: object, message: str
) -> None:
    mutate(bundle)  # type: ignore[operator]
    runtime = Runtime(str(tmp_path / "root"), backend=backend)
    with pytest.raises(Exception, match=message):
        runtime.create("c4", str(bundle))
    assert backend.children == []
    assert not (tmp_path / "root" / "c4").exists()


def test_invalid_id_is_refused_first(tmp_path: Path, bundle: Path, backend: FakeBackend) -> None:
    runtime = Runtime(str(tmp_path / "root"), backend=backend)
    with pytest.raises(InvalidIdError):
        runtime.create("../escape", str(bundle))
    assert not (tmp_path / "escape").exists()


def test_start_of_dead_init_is_an_error(tmp_path: Path, bundle: Path, backend: FakeBackend) -> None:
    runtime = Runtime(str(tmp_path / "root"), backend=backend)
    runtime.create("c5", str(bundle))
    backend.children[0].kill()
    backend.children[0].wait()
    with pytest.raises(IllegalStateError, match="stopped"):
        runtime.start("c5")
    runtime.delete("c5")


def test_reused_pid_counts_as_stopped(tmp_path: Path, bundle: Path, backend: FakeBackend) -> None:
    runtime = Runtime(str(tmp_path / "root"), backend=backend)
    runtime.create("c6", str(bundle))
    record = runtime.store.load("c6")
    record.start_time += 1  # as if the pid now belonged to a process started later
    runtime.store.save(record)
    assert runtime.state("c6")["status"] == "stopped"


def test_poststart_and_poststop_hooks_run_from_the_record(
    tmp_path: Path, bundle: Path, backend: FakeBackend
) -> None:
    import json

    script = tmp_path / "hook.sh"
    script.write_text('#!/bin/sh\ncat > "$1"\n')
    script.chmod(0o755)
    failing = tmp_path / "fail.sh"
    failing.write_text("#!/bin/sh\necho broken >&2\nexit 4\n")
    failing.chmod(0o755)
    config = json.loads((bundle / "config.json").read_text())
    config["hooks"] = {
        "poststart": [
            {"path": str(failing)},
            {"path": str(script), "args": ["hook.sh", str(tmp_path / "poststart.json")]},
        ],
        "poststop": [{"path": str(script), "args": ["hook.sh", str(tmp_path / "poststop.json")]}],
    }
    (bundle / "config.json").write_text(json.dumps(config))
    warnings: list[str] = []
    runtime = Runtime(str(tmp_path / "root"), backend=backend, warn=warnings.append)
    pid = runtime.create("h1", str(bundle))["pid"]
    runtime.start("h1")
    started = json.loads((tmp_path / "poststart.json").read_text())
    assert started["status"] == "running"
    assert started["pid"] == pid
    assert started["annotations"] == {"org.example": "yes"}
    # A failing poststart hook is a warning, and the next one still ran (config.md).
    assert len(warnings) == 1
    assert "hooks.poststart[0]" in warnings[0]
    assert "exit status 4" in warnings[0]
    runtime.kill("h1", 9)
    backend.children[0].wait()
    runtime.delete("h1")
    stopped = json.loads((tmp_path / "poststop.json").read_text())
    assert stopped["status"] == "stopped"
    assert stopped["id"] == "h1"


def test_force_delete_forgets_a_container_whose_cleanup_fails(
    tmp_path: Path, bundle: Path, backend: FakeBackend
) -> None:
    def broken_destroy(record: Record) -> None:
        raise CreateError("delete: network: ifconfig: interface epair0b does not exist")

    warnings: list[str] = []
    runtime = Runtime(str(tmp_path / "root"), backend=backend, warn=warnings.append)
    runtime.create("c8", str(bundle))
    backend.destroy = broken_destroy  # type: ignore[method-assign]
    with pytest.raises(CreateError, match="epair0b"):
        runtime.delete("c8")
    assert runtime.store.exists("c8")  # kept, so the user can retry or force
    runtime.delete("c8", force=True)
    assert not runtime.store.exists("c8")
    assert "forgetting container c8 anyway" in warnings[0]
