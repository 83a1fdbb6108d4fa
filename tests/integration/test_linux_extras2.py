"""tmpcopyup, linux.netDevices and linux.intelRdt, checked through the CLI as root."""

from __future__ import annotations

import os
import uuid

import pytest

from conftest import create_detached, requires_root, wait_until

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import Any

    from conftest import Corral

    RunInside = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = requires_root


def test_tmpcopyup_copies_etc_into_a_tmpfs(run_inside: RunInside, busybox_rootfs: Path) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["mounts"].append(
            {"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
             "options": ["tmpcopyup", "nosuid", "nodev"]}
        )  # fmt: skip

    script = (
        "ls /etc; grep ' /etc ' /proc/self/mounts | cut -d' ' -f3; "
        "stat -c %a /etc/passwd; echo x > /etc/corral-copyup-probe && echo wrote"
    )
    lines = run_inside(script, edit=edit).stdout.split()
    assert "passwd" in lines
    assert "tmpfs" in lines
    assert oct((busybox_rootfs / "etc" / "passwd").stat().st_mode & 0o7777)[2:] in lines
    assert "wrote" in lines
    assert not (busybox_rootfs / "etc" / "corral-copyup-probe").exists()


def test_tmpcopyup_read_only(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["mounts"].append(
            {"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
             "options": ["tmpcopyup", "ro"]}
        )  # fmt: skip

    out = run_inside("cat /etc/passwd >/dev/null && touch /etc/x || echo refused", edit=edit)
    assert "refused" in out.stdout


@pytest.fixture
def host_link() -> Iterator[str]:
    """A host interface to move: a dummy, or one end of a veth pair (no dummy module)."""
    import shutil
    import subprocess

    if shutil.which("ip") is None:
        pytest.skip("iproute2's ip is not installed")
    name = f"crl{uuid.uuid4().hex[:8]}"
    made = subprocess.run(
        ["ip", "link", "add", name, "type", "dummy"], check=False, capture_output=True
    )
    peer = ""
    if made.returncode != 0:
        peer = name + "p"
        made = subprocess.run(
            ["ip", "link", "add", name, "type", "veth", "peer", "name", peer],
            check=False,
            capture_output=True,
        )
    if made.returncode != 0:
        pytest.skip(f"cannot create a test interface: {made.stderr.decode().strip()}")
    subprocess.run(["ip", "addr", "add", "10.251.7.1/24", "dev", name], check=True)
    try:
        yield name
    finally:
        # A virtual device is destroyed with the container's namespace; a leftover is not.
        for leftover in (name, peer):
            if leftover and os.path.exists(f"/sys/class/net/{leftover}"):
                subprocess.run(["ip", "link", "del", leftover], check=False, capture_output=True)


def test_net_device_is_moved_renamed_and_up(
    corral: Corral, make_bundle: Callable[..., Path], container_id: str, host_link: str
) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["netDevices"] = {host_link: {"name": "ctr0"}}

    bundle = make_bundle(["sh", "-c", "ls /sys/class/net; ip addr show ctr0; sleep 30"], edit=edit)
    out = create_detached(corral, bundle, container_id)
    try:
        assert not os.path.exists(f"/sys/class/net/{host_link}")  # moved during create
        corral("start", container_id)
        wait_until(lambda: "inet" in out.read_text())
        text = out.read_text()
        assert "ctr0" in text.split()
        assert "10.251.7.1/24" in text  # the permanent address came along
        assert "UP" in text
    finally:
        corral("delete", "--force", container_id, check=False)


def test_missing_net_device_is_refused(corral: Corral, make_bundle: Callable[..., Path]) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["netDevices"] = {"corral-none0": {}}

    result = corral("run", "--bundle", str(make_bundle(["true"], edit=edit)), "t-nd", check=False)
    assert result.returncode != 0
    assert "linux.netDevices.corral-none0" in result.stderr


def test_intel_rdt_without_resctrl_is_refused(
    corral: Corral, make_bundle: Callable[..., Path]
) -> None:
    from corral.linux.intelrdt import find_resctrl

    if find_resctrl():
        pytest.skip("resctrl is mounted here: the refusal cannot be seen")

    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["intelRdt"] = {"closID": "corral-test", "schemata": ["L3:0=f"]}

    result = corral("run", "--bundle", str(make_bundle(["true"], edit=edit)), "t-rdt", check=False)
    assert result.returncode != 0
    assert "linux.intelRdt" in result.stderr
    assert "resctrl" in result.stderr
