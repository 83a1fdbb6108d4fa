"""corral.linux.cgroups.placement: cgroupsPath to directories, runc 1.1's rules."""

from __future__ import annotations

import pytest

from corral.errors import ConfigError, CorralError
from corral.linux.cgroups.placement import (
    clean_path,
    directory,
    parse_own_cgroups,
    parse_systemd_path,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "c1"),  # the default: the container id, relative
        ("/a/b", "/a/b"),
        ("/a//b/./", "/a/b"),
        ("a/b", "a/b"),
        ("./a", "a"),
        ("/", "/"),
    ],
)
def test_clean_path(value: str, expected: str) -> None:
    assert clean_path(value, "c1") == expected


@pytest.mark.parametrize("value", ["../x", "/a/../../b", "a/.."])
def test_dot_dot_is_refused(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        clean_path(value, "c1")
    assert info.value.path == "linux.cgroupsPath"
    assert '".."' in str(info.value)


def test_a_relative_path_naming_nothing_is_refused() -> None:
    with pytest.raises(ConfigError, match="names no cgroup"):
        clean_path("./", "c1")


def test_parse_own_cgroups() -> None:
    text = (
        "9:name=systemd:/\n4:memory:/process_api/e0a9\n2:cpu,cpuacct:/user.slice\n0::/init.scope\n"
    )
    assert parse_own_cgroups(text) == {
        "name=systemd": "/",
        "memory": "/process_api/e0a9",
        "cpu": "/user.slice",
        "cpuacct": "/user.slice",
        "": "/init.scope",
    }


def test_absolute_is_below_the_mount_point() -> None:
    assert directory("/a/b", "/sys/fs/cgroup/memory", "/", "/x") == "/sys/fs/cgroup/memory/a/b"
    # even from a mounted subtree: "relative to the cgroups mount point" (config-linux.md)
    assert directory("/a", "/sys/fs/cgroup/memory", "/docker/1", None) == (
        "/sys/fs/cgroup/memory/a"
    )


def test_relative_is_below_the_own_cgroup_on_v1_and_hybrid() -> None:
    own = "/process_api/e0a9"
    assert directory("c1", "/sys/fs/cgroup/memory", "/", own) == (
        "/sys/fs/cgroup/memory/process_api/e0a9/c1"
    )
    assert directory("c1", "/sys/fs/cgroup/cpu", "/", "/") == "/sys/fs/cgroup/cpu/c1"


def test_relative_is_below_the_own_cgroups_parent_on_pure_v2() -> None:
    assert directory("c1", "/sys/fs/cgroup", "/", "/user.slice/u.scope", pure_v2=True) == (
        "/sys/fs/cgroup/user.slice/c1"
    )
    assert directory("a/c1", "/sys/fs/cgroup", "/", "/", pure_v2=True) == "/sys/fs/cgroup/a/c1"


def test_relative_through_a_mounted_subtree() -> None:
    assert directory("c1", "/sys/fs/cgroup/memory", "/docker/1", "/docker/1/sub") == (
        "/sys/fs/cgroup/memory/sub/c1"
    )
    with pytest.raises(CorralError, match="outside the mounted subtree"):
        directory("c1", "/sys/fs/cgroup/memory", "/docker/1", "/other")


def test_relative_without_an_own_cgroup_is_an_error() -> None:
    with pytest.raises(CorralError, match="has no base"):
        directory("c1", "/sys/fs/cgroup/memory", "/", None)


def test_systemd_path() -> None:
    assert parse_systemd_path("machine.slice:docker:abc", "c1") == (
        "machine.slice",
        "docker",
        "abc",
    )
    assert parse_systemd_path("", "c1") == ("system.slice", "corral", "c1")
    assert parse_systemd_path(":p:n", "c1") == ("system.slice", "p", "n")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("/a/b", '"slice:prefix:name"'),
        ("a:b", '"slice:prefix:name"'),
        ("a:b:c:d", '"slice:prefix:name"'),
        ("system:p:n", "not a slice unit name"),
        ("a/b.slice:p:n", "not a slice unit name"),
        ("system.slice:p:", "name part is empty"),
        ("system.slice:p:a/b", 'must not contain "/"'),
    ],
)
def test_systemd_path_errors(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_systemd_path(value, "c1")
    assert info.value.path == "linux.cgroupsPath"
    assert fragment in str(info.value)
