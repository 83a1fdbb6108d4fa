"""Device access control on this kernel, as root: the eBPF program on cgroup v2, the
v1 devices controller, and both deciding alike.

A prober child is moved into a fresh cgroup and opens device nodes on request, so the
tests see what the kernel decides for a process in the cgroup. The v1 tests also use
the kernel as the reference for corral's model of the controller: random rule lists
written one by one to devices.allow/deny must leave the devices.list corral predicts.
"""

from __future__ import annotations

import errno
import os
import random
import time
import uuid

import pytest

from conftest import requires_root
from corral.linux.cgroups.devices import (
    STANDARD_RULES,
    DeviceRule,
    apply_v2_devices,
    device_state,
    plan_v1_devices,
)
from corral.linux.syscalls import Syscalls

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import Any

    from conftest import Corral

DEVICES_V1 = "/sys/fs/cgroup/devices"


def cgroup2_mount() -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    return None


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    return None


pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


class Prober:
    """A child that opens the device paths it is sent and answers "ok" or an errno name."""

    def __init__(self) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child
            try:
                os.close(self._to_child)
                os.close(self._from_child)
                with os.fdopen(to_child_r) as requests:
                    for line in requests:
                        path, _, mode = line.strip().partition(" ")
                        flags = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}[mode]
                        try:
                            os.close(os.open(path, flags))
                            answer = "ok"
                        except OSError as error:
                            answer = errno.errorcode.get(error.errno or 0, "?")
                        os.write(from_child_w, (answer + "\n").encode())
            finally:
                os._exit(0)
        os.close(to_child_r)
        os.close(from_child_w)
        self._answers = os.fdopen(self._from_child)

    def open(self, path: str, mode: str = "r") -> str:
        os.write(self._to_child, f"{path} {mode}\n".encode())
        return self._answers.readline().strip()

    def stop(self) -> None:
        os.close(self._to_child)
        self._answers.close()
        os.waitpid(self.pid, 0)


def remove_cgroup(path: str) -> None:
    for _ in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as error:
            if error.errno != errno.EBUSY:
                raise
            time.sleep(0.02)  # the prober is gone but the kernel may not have noticed
    os.rmdir(path)


