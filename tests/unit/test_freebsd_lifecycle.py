"""The FreeBSD backend driven through the lifecycle core, on any host.

The jail system calls are a recording fake (``freebsd_fake``), the ``ifconfig`` and
``devfs`` commands are recorded, and ``jail_attach`` does nothing, so the "jailed"
program is an ordinary process of this host: what is real is the lifecycle (fork of
the entrypoint, the handshake, the exec fifo, start, kill, delete) and the order in
which the backend creates and undoes the jail, its mounts, rules and network.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
from freebsd_fake import RecordingFreeBSDSyscalls

from corral.core.runtime import Runtime
from corral.errors import CreateError
from corral.freebsd.backend import FreeBSDBackend

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the fake jail runs the program on this host"
)


FakeSyscalls = RecordingFreeBSDSyscalls  # its calls in the forked entrypoint stay there


def make_bundle(tmp_path: Path, script: str, edit: Any = None) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "rootfs" / "dev").mkdir(parents=True)
    config: dict[str, Any] = {
        "ociVersion": "1.3.0",
        "root": {"path": "rootfs"},
        "hostname": "jailed",
        "process": {
            "args": ["/bin/sh", "-c", script],
            "env": ["PATH=/usr/bin:/bin"],
            "cwd": "/",
            # The current user: the fake jail cannot make this process anyone else.
            "user": {"uid": os.getuid(), "gid": os.getgid(), "additionalGids": os.getgroups()},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512}],
        },
        "mounts": [
            {"destination": "/dev", "type": "devfs", "source": "devfs", "options": ["ruleset=4"]}
        ],
        "annotations": {"org.corral.freebsd.rctl.maxproc": "100"},
        "freebsd": {"jail": {"host": "new", "ip4": "inherit"}},
    }
    if edit is not None:
        edit(config)
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def wait_for(path: Path) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.01)
    return False


def test_create_start_kill_delete(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    hook_out = tmp_path / "create-runtime.json"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\ncat > "{hook_out}"\n')
    hook.chmod(0o755)

    def edit(config: dict[str, Any]) -> None:
        config["hooks"] = {"createRuntime": [{"path": str(hook)}]}

    bundle = make_bundle(tmp_path, f'echo started > "{marker}"; exec sleep 30', edit)
    sc = FakeSyscalls(first_jid=7)
    commands: list[list[str]] = []
    backend = FreeBSDBackend(sc=sc, run=commands.append, jail_processes=lambda jid: [])
    runtime = Runtime(str(tmp_path / "root"), backend=backend)
    rootfs = str(bundle / "rootfs")

    state = runtime.create("web", str(bundle))
    assert state["status"] == "created"
    assert sc.methods()[:3] == ["nmount", "jail_set", "rctl_add_rule"]
    nmount = sc.calls[0]
    assert nmount[1] == "devfs"
    assert nmount[2] == f"{rootfs}/dev"
    assert ("ruleset", "4") in nmount[3]
    params = dict(sc.calls[1][1])
    assert params["name"] == "web"
    assert params["path"] == rootfs
    assert params["host.hostname"] == "jailed"
    assert "persist" in params
    assert sc.calls[2] == ("rctl_add_rule", "jail:web:maxproc:deny=100")
    hook_state = json.loads(hook_out.read_text())
    assert (hook_state["id"], hook_state["status"]) == ("web", "creating")
    record = runtime.store.load("web")
    assert record.extra["jid"] == 7
    assert record.extra["mounts"] == [f"{rootfs}/dev"]
    assert not marker.exists()  # nothing of the user's runs before start

    runtime.start("web")
    assert wait_for(marker)
    assert runtime.state("web")["status"] == "running"

    runtime.kill("web", 9)
    for _ in range(500):
        if runtime.state("web")["status"] == "stopped":
            break
        time.sleep(0.01)
    runtime.delete("web")
    tail = sc.methods()[3:]
    assert tail == ["rctl_remove_rule", "jail_remove", "unmount"]
    assert sc.calls[-1][1] == f"{rootfs}/dev"
    assert commands == []  # no vnet, no interface aliases
    assert runtime.list() == []


def test_failed_jail_set_unmounts_and_leaves_no_state(tmp_path: Path) -> None:
    import errno

    bundle = make_bundle(tmp_path, "true")
    sc = FakeSyscalls(fail={("jail_set", "*"): errno.EEXIST})
    runtime = Runtime(str(tmp_path / "root"), backend=FreeBSDBackend(sc=sc, run=lambda a: None))
    with pytest.raises(OSError, match="jail_set"):
        runtime.create("dup", str(bundle))
    assert sc.methods() == ["nmount", "jail_set", "unmount"]
    assert os.listdir(tmp_path / "root") == []


def test_failed_entrypoint_undoes_everything(tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["process"]["args"] = ["no-such-program"]

    bundle = make_bundle(tmp_path, "", edit)
    sc = FakeSyscalls(first_jid=3)
    runtime = Runtime(str(tmp_path / "root"), backend=FreeBSDBackend(sc=sc, run=lambda a: None))
    with pytest.raises(CreateError, match='exec: "no-such-program": executable file not found'):
        runtime.create("broken", str(bundle))
    assert sc.methods() == [
        "nmount",
        "jail_set",
        "rctl_add_rule",
        "rctl_remove_rule",
        "jail_remove",
        "unmount",
    ]
    assert os.listdir(tmp_path / "root") == []


def test_vnet_interfaces_move_in_and_back(tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["freebsd"]["jail"] = {"vnet": "new", "vnetInterfaces": ["epair0b"]}
        config["annotations"] = {}

    bundle = make_bundle(tmp_path, "exec sleep 30", edit)
    sc = FakeSyscalls()
    commands: list[list[str]] = []
    backend = FreeBSDBackend(sc=sc, run=commands.append, jail_processes=lambda jid: [])
    runtime = Runtime(str(tmp_path / "root"), backend=backend)
    runtime.create("net", str(bundle))
    assert [c[1:] for c in commands] == [["epair0b", "vnet", "net"]]
    runtime.delete("net")
    assert [c[1:] for c in commands][-1] == ["epair0b", "-vnet", "net"]


def test_the_default_freebsd_spec_passes_every_check(tmp_path: Path) -> None:
    from corral.backend import CreateRequest
    from corral.spec.default import default_freebsd_spec
    from corral.spec.model import parse_config

    (tmp_path / "rootfs").mkdir()
    spec = parse_config(default_freebsd_spec(["/bin/sh"]))
    request = CreateRequest(
        container_id="web",
        bundle=str(tmp_path),
        rootfs=str(tmp_path / "rootfs"),
        spec=spec,
        state_dir=str(tmp_path / "state"),
        fifo_name="exec.fifo",
    )
    FreeBSDBackend(sc=FakeSyscalls()).check(request)
    from corral.freebsd.params import jail_params

    params = dict(jail_params(spec, "web", str(tmp_path / "rootfs")))
    assert params["host.hostname"] == "corral"
    assert params["ip4"] == "inherit" or params["ip4"] == 2


def test_linux_only_fields_are_refused_on_freebsd(tmp_path: Path) -> None:
    from corral.backend import CreateRequest
    from corral.errors import ConfigError
    from corral.spec.default import default_freebsd_spec
    from corral.spec.model import parse_config

    document = default_freebsd_spec(["/bin/sh"])
    document["process"]["capabilities"] = {"bounding": ["CAP_KILL"]}
    request = CreateRequest(
        container_id="web",
        bundle=str(tmp_path),
        rootfs=str(tmp_path),
        spec=parse_config(document),
        state_dir=str(tmp_path / "state"),
        fifo_name="exec.fifo",
    )
    with pytest.raises(ConfigError, match=r"process\.capabilities: a Linux process setting"):
        FreeBSDBackend(sc=FakeSyscalls()).check(request)


def test_readonly_root_is_a_read_only_nullfs_under_the_other_mounts(tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["root"]["readonly"] = True
        config["annotations"] = {}
        config["mounts"].append(
            {"destination": "/var/run/x", "type": "tmpfs", "source": "tmpfs", "options": []}
        )

    bundle = make_bundle(tmp_path, "exec sleep 30", edit)
    rootfs = str(bundle / "rootfs")
    sc = FakeSyscalls()
    backend = FreeBSDBackend(sc=sc, run=lambda a: None, jail_processes=lambda jid: [])
    runtime = Runtime(str(tmp_path / "root"), backend=backend)
    runtime.create("ro", str(bundle))
    mounts = [call for call in sc.calls if call[0] == "nmount"]
    assert mounts[0][1:3] == ("nullfs", rootfs)
    assert ("ro", None) in mounts[0][3]
    assert [m[2] for m in mounts[1:]] == [f"{rootfs}/dev", f"{rootfs}/var/run/x"]
    assert os.path.isdir(f"{rootfs}/var/run/x")  # made before the root turned read-only
    runtime.delete("ro")
    unmounts = [call[1] for call in sc.calls if call[0] == "unmount"]
    assert unmounts == [f"{rootfs}/var/run/x", f"{rootfs}/dev", rootfs]
