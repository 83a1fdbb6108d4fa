"""The systemd cgroup driver against a real D-Bus daemon and a stand-in systemd.

``dbus-daemon`` (Debian's ``dbus``) runs on a private socket; a small
``org.freedesktop.systemd1`` written with ``python3-dbus`` (an independent D-Bus
implementation, run by /usr/bin/python3) plays systemd's part: StartTransientUnit
makes the scope's cgroup in the hierarchies systemd manages (the cgroup2 tree,
``name=systemd`` and, with accounting on, memory, cpu, blkio and pids) and moves the
PIDs there, then emits JobRemoved; StopUnit kills what is in the scope and removes its
cgroups. It writes every call it gets to a JSON log, so a test can check what corral
asked for, and the cgroup files show what corral wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid

import pytest

from conftest import requires_root, wait_until
from corral.errors import CreateError
from corral.linux import dbus
from corral.linux.cgroups import systemd
from corral.linux.cgroups.hierarchy import detect
from corral.linux.cgroups.manager import manager_from_record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any

SYSTEM_PYTHON = "/usr/bin/python3"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
"""

FAKE_SYSTEMD = r"""
import json, os, signal, sys, time
import dbus, dbus.service, dbus.mainloop.glib
from gi.repository import GLib

MANAGER = "org.freedesktop.systemd1.Manager"
LOG = os.environ["FAKE_SYSTEMD_LOG"]
HIERARCHIES = json.loads(os.environ["FAKE_SYSTEMD_HIERARCHIES"])


def plain(value):
    if isinstance(value, (dbus.Array, list)):
        return [plain(v) for v in value]
    if isinstance(value, (dbus.Struct, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dbus.Boolean):
        return bool(value)
    if isinstance(value, (dbus.String, dbus.ObjectPath)):
        return str(value)
    if isinstance(value, dbus.Byte):
        return int(value)
    return int(value)


def log(entry):
    with open(LOG, "a") as f:
        f.write(json.dumps(entry) + "\n")


def slice_path(name):
    stem = name[: -len(".slice")]
    if stem == "-":
        return ""
    path, prefix = "", ""
    for part in stem.split("-"):
        path += "/" + prefix + part + ".slice"
        prefix += part + "-"
    return path


class Error(dbus.DBusException):
    def __init__(self, name, text):
        super().__init__(text)
        self._dbus_error_name = name


class Systemd(dbus.service.Object):
    def __init__(self, bus):
        super().__init__(bus, "/org/freedesktop/systemd1")
        self.units = {}
        self.job = 0

    def finish(self, unit, result):
        self.job += 1
        job = "/org/freedesktop/systemd1/job/%d" % self.job
        # systemd reports the job's end after the reply that named the job.
        GLib.idle_add(lambda: self.JobRemoved(dbus.UInt32(self.job), dbus.ObjectPath(job),
                                              unit, result) and False)
        return dbus.ObjectPath(job)

    @dbus.service.method(MANAGER, in_signature="ssa(sv)a(sa(sv))", out_signature="o")
    def StartTransientUnit(self, name, mode, props, aux):
        props = {str(k): plain(v) for k, v in props}
        log({"call": "StartTransientUnit", "unit": str(name), "mode": str(mode),
             "props": props})
        if name in self.units:
            raise Error("org.freedesktop.systemd1.UnitExists", "Unit %s already exists." % name)
        if "fail" in name:
            return self.finish(name, "failed")
        path = slice_path(props["Slice"]) + "/" + name
        dirs = [root + path for root in HIERARCHIES]
        for d in dirs:
            os.makedirs(d, exist_ok=True)
            for pid in props.get("PIDs", []):
                with open(d + "/cgroup.procs", "w") as f:
                    f.write(str(pid))
        self.units[str(name)] = dirs
        return self.finish(name, "done")

    @dbus.service.method(MANAGER, in_signature="ss", out_signature="o")
    def StopUnit(self, name, mode):
        log({"call": "StopUnit", "unit": str(name), "mode": str(mode)})
        dirs = self.units.pop(str(name), None)
        if dirs is None:
            raise Error("org.freedesktop.systemd1.NoSuchUnit", "Unit %s not loaded." % name)
        for _ in range(200):
            pids = [int(p) for d in dirs for p in open(d + "/cgroup.procs").read().split()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        for d in dirs:
            for top, subdirs, _ in sorted(os.walk(d, topdown=False), reverse=True):
                os.rmdir(top)
        return self.finish(name, "done")

    @dbus.service.method(MANAGER, in_signature="sba(sv)", out_signature="")
    def SetUnitProperties(self, name, runtime, props):
        log({"call": "SetUnitProperties", "unit": str(name), "runtime": bool(runtime),
             "props": {str(k): plain(v) for k, v in props}})

    @dbus.service.method(MANAGER, in_signature="s", out_signature="")
    def ResetFailedUnit(self, name):
        log({"call": "ResetFailedUnit", "unit": str(name)})

    @dbus.service.method(dbus.PROPERTIES_IFACE, in_signature="ss", out_signature="v")
    def Get(self, interface, name):
        if interface == MANAGER and name == "Version":
            return dbus.String("252.22-1~deb12u1", variant_level=1)
        raise Error("org.freedesktop.DBus.Error.UnknownProperty", name)

    @dbus.service.signal(MANAGER, signature="uoss")
    def JobRemoved(self, id, job, unit, result):
        pass


dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
bus = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
name = dbus.service.BusName("org.freedesktop.systemd1", bus)
service = Systemd(bus)
GLib.MainLoop().run()
"""


