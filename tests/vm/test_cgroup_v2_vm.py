"""corral's cgroup tests on a kernel with cgroup v2 only: a qemu VM (tools/vmtest).

This host mounts cgroup v1 controllers, so the cgroup v2 code paths are proven by booting
Debian's stock kernel with ``cgroup_no_v1=all`` under qemu (docs/vm-testing.md) and running
pytest there on the files in ``GUEST_FILES``. One VM run serves every test below (a module
fixture): the guest's pytest must pass, its junit report must show the tests really ran
(at least one passed in each file, and the tests named in ``MUST_PASS`` passed rather
than skipped), and the facts the guest's init recorded must show cgroup2 alone at
/sys/fs/cgroup. The module skips, with the runner's reason, when qemu or the kernel package
cannot be had; ``CORRAL_VMTEST_REQUIRE=1`` (set in CI) turns that skip into a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
RUNNER = CHECKOUT / "tools" / "vmtest" / "run.py"
SMOKE = "tests/vm/guest_smoke.py"
GUEST_FILES = (
    SMOKE,
    "tests/integration/test_cgroups_root.py",
    "tests/integration/test_update_root.py",
    "tests/integration/test_devices_root.py",
    "tests/integration/test_events_root.py",
    # dbus-daemon and /usr/bin/python3 with python3-dbus/python3-gi come from the host's
    # /usr, which the guest shares; without them its fake-systemd tests skip in both.
    "tests/integration/test_systemd_driver.py",
)
# Tests that skip for a reason the VM is there to remove: they must pass in the guest.
MUST_PASS = (
    "tests.vm.guest_smoke::test_only_cgroup2_is_mounted",
    "tests.vm.guest_smoke::test_corral_runs_busybox_true",
    # these need /dev/fuse (the guest loads the fuse module): the eBPF device program end
    # to end through the CLI
    "tests.integration.test_devices_root::test_cli_container_cannot_use_a_node_it_makes",
    "tests.integration.test_devices_root::test_cli_config_rules_allow_and_deny",
    "tests.integration.test_devices_root::"
    "test_cli_update_changes_the_device_rules_of_a_live_container",
)
# The whole run takes 3-4 minutes under TCG on a quiet 2-core host, up to 2.5 times that
# under load (docs/vm-testing.md); the limit only stops a hung guest.
VM_TIMEOUT = 900
UNAVAILABLE = 126
GUEST_RUN_DIR = "/mnt/vmtest"  # where the guest's init mounts the run directory


class VmRun:
    __slots__ = ("files", "output", "rc", "run_dir")

    def __init__(self, rc: int, output: str, run_dir: Path, files: list[str]) -> None:
        self.rc = rc
        self.output = output
        self.run_dir = run_dir
        self.files = files

    def fact(self, name: str) -> str:
        path = self.run_dir / name
        assert path.exists(), f"the guest did not record {name}:\n{self.output}"
        return path.read_text()

    def outcomes(self) -> dict[str, str]:
        """``file::test`` → passed/failed/error/skipped, from the guest's junit report."""
        report = self.run_dir / "junit.xml"
        assert report.exists(), f"the guest wrote no junit report:\n{self.output}"
        found: dict[str, str] = {}
        for case in ElementTree.parse(report).iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
            found[name] = {"failure": "failed"}.get(kinds[0], kinds[0]) if kinds else "passed"
        return found


@pytest.fixture(scope="module")
def vm_run(tmp_path_factory: pytest.TempPathFactory) -> VmRun:
    if os.environ.get("CORRAL_VMTEST_GUEST") == "1":
        pytest.skip("already inside the test VM")
    run_dir = tmp_path_factory.mktemp("vmtest")
    files = list(GUEST_FILES)
    command = [
        sys.executable,
        str(RUNNER),
        "--timeout",
        str(VM_TIMEOUT),
        "--run-dir",
        str(run_dir),
        "--",
        "-q",
        "-rfEs",
        # hypothesis's plugin costs ~3 s of imports under TCG; no guest test uses it.
        "-p",
        "no:hypothesispytest",
        f"--junitxml={GUEST_RUN_DIR}/junit.xml",
        *files,
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=VM_TIMEOUT + 120,  # the first run also downloads and unpacks the kernel
        stdin=subprocess.DEVNULL,
        check=False,
    )
    output = f"{result.stdout}\n{result.stderr}"
    if result.returncode == UNAVAILABLE:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "?"
        if os.environ.get("CORRAL_VMTEST_REQUIRE") == "1":
            pytest.fail(f"CORRAL_VMTEST_REQUIRE=1 but the VM cannot run: {reason}")
        pytest.skip(reason)
    return VmRun(result.returncode, output, run_dir, files)


def test_guest_pytest_passed(vm_run: VmRun) -> None:
    assert vm_run.rc == 0, f"guest pytest exited {vm_run.rc}:\n{vm_run.output}"


def test_guest_had_only_cgroup2_mounted(vm_run: VmRun) -> None:
    mounts = [line.split() for line in vm_run.fact("mounts").splitlines()]
    cgroup_mounts = [(fields[1], fields[2]) for fields in mounts if fields[2].startswith("cgroup")]
    assert cgroup_mounts == [("/sys/fs/cgroup", "cgroup2")]


def test_guest_had_no_v1_hierarchy(vm_run: VmRun) -> None:
    rows = [line.split() for line in vm_run.fact("cgroups").splitlines() if line[:1] != "#"]
    assert rows
    assert [row[0] for row in rows if row[1] != "0"] == []
    assert {"memory", "pids"} <= set(vm_run.fact("cgroup.controllers").split())


def test_guest_really_ran_the_tests(vm_run: VmRun) -> None:
    outcomes = vm_run.outcomes()
    bad = {name: kind for name, kind in outcomes.items() if kind in ("failed", "error")}
    assert bad == {}, vm_run.output
    for test in MUST_PASS:
        assert outcomes.get(test) == "passed", f"{test}: {outcomes.get(test)}\n{vm_run.output}"
    for file in vm_run.files:
        module = file.removesuffix(".py").replace("/", ".")
        # junit's classname is the module, or module.Class for a test in a class
        ran = [
            kind
            for name, kind in outcomes.items()
            if name.startswith((module + "::", module + "."))
        ]
        assert "passed" in ran, f"no test of {file} passed in the guest:\n{vm_run.output}"
