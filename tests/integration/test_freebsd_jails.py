"""Real jails, through the ``corral`` command line: run only on FreeBSD, as root.

They need a FreeBSD root filesystem: set ``CORRAL_FREEBSD_ROOTFS`` to an unpacked
``base.txz`` (``corral demo download`` then ``tar -xf base.txz -C DIR``). See
docs/freebsd.md. Everywhere else they skip, saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from conftest import create_detached, wait_for_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from conftest import Corral


def _why_not() -> str | None:
    if not sys.platform.startswith("freebsd"):
        return "jails need a FreeBSD host"
    if os.geteuid() != 0:
        return "creating jails needs root"
    rootfs = os.environ.get("CORRAL_FREEBSD_ROOTFS", "")
    if not os.path.isfile(os.path.join(rootfs, "bin", "sh")):
        return "set CORRAL_FREEBSD_ROOTFS to an unpacked FreeBSD base.txz"
    return None


pytestmark = [
    pytest.mark.freebsd,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]


def make_jail_bundle(tmp_path: Path, args: list[str], edit: Any = None) -> Path:
    from corral.spec.default import default_freebsd_spec

    bundle = tmp_path / f"jail-{uuid.uuid4().hex[:8]}"
    bundle.mkdir()
    spec = default_freebsd_spec(args)
    spec["root"]["path"] = os.environ["CORRAL_FREEBSD_ROOTFS"]
    if edit is not None:
        edit(spec)
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def output_of(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True)


def jail_exists(name: str) -> bool:
    return subprocess.run(["jls", "-j", name], check=False, capture_output=True).returncode == 0


def mounted_under(path: str) -> list[str]:
    out = subprocess.run(["mount", "-p"], check=False, capture_output=True, text=True).stdout
    return [line.split()[1] for line in out.splitlines() if line.split()[1].startswith(path)]


def test_run_reports_the_exit_status(corral: Corral, tmp_path: Path, container_id: str) -> None:
    bundle = make_jail_bundle(tmp_path, ["/bin/sh", "-c", "exit 5"])
    assert corral("run", "--bundle", str(bundle), container_id, check=False).returncode == 5
    assert not jail_exists(container_id)


def test_lifecycle_creates_and_removes_the_jail(
    corral: Corral, tmp_path: Path, container_id: str
) -> None:
    bundle = make_jail_bundle(tmp_path, ["/bin/sleep", "100"])
    create_detached(corral, bundle, container_id)
    assert jail_exists(container_id)
    assert corral.state(container_id)["status"] == "created"
    corral("start", container_id)
    assert corral.state(container_id)["status"] == "running"
    corral("kill", container_id, "KILL")
    wait_for_status(corral, container_id, "stopped")
    corral("delete", container_id)
    assert not jail_exists(container_id)
    assert mounted_under(os.environ["CORRAL_FREEBSD_ROOTFS"] + "/dev") == []


def test_inside_the_jail(corral: Corral, tmp_path: Path, container_id: str) -> None:
    script = "hostname; sysctl -n security.jail.jailed; ls /dev/null; id -u"
    bundle = make_jail_bundle(tmp_path, ["/bin/sh", "-c", script])
    out = corral("run", "--bundle", str(bundle), container_id).stdout.split()
    assert out == ["corral", "1", "/dev/null", "0"]


def test_nullfs_bind_and_user(corral: Corral, tmp_path: Path, container_id: str) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from the host\n")

    def edit(spec: dict[str, Any]) -> None:
        spec["mounts"].append(
            {
                "destination": "/mnt/shared",
                "type": "nullfs",
                "source": str(shared),
                "options": ["ro"],
            }
        )
        spec["process"]["user"] = {"uid": 65534, "gid": 65534}

    bundle = make_jail_bundle(
        tmp_path, ["/bin/sh", "-c", "cat /mnt/shared/in.txt; id -u; touch /mnt/shared/x"], edit
    )
    result = corral("run", "--bundle", str(bundle), container_id, check=False)
    assert result.stdout.splitlines()[:2] == ["from the host", "65534"]
    assert result.returncode != 0  # read-only
    assert not (shared / "x").exists()


def test_rctl_rule_is_added_and_removed(corral: Corral, tmp_path: Path, container_id: str) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["annotations"] = {"org.corral.freebsd.rctl.maxproc": "20"}

    bundle = make_jail_bundle(tmp_path, ["/bin/sleep", "100"], edit)
    create_detached(corral, bundle, container_id)
    rules = subprocess.run(["rctl"], check=False, capture_output=True, text=True).stdout
    assert f"jail:{container_id}:maxproc:deny=20" in rules
    corral("delete", "--force", container_id)
    rules = subprocess.run(["rctl"], check=False, capture_output=True, text=True).stdout
    assert f"jail:{container_id}:" not in rules


def test_vnet_interface_moves_in_and_back(
    corral: Corral, tmp_path: Path, container_id: str
) -> None:
    created = subprocess.run(
        ["ifconfig", "epair", "create"], check=False, capture_output=True, text=True
    )
    if created.returncode != 0:
        pytest.skip(f"no epair(4): {created.stderr.strip()}")
    a_side = created.stdout.strip()
    b_side = a_side[:-1] + "b"
    try:

        def edit(spec: dict[str, Any]) -> None:
            spec["freebsd"]["jail"] = {"host": "new", "vnet": "new", "vnetInterfaces": [b_side]}

        bundle = make_jail_bundle(tmp_path, ["/sbin/ifconfig", "-l"], edit)
        out = corral("run", "--bundle", str(bundle), container_id).stdout
        assert b_side in out.split()
        host = subprocess.run(
            ["ifconfig", "-l"], check=False, capture_output=True, text=True
        ).stdout
        assert b_side in host.split()  # back on the host after delete
    finally:
        subprocess.run(["ifconfig", a_side, "destroy"], check=False, capture_output=True)