def _fake_systemd_missing() -> str | None:
    if shutil.which("dbus-daemon") is None:
        return "dbus-daemon is not installed (Debian package dbus)"
    probe = [SYSTEM_PYTHON, "-c", "import dbus.service, dbus.mainloop.glib, gi.repository.GLib"]
    if not os.path.exists(SYSTEM_PYTHON):
        return "/usr/bin/python3 is missing (the stand-in systemd runs on it)"
    if subprocess.run(probe, check=False, capture_output=True).returncode:
        return "/usr/bin/python3 lacks python3-dbus / python3-gi (the stand-in systemd)"
    return None


requires_fake_systemd = pytest.mark.skipif(
    _fake_systemd_missing() is not None, reason=_fake_systemd_missing() or ""
)


class FakeSystemd:
    """A private bus with the stand-in systemd on it."""

    def __init__(self, tmp: Path, hierarchies: list[str]) -> None:
        socket_path = tmp / "bus.sock"
        config = tmp / "bus.conf"
        config.write_text(BUS_CONFIG.format(socket=socket_path))
        self.address = f"unix:path={socket_path}"
        self.log_path = tmp / "systemd.log"
        self.log_path.write_text("")
        self.daemon = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile"],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_until(socket_path.exists, 5), "dbus-daemon did not listen"
        script = tmp / "fake_systemd.py"
        script.write_text(FAKE_SYSTEMD)
        env = dict(
            os.environ,
            DBUS_SYSTEM_BUS_ADDRESS=self.address,
            FAKE_SYSTEMD_LOG=str(self.log_path),
            FAKE_SYSTEMD_HIERARCHIES=json.dumps(hierarchies),
        )
        self.service = subprocess.Popen([SYSTEM_PYTHON, str(script)], env=env,
                                        stdin=subprocess.DEVNULL)  # fmt: skip
        assert wait_until(self._owned, 10), "the stand-in systemd did not claim its name"

    def _owned(self) -> bool:
        with dbus.Connection.open(self.address) as conn:
            (owned,) = conn.call("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                 "org.freedesktop.DBus", "NameHasOwner", "s",
                                 ["org.freedesktop.systemd1"])  # fmt: skip
        return bool(owned)

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def stop(self) -> None:
        for process in (self.service, self.daemon):
            process.terminate()
            process.wait(5)


def _systemd_hierarchies() -> list[str]:
    """Where systemd puts a scope with every accounting switch on, on this host."""
    hierarchy = detect()
    roots = [hierarchy.unified_root] if hierarchy.unified_root else []
    for key in ("name=systemd", "memory", "cpu", "blkio", "pids"):
        root = hierarchy.v1_roots.get(key)
        if root and root not in roots:
            roots.append(root)
    return roots


@pytest.fixture
def fake_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(tmp_path, _systemd_hierarchies())
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", fake.address)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def test_slice() -> Iterator[str]:
    """A slice of our own (``corraltest-<hex>.slice``, nested under ``corraltest.slice``),
    removed from every hierarchy afterwards."""
    name = f"corraltest-{uuid.uuid4().hex[:8]}.slice"
    yield name
    hierarchy = detect()
    roots = set(hierarchy.v1_roots.values()) | {hierarchy.unified_root or ""}
    for root in filter(None, roots):
        for path in (f"{root}/corraltest.slice/{name}", f"{root}/corraltest.slice"):
            for top, _dirs, _files in sorted(os.walk(path, topdown=False), reverse=True):
                try:
                    os.rmdir(top)
                except OSError:
                    pass