@pytest.fixture
def v2_cgroup() -> Iterator[str]:
    mount = cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 mount on this host")
    path = os.path.join(mount, f"corral-test-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        remove_cgroup(path)


@pytest.fixture
def v1_cgroup() -> Iterator[str]:
    if not os.path.isdir(DEVICES_V1):
        pytest.skip("no v1 devices controller on this host")
    path = os.path.join(DEVICES_V1, f"corral-test-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        for child in os.listdir(path):
            if os.path.isdir(os.path.join(path, child)):
                remove_cgroup(os.path.join(path, child))
        remove_cgroup(path)


@pytest.fixture
def prober() -> Iterator[Prober]:
    child = Prober()
    try:
        yield child
    finally:
        child.stop()


def join(cgroup: str, pid: int) -> None:
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
        f.write(str(pid))


def attached_ids(cgroup: str) -> list[int]:
    from corral.linux.cgroups.devices import _query

    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return _query(Syscalls(), fd)[0]
    finally:
        os.close(fd)


NULL_ONLY = [DeviceRule(False, "a"), DeviceRule(True, "c", 1, 3, "rwm")]


# -- cgroup v2 ---------------------------------------------------------------------------------


def test_v2_program_allows_and_denies_then_an_update_swaps_it(
    v2_cgroup: str, prober: Prober
) -> None:
    apply_v2_devices(v2_cgroup, NULL_ONLY)
    first = attached_ids(v2_cgroup)
    assert len(first) == 1
    join(v2_cgroup, prober.pid)
    assert prober.open("/dev/null", "rw") == "ok"
    assert prober.open("/dev/zero") == "EPERM"

    apply_v2_devices(v2_cgroup, [*NULL_ONLY, DeviceRule(True, "c", 1, 5, "r")])
    second = attached_ids(v2_cgroup)
    assert len(second) == 1 and second != first  # replaced, not added
    assert prober.open("/dev/zero") == "ok"
    assert prober.open("/dev/zero", "w") == "EPERM"  # only "r" was allowed
    assert prober.open("/dev/null", "rw") == "ok"


def test_v2_standard_rules_and_partial_denies(v2_cgroup: str, prober: Prober) -> None:
    rules = [DeviceRule(True, "a"), DeviceRule(False, "c", 1, 7, "w"), *STANDARD_RULES[:2]]
    apply_v2_devices(v2_cgroup, rules)
    join(v2_cgroup, prober.pid)
    assert prober.open("/dev/full") == "ok"
    # default allow: a deny exception sharing one requested access denies the open
    assert prober.open("/dev/full", "rw") == "EPERM"
    assert prober.open("/dev/zero", "rw") == "ok"
    apply_v2_devices(v2_cgroup, [DeviceRule(False, "a"), *STANDARD_RULES])
    assert prober.open("/dev/full", "rw") == "ok"
    assert prober.open("/dev/urandom") == "ok"
    if os.path.exists("/dev/kmsg"):
        assert prober.open("/dev/kmsg") == "EPERM"


def test_v2_apply_takes_milliseconds(v2_cgroup: str) -> None:
    rules = [DeviceRule(False, "a"), *STANDARD_RULES]
    apply_v2_devices(v2_cgroup, rules)
    start = time.perf_counter()
    for _ in range(20):
        apply_v2_devices(v2_cgroup, rules)
    per_call = (time.perf_counter() - start) / 20
    assert len(attached_ids(v2_cgroup)) == 1
    print(f"apply_v2_devices: {per_call * 1000:.2f} ms")
    assert per_call < 0.05


# -- cgroup v1 ---------------------------------------------------------------------------------


def write_plan(cgroup: str, plan: list[tuple[str, str]]) -> None:
    for file, line in plan:
        with open(os.path.join(cgroup, file), "w") as f:
            f.write(line)


def devices_list(cgroup: str) -> set[str]:
    with open(os.path.join(cgroup, "devices.list")) as f:
        return {line.strip() for line in f if line.strip()}


def expected_list(rules: list[DeviceRule]) -> set[str]:
    state = device_state(rules)
    if state.default_allow:
        return {"a *:* rwm"}
    return {entry.cgroup_string() for entry in state.entries()}


def test_v1_plan_reads_back_and_decides(v1_cgroup: str, prober: Prober) -> None:
    rules = [DeviceRule(False, "a"), *STANDARD_RULES]
    write_plan(v1_cgroup, plan_v1_devices(rules))
    assert devices_list(v1_cgroup) == expected_list(rules)
    assert "c 1:3 rwm" in devices_list(v1_cgroup)
    join(v1_cgroup, prober.pid)
    assert prober.open("/dev/null", "rw") == "ok"
    if os.path.exists("/dev/kmsg"):
        assert prober.open("/dev/kmsg") == "EPERM"

    # an update from the current devices.list: only differences are written
    with open(os.path.join(v1_cgroup, "devices.list")) as f:
        current = f.read()
    new_rules = [DeviceRule(False, "a"), DeviceRule(True, "c", 1, 5, "r"), *STANDARD_RULES[:2]]
    plan = plan_v1_devices(new_rules, current)
    assert all(not line.startswith("a") for _, line in plan)
    write_plan(v1_cgroup, plan)
    assert devices_list(v1_cgroup) == expected_list(new_rules)
    assert prober.open("/dev/null") == "EPERM"
    assert prober.open("/dev/zero") == "ok"
    assert prober.open("/dev/zero", "w") == "EPERM"


def test_v1_update_works_in_a_cgroup_with_children(v1_cgroup: str) -> None:
    rules = [DeviceRule(False, "a"), *STANDARD_RULES]
    write_plan(v1_cgroup, plan_v1_devices(rules))
    os.mkdir(os.path.join(v1_cgroup, "child"))
    # the kernel refuses a reset here, which is why updates use the current list
    with pytest.raises(OSError) as caught:
        write_plan(v1_cgroup, [("devices.deny", "a *:* rwm")])
    assert caught.value.errno == errno.EINVAL
    with open(os.path.join(v1_cgroup, "devices.list")) as f:
        current = f.read()
    new_rules = [*rules, DeviceRule(True, "b", 8, -1, "r")]
    write_plan(v1_cgroup, plan_v1_devices(new_rules, current))
    assert devices_list(v1_cgroup) == expected_list(new_rules)


def random_rule(rng: random.Random) -> DeviceRule:
    kind = rng.choice("bcc")
    major = rng.choice((-1, -1, 1, 5, 136))
    minor = rng.choice((-1, -1, 3, 7))
    access = "".join(x for x in "rwm" if rng.random() < 0.6) or "rwm"
    return DeviceRule(rng.random() < 0.5, kind, major, minor, access, "linux.resources.x")


def test_v1_kernel_agrees_with_corrals_model_on_random_rules(v1_cgroup: str) -> None:
    """Raw rules written one by one leave the devices.list corral's state predicts,
    and plan_v1_devices reaches the same list in one go."""
    rng = random.Random(5)
    compared = 0
    for _ in range(120):
        rules = [DeviceRule(rng.random() < 0.25, "a")]
        rules += [random_rule(rng) for _ in range(rng.randint(1, 7))]
        write_plan(v1_cgroup, [("devices.allow", "a")])  # back to the initial state
        for rule in rules:
            file = "devices.allow" if rule.allow else "devices.deny"
            line = "a" if rule.type == "a" else rule.cgroup_string()
            write_plan(v1_cgroup, [(file, line)])
        kernel = devices_list(v1_cgroup)
        try:
            expected = expected_list(rules)
        except Exception as error:  # a hole in a wildcard: corral refuses, v1 ignores
            assert "wildcard" in str(error)
            continue
        assert kernel == expected, rules
        write_plan(v1_cgroup, [("devices.allow", "a")])
        write_plan(v1_cgroup, plan_v1_devices(rules))
        assert devices_list(v1_cgroup) == expected, rules
        compared += 1
    assert compared > 60


SPLIT_GRANTS = [DeviceRule(False, "a"), DeviceRule(True, "c", 1, 3, "r"),
                DeviceRule(True, "c", 1, -1, "w")]  # fmt: skip
PARTIAL_DENY = [DeviceRule(True, "a"), DeviceRule(False, "c", 1, 7, "w")]


@pytest.mark.parametrize("hierarchy", ["v1", "v2"])
def test_both_hierarchies_decide_combined_requests_alike(
    hierarchy: str, request: pytest.FixtureRequest
) -> None:
    """One exception must grant every requested access (default deny); one shared
    access with an exception denies (default allow). The kernel's v1 code decides so,
    and corral's program must too."""
    cgroup = request.getfixturevalue(f"{hierarchy}_cgroup")
    prober = request.getfixturevalue("prober")  # after the cgroup: it leaves first
    join(cgroup, prober.pid)
    for rules, path, answers in (
        (SPLIT_GRANTS, "/dev/null", {"r": "ok", "w": "ok", "rw": "EPERM"}),
        (PARTIAL_DENY, "/dev/full", {"r": "ok", "w": "EPERM", "rw": "EPERM"}),
    ):
        if hierarchy == "v1":
            write_plan(cgroup, plan_v1_devices(rules))
        else:
            apply_v2_devices(cgroup, rules)
        for mode, answer in answers.items():
            assert prober.open(path, mode) == answer, (rules, mode)


# -- through the CLI ---------------------------------------------------------------------------

# mknod is allowed (the standard "c *:* m"), opening the node it made is not; /dev/null
# and /dev/zero are. The node is /dev/fuse's 10:229, which any process may open when the
# cgroup lets it (/dev/mem would need CAP_SYS_RAWIO, hiding the cgroup's decision).
# /dev is the container's tmpfs, without nodev.
PROBE = (
    "mknod /dev/m c 10 229 && echo MKNOD-OK; "
    "(: </dev/m) 2>/dev/null && echo OPEN-OK || echo OPEN-DENIED; "
    "echo x >/dev/null && echo NULL-OK; "
    "head -c1 /dev/zero >/dev/null && echo ZERO-OK"
)
needs_fuse = pytest.mark.skipif(
    not os.path.exists("/dev/fuse"), reason="the host kernel has no fuse device (10:229)"
)


def with_mknod(rules: list[dict[str, object]] | None) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        for name in ("bounding", "effective", "permitted"):
            spec["process"]["capabilities"][name].append("CAP_MKNOD")
        if rules is not None:
            spec["linux"]["resources"] = {"devices": rules}

    return edit


@requires_root
@needs_fuse
def test_cli_container_cannot_use_a_node_it_makes(
    run_inside: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    out = run_inside(PROBE, edit=with_mknod(None)).stdout.split()
    assert out == ["MKNOD-OK", "OPEN-DENIED", "NULL-OK", "ZERO-OK"]
    # what runc spec, containerd and Docker write keeps the standard devices
    deny_all = [{"allow": False, "access": "rwm"}]
    out = run_inside(PROBE, edit=with_mknod(deny_all)).stdout.split()
    assert out == ["MKNOD-OK", "OPEN-DENIED", "NULL-OK", "ZERO-OK"]


@requires_root
@needs_fuse
def test_cli_config_rules_allow_and_deny(
    run_inside: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    rules: list[dict[str, object]] = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "r"},
    ]
    out = run_inside(PROBE, edit=with_mknod(rules)).stdout.split()
    assert out == ["MKNOD-OK", "OPEN-OK", "NULL-OK", "ZERO-OK"]
    # a deny of "m" is undone by the standard "c *:* m", which comes last as in runc:
    # what a config can deny is the use of a node, not making it
    no_mknod: list[dict[str, object]] = [{"allow": False, "type": "c", "access": "m"}]
    result = run_inside("mknod /dev/m c 10 229 && echo MKNOD-OK", edit=with_mknod(no_mknod))
    assert result.stdout.split() == ["MKNOD-OK"]


@requires_root
def test_cli_hole_in_a_wildcard_is_a_config_error(
    corral: Corral, make_bundle: Callable[..., Path], container_id: str
) -> None:
    rules: list[dict[str, object]] = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 4, "access": "rw"},
        {"allow": False, "type": "c", "major": 4, "minor": 1, "access": "w"},
    ]
    bundle = make_bundle(["true"], edit=with_mknod(rules))
    result = corral("create", "--bundle", str(bundle), container_id, check=False)
    assert result.returncode == 1
    assert "linux.resources.devices[2]: cannot deny c 4:1 w" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(corral.root, container_id))


