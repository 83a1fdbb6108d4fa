"""corral.linux.cgroups.hierarchy: the cgroup layout from mountinfo lines."""

from __future__ import annotations

import pytest

from corral.errors import CorralError
from corral.linux.cgroups.hierarchy import Hierarchy, detect, parse_mountinfo

HYBRID = """\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""

PURE_V2 = """\
25 21 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw
"""

# A legacy (v1) host with co-mounted controllers, a release agent and a bind mount of
# a subtree (as inside a container without a cgroup namespace).
V1 = """\
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw shared:11 - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 /docker/abc /sys/fs/cgroup/memory rw shared:12 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
33 25 0:29 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,release_agent=/x,name=systemd
34 25 0:27 / /mnt/memory\\040again rw - cgroup cgroup rw,memory
"""


def test_hybrid_has_v1_controllers_and_the_unified_tree() -> None:
    found = parse_mountinfo(HYBRID)
    assert found.mode == "hybrid"
    assert found.unified_root == "/sys/fs/cgroup/unified"
    assert found.v1_roots == {
        "cpu": "/sys/fs/cgroup/cpu",
        "cpuacct": "/sys/fs/cgroup/cpuacct",
        "memory": "/sys/fs/cgroup/memory",
        "freezer": "/sys/fs/cgroup/freezer",
        "name=systemd": "/sys/fs/cgroup/systemd",
    }
    assert found.mount_root("memory") == "/"


def test_pure_v2() -> None:
    found = parse_mountinfo(PURE_V2)
    assert (found.mode, found.unified_root, found.v1_roots) == ("v2", "/sys/fs/cgroup", {})


def test_v2_with_only_a_named_v1_hierarchy_is_v2() -> None:
    text = PURE_V2 + "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
    found = parse_mountinfo(text)
    assert found.mode == "v2"
    assert found.v1_roots == {}


def test_v1_co_mounted_controllers_map_to_one_mount_point() -> None:
    found = parse_mountinfo(V1)
    assert found.mode == "v1"
    assert found.unified_root is None
    assert found.v1_roots["cpu"] == found.v1_roots["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert found.v1_roots["net_prio"] == "/sys/fs/cgroup/net_cls,net_prio"
    assert found.v1_roots["name=systemd"] == "/sys/fs/cgroup/systemd"
    assert "release_agent=/x" not in found.v1_roots and "rw" not in found.v1_roots


def test_first_mount_of_a_hierarchy_wins_and_keeps_its_root() -> None:
    found = parse_mountinfo(V1)
    assert found.v1_roots["memory"] == "/sys/fs/cgroup/memory"
    assert found.mount_root("memory") == "/docker/abc"


def test_preferred_unified_mount_point() -> None:
    text = (
        "50 1 0:40 / /tmp/elsewhere rw - cgroup2 cgroup2 rw\n"
        "51 1 0:40 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    )
    assert parse_mountinfo(text).unified_root == "/sys/fs/cgroup"


def test_no_cgroup_mount_is_an_error() -> None:
    with pytest.raises(CorralError, match="no cgroup filesystem is mounted"):
        parse_mountinfo("22 28 0:21 / /sys rw - sysfs sysfs rw\n")


def test_record_round_trip() -> None:
    found = parse_mountinfo(V1)
    again = Hierarchy.from_record(found.to_record())
    assert (again.mode, again.unified_root, again.v1_roots, again.mount_roots) == (
        found.mode,
        found.unified_root,
        found.v1_roots,
        found.mount_roots,
    )


def test_detect_reads_a_file(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "mountinfo"
    path.write_text(PURE_V2)
    assert detect(str(path)).mode == "v2"


def test_detect_this_host() -> None:
    import os

    if not os.path.exists("/proc/self/mountinfo"):
        pytest.skip("no /proc/self/mountinfo")
    try:
        found = detect()
    except CorralError:
        pytest.skip("no cgroup filesystem mounted here")
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        assert found.mode == "v2"
    elif found.unified_root is not None:
        assert found.mode == "hybrid" and found.v1_roots
    else:
        assert found.mode == "v1"