def _own_cgroups(pid: int) -> dict[str, str]:
    from corral.linux.cgroups.placement import read_own_cgroups

    return read_own_cgroups(pid)


def _read(path: str) -> str:
    with open(path) as file:
        return file.read().strip()


@requires_root
@requires_fake_systemd
def test_scope_limits_update_record_and_stop(fake_systemd: FakeSystemd, test_slice: str) -> None:
    hierarchy = detect()
    if hierarchy.mode == "v2":
        pytest.skip("this test reads v1 limit files (the host is pure cgroup v2)")
    cid = f"sd{uuid.uuid4().hex[:8]}"
    manager = systemd.systemd_manager_for(hierarchy, f"{test_slice}:corral:{cid}", cid)
    unit = f"corral-{cid}.scope"
    base = "/corraltest.slice/" + test_slice + "/" + unit
    assert manager.unit == unit
    assert manager.relative_path == base

    sleeper = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
    try:
        manager.create()
        resources = {
            "memory": {"limit": 64 << 20},
            "pids": {"limit": 20},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        }
        manager.apply(resources)
        manager.add_process(sleeper.pid)

        (start,) = [c for c in fake_systemd.calls() if c["call"] == "StartTransientUnit"]
        assert start["unit"] == unit
        props = start["props"]
        assert props["Slice"] == test_slice
        assert props["PIDs"] == [sleeper.pid]
        assert props["Delegate"] is True
        assert props["DefaultDependencies"] is False
        assert props["MemoryAccounting"] is True
        assert props["MemoryLimit"] == 64 << 20
        assert props["TasksMax"] == 20
        assert props["CPUShares"] == 512
        assert props["CPUQuotaPerSecUSec"] == 500000  # 50 ms per 100 ms
        assert props["CPUQuotaPeriodUSec"] == 100000  # the stand-in says v252

        # The process is in the scope in every hierarchy: those the stand-in systemd
        # moved it into and those corral did.
        own = _own_cgroups(sleeper.pid)
        for key in ("memory", "pids", "cpu", "freezer", "devices", "name=systemd", ""):
            if key in own:
                assert own[key] == base, key
        memory = hierarchy.v1_roots["memory"] + base
        assert int(_read(f"{memory}/memory.limit_in_bytes")) == 64 << 20
        assert _read(hierarchy.v1_roots["pids"] + base + "/pids.max") == "20"
        assert _read(hierarchy.v1_roots["cpu"] + base + "/cpu.shares") == "512"
        assert _read(hierarchy.v1_roots["cpu"] + base + "/cpu.cfs_quota_us") == "50000"

        # What the state record keeps rebuilds a working manager.
        again = manager_from_record(json.loads(json.dumps(manager.to_record())))
        assert isinstance(again, systemd.SystemdManager)
        assert again.pids() == [sleeper.pid]
        again.apply({"memory": {"limit": 32 << 20}}, update=True)
        (change,) = [c for c in fake_systemd.calls() if c["call"] == "SetUnitProperties"]
        assert change["unit"] == unit
        assert change["runtime"] is True
        assert change["props"]["MemoryLimit"] == 32 << 20
        assert int(_read(f"{memory}/memory.limit_in_bytes")) == 32 << 20

        again.kill_all(signal.SIGKILL)
        sleeper.wait(5)
        again.destroy()
        assert [c["unit"] for c in fake_systemd.calls() if c["call"] == "StopUnit"] == [unit]
        for path, _mount in manager.fs.directories():
            assert not os.path.exists(path), path
    finally:
        sleeper.kill()
        sleeper.wait()


@requires_root
@requires_fake_systemd
def test_failed_job_is_an_error_and_leaves_nothing(
    fake_systemd: FakeSystemd, test_slice: str
) -> None:
    hierarchy = detect()
    cid = f"fail{uuid.uuid4().hex[:8]}"
    manager = systemd.systemd_manager_for(hierarchy, f"{test_slice}:corral:{cid}", cid)
    sleeper = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
    try:
        manager.create()
        with pytest.raises(CreateError, match=r"could not start corral-fail\w+\.scope: job failed"):
            manager.add_process(sleeper.pid)
        assert [c["call"] for c in fake_systemd.calls()] == [
            "StartTransientUnit",
            "ResetFailedUnit",
        ]
        manager.destroy()  # what create's clean-up does: nothing was started, nothing stops
        assert "StopUnit" not in [c["call"] for c in fake_systemd.calls()]
        for path, _mount in manager.fs.directories():
            assert not os.path.exists(path), path
    finally:
        sleeper.kill()
        sleeper.wait()