@requires_root
@needs_fuse
def test_cli_update_changes_the_device_rules_of_a_live_container(
    corral: Corral, make_bundle: Callable[..., Path], container_id: str
) -> None:
    import json
    import subprocess

    from conftest import create_detached, wait_for_status

    # The config of runc spec / containerd: deny everything (the standard devices stay).
    bundle = make_bundle(["sleep", "1000"], edit=with_mknod([{"allow": False, "access": "rwm"}]))
    create_detached(corral, bundle, container_id)
    corral("start", container_id)
    wait_for_status(corral, container_id, "running")

    def probe() -> list[str]:
        script = (
            "[ -e /dev/m ] || mknod /dev/m c 10 229; "
            "(: </dev/m) 2>/dev/null && echo OPEN-OK || echo OPEN-DENIED; "
            "echo x >/dev/null && echo NULL-OK"
        )
        result = corral("exec", container_id, "sh", "-c", script, stdin=subprocess.DEVNULL)
        return result.stdout.split()

    def update(devices: list[dict[str, object]]) -> None:
        corral("update", "--resources", "-", container_id, input=json.dumps({"devices": devices}))

    assert probe() == ["OPEN-DENIED", "NULL-OK"]
    rules: list[dict[str, object]] = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
    ]
    update(rules)
    assert probe() == ["OPEN-OK", "NULL-OK"]
    update(rules)  # containerd sends the same rules with every update: fine, no change
    assert probe() == ["OPEN-OK", "NULL-OK"]
    corral("update", "--pids-limit", "50", container_id)  # other fields keep the rules
    assert probe() == ["OPEN-OK", "NULL-OK"]
    update(rules[:1])
    assert probe() == ["OPEN-DENIED", "NULL-OK"]
    bad = corral(
        "update", "--resources", "-", container_id, check=False,
        input=json.dumps({"devices": [{"allow": True, "type": "x"}]}),
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.strip() == 'corral: stdin: devices[0].type: must be a, b or c, not "x"'
