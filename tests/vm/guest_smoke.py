"""Smoke tests that run INSIDE the cgroup-v2-only VM (tools/vmtest), not on the host.

The file name does not match ``test_*.py``, so the host's pytest never collects it;
tests/vm/test_cgroup_v2_vm.py names it explicitly on the guest's pytest command line. Each
test skips outside the VM (no ``CORRAL_VMTEST_GUEST`` in the environment, which the guest's
run.sh sets), since the host's hybrid cgroups would make them fail for the wrong reason.
"""

from __future__ import annotations

import os

import pytest

from conftest import create_detached, requires_root, wait_for_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from conftest import Corral

in_guest = pytest.mark.skipif(
    os.environ.get("CORRAL_VMTEST_GUEST") != "1", reason="runs only inside the tools/vmtest VM"
)
pytestmark = in_guest

CGROUP_ROOT = "/sys/fs/cgroup"


def mounts() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every line of /proc/mounts."""
    with open("/proc/mounts") as file:
        return [(line.split()[1], line.split()[2]) for line in file]


def test_only_cgroup2_is_mounted() -> None:
    cgroup_mounts = [(point, kind) for point, kind in mounts() if kind.startswith("cgroup")]
    assert cgroup_mounts == [(CGROUP_ROOT, "cgroup2")]


def test_no_v1_hierarchy_exists() -> None:
    # /proc/cgroups: subsys_name hierarchy num_cgroups enabled; hierarchy 0 = not bound
    # to any v1 hierarchy (cgroup_no_v1=all).
    with open("/proc/cgroups") as file:
        rows = [line.split() for line in file if not line.startswith("#")]
    assert rows, "no controllers listed"
    assert {row[0]: row[1] for row in rows if row[1] != "0"} == {}


def test_memory_and_pids_controllers_available() -> None:
    with open(os.path.join(CGROUP_ROOT, "cgroup.controllers")) as file:
        controllers = file.read().split()
    assert "memory" in controllers
    assert "pids" in controllers


def test_runner_is_in_a_leaf_cgroup() -> None:
    # Like a systemd host: the runner sits in a leaf, not in the root cgroup.
    with open("/proc/self/cgroup") as file:
        lines = file.read().splitlines()
    assert lines == ["0::/vmtest.scope"]


@requires_root
def test_corral_runs_busybox_true(corral: Corral, make_bundle: Callable[..., Path]) -> None:
    import subprocess
    import uuid

    bundle = make_bundle(["true"])
    result = corral(
        "run", "--bundle", str(bundle), f"t-{uuid.uuid4().hex[:8]}", stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0


@requires_root
def test_memory_and_pids_limits_reach_the_container_cgroup(
    corral: Corral, make_bundle: Callable[..., Path], container_id: str
) -> None:
    limit = 64 * 1024 * 1024

    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["resources"] = {"memory": {"limit": limit}, "pids": {"limit": 32}}

    bundle = make_bundle(["sleep", "60"], edit=edit)
    try:
        create_detached(corral, bundle, container_id)
    except AssertionError as error:
        if "not supported by corral" in str(error):
            pytest.skip(f"corral has no cgroup support yet: {error}")
        raise
    wait_for_status(corral, container_id, "created")
    pid = corral.state(container_id)["pid"]
    with open(f"/proc/{pid}/cgroup") as file:
        (line,) = file.read().splitlines()
    path = CGROUP_ROOT + line.split("::", 1)[1]
    with open(os.path.join(path, "memory.max")) as file:
        assert int(file.read()) == limit
    with open(os.path.join(path, "pids.max")) as file:
        assert int(file.read()) == 32
    corral("delete", "--force", container_id)
    assert not os.path.exists(path), f"{path} left behind after delete"