@requires_root
@requires_fake_systemd
def test_a_unit_name_taken_is_refused(fake_systemd: FakeSystemd, test_slice: str) -> None:
    hierarchy = detect()
    cid = f"dup{uuid.uuid4().hex[:8]}"
    value = f"{test_slice}:corral:{cid}"
    first = systemd.systemd_manager_for(hierarchy, value, cid)
    second = systemd.systemd_manager_for(hierarchy, value, cid)
    sleepers = [subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL) for _ in range(2)]
    try:
        first.create()
        first.add_process(sleepers[0].pid)
        with pytest.raises(CreateError, match="already exists"):
            second.add_process(sleepers[1].pid)
        first.kill_all(signal.SIGKILL)
        sleepers[0].wait(5)
        first.destroy()
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()


# -- without systemd ----------------------------------------------------------------------

NOT_RUNNING = (
    "corral: --systemd-cgroup: systemd is not running on this host (no /run/systemd/system)"
)


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="systemd runs on this host")
def test_require_systemd_without_systemd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DBUS_SYSTEM_BUS_ADDRESS", raising=False)
    with pytest.raises(systemd.SystemdNotRunningError) as info:
        systemd.require_systemd()
    assert "corral: " + str(info.value) == NOT_RUNNING
    # A bus address where nothing listens is no proof either.
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/none")
    with pytest.raises(systemd.SystemdNotRunningError, match=r"no org\.freedesktop\.systemd1"):
        systemd.require_systemd()


@requires_root
@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="systemd runs on this host")
def test_cli_without_systemd_is_one_line(corral: Any, make_bundle: Any, container_id: str) -> None:
    bundle = make_bundle(["true"])
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
    result = corral("--systemd-cgroup", "run", "--bundle", str(bundle), container_id,
                    check=False, env=env, stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.splitlines() == [NOT_RUNNING]
    assert not os.path.exists(os.path.join(corral.root, container_id))


@requires_root
@requires_fake_systemd
def test_cli_run_in_a_systemd_scope(
    fake_systemd: FakeSystemd, test_slice: str, corral: Any, make_bundle: Any, container_id: str
) -> None:
    hierarchy = detect()
    unit = f"corral-{container_id}.scope"
    base = f"/corraltest.slice/{test_slice}/{unit}"

    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["cgroupsPath"] = f"{test_slice}:corral:{container_id}"
        spec["linux"]["resources"] = {"memory": {"limit": 48 << 20}, "pids": {"limit": 30}}
        # Without a cgroup namespace the container sees its cgroup paths as the host does.
        namespaces = spec["linux"]["namespaces"]
        spec["linux"]["namespaces"] = [ns for ns in namespaces if ns["type"] != "cgroup"]

    bundle = make_bundle(["cat", "/proc/self/cgroup"], edit=edit)
    result = corral("--systemd-cgroup", "run", "--bundle", str(bundle), container_id,
                    stdin=subprocess.DEVNULL)  # fmt: skip
    # The container's view of /proc/self/cgroup (no cgroup namespace) names the scope.
    seen = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in result.stdout.splitlines()}
    for key in ("memory", "pids", "name=systemd"):
        if key in hierarchy.v1_roots:
            assert seen[key] == base, (key, result.stdout)
    if hierarchy.unified_root:
        assert seen[""] == base, result.stdout
    calls = fake_systemd.calls()
    (start,) = [c for c in calls if c["call"] == "StartTransientUnit"]
    assert start["unit"] == unit
    assert start["props"]["TasksMax"] == 30
    assert start["props"]["MemoryMax" if hierarchy.mode == "v2" else "MemoryLimit"] == 48 << 20
    assert start["props"]["DevicePolicy"] == "strict"
    assert ["/dev/char/1:3", "rwm"] in start["props"]["DeviceAllow"]  # /dev/null
    # run deletes the container: the unit is stopped and no directory is left.
    assert [c["unit"] for c in calls if c["call"] == "StopUnit"] == [unit]
    roots = [*hierarchy.v1_roots.values(), hierarchy.unified_root or ""]
    for root in filter(None, roots):
        assert not os.path.exists(root + base), root
