"""``linux.sysctl`` checks against namespaces, writing under /proc/sys, and oomScoreAdj."""

from __future__ import annotations

import os

import pytest

from corral.errors import ConfigError, CreateError
from corral.linux.sysctl import (
    apply_oom_score_adj,
    apply_sysctl,
    check_sysctl,
    is_runtime_namespace,
    sysctl_namespace,
    sysctl_parts,
)
from corral.spec.model import Spec, parse_config


def spec(sysctl: dict[str, str], namespaces: list[dict[str, str]], **top: object) -> Spec:
    return parse_config(
        {
            "ociVersion": "1.2.0",
            **top,
            "linux": {"namespaces": namespaces, "sysctl": sysctl},
        }
    )


def never_host(ns_type: str, path: str) -> bool:
    return False


def always_host(ns_type: str, path: str) -> bool:
    return True


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        ("net.ipv4.ip_forward", ["net", "ipv4", "ip_forward"]),
        ("kernel.shmmax", ["kernel", "shmmax"]),
        ("net/ipv4/conf/eth0.100/forwarding", ["net", "ipv4", "conf", "eth0.100", "forwarding"]),
    ],
)
def test_parts(key: str, parts: list[str]) -> None:
    assert sysctl_parts(key) == parts


@pytest.mark.parametrize(
    "key", ["", "net..ipv4", "net.", ".net", "net/../../etc/passwd", "/net/ipv4", "net/./x", "a\0b"]
)
def test_parts_refuse_keys_that_leave_proc_sys(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        sysctl_parts(key)
    assert info.value.path == f"linux.sysctl.{key}"
    assert "is not a sysctl name" in info.value.message


@pytest.mark.parametrize(
    ("key", "namespace"),
    [
        ("net.ipv4.ip_forward", "network"),
        ("net.core.somaxconn", "network"),
        ("kernel.msgmax", "ipc"),
        ("kernel.msgmnb", "ipc"),
        ("kernel.msgmni", "ipc"),
        ("kernel.sem", "ipc"),
        ("kernel.shmall", "ipc"),
        ("kernel.shmmax", "ipc"),
        ("kernel.shm_rmid_forced", "ipc"),
        ("fs.mqueue.queues_max", "ipc"),
        ("kernel.hostname", "uts"),
        ("kernel.domainname", "uts"),
        ("kernel.pid_max", None),
        ("kernel.semaphores", None),
        ("vm.swappiness", None),
        ("fs.file-max", None),
        ("fs.mqueue", None),
        ("kernel.shmmax.x", None),
    ],
)
def test_namespace_of_a_sysctl(key: str, namespace: str | None) -> None:
    assert sysctl_namespace(sysctl_parts(key)) == namespace


def test_namespaced_sysctls_with_their_namespaces_pass() -> None:
    check_sysctl(
        spec(
            {
                "net.ipv4.ip_forward": "1",
                "kernel.shmmax": "1000",
                "fs.mqueue.msg_max": "20",
                "kernel.hostname": "box",
            },
            [{"type": "network"}, {"type": "ipc"}, {"type": "uts"}],
            hostname="box",
        ),
        runtime_namespace=always_host,  # not asked: no namespace is joined by path
    )


def test_host_wide_sysctl_is_refused_with_an_explanation() -> None:
    with pytest.raises(ConfigError) as info:
        check_sysctl(spec({"vm.swappiness": "10"}, [{"type": "network"}]))
    assert info.value.path == "linux.sysctl.vm.swappiness"
    assert info.value.message.startswith("not a namespaced sysctl: setting it would change")
    assert "net.*" in info.value.message


@pytest.mark.parametrize(
    ("key", "ns_type"),
    [("net.core.somaxconn", "network"), ("kernel.msgmax", "ipc"), ("kernel.hostname", "uts")],
)
def test_namespaced_sysctl_without_its_namespace_is_refused(key: str, ns_type: str) -> None:
    others = [{"type": t} for t in ("network", "ipc", "uts", "mount") if t != ns_type]
    with pytest.raises(ConfigError) as info:
        check_sysctl(spec({key: "1"}, others))
    assert info.value.path == f"linux.sysctl.{key}"
    assert f"needs a {ns_type} namespace of the container's own" in info.value.message


def test_no_linux_section_means_nothing_to_check() -> None:
    check_sysctl(parse_config({"ociVersion": "1.2.0"}))


def test_joined_namespace_is_allowed_unless_it_is_the_runtimes() -> None:
    joined = spec({"net.core.somaxconn": "1"}, [{"type": "network", "path": "/run/netns/a"}])
    asked: list[tuple[str, str]] = []

    def recording(ns_type: str, path: str) -> bool:
        asked.append((ns_type, path))
        return False

    check_sysctl(joined, runtime_namespace=recording)
    assert asked == [("network", "/run/netns/a")]
    with pytest.raises(ConfigError, match="needs a network namespace"):
        check_sysctl(joined, runtime_namespace=always_host)


def test_is_runtime_namespace_compares_inodes() -> None:
    assert is_runtime_namespace("network", "/proc/self/ns/net")
    assert is_runtime_namespace("ipc", f"/proc/{os.getpid()}/ns/ipc")
    assert not is_runtime_namespace("network", "/proc/self/ns/ipc")
    assert not is_runtime_namespace("uts", "/nonexistent/ns")


def test_hostname_sysctl_must_agree_with_the_hostname_field() -> None:
    with pytest.raises(ConfigError) as info:
        check_sysctl(spec({"kernel.hostname": "a"}, [{"type": "uts"}], hostname="b"))
    assert info.value.path == "linux.sysctl.kernel.hostname"
    assert info.value.message == '"a" conflicts with hostname "b"'
    with pytest.raises(ConfigError, match="conflicts with domainname"):
        check_sysctl(spec({"kernel.domainname": "x"}, [{"type": "uts"}], domainname="y"))


def test_apply_writes_each_value_under_proc_sys(tmp_path: os.PathLike[str]) -> None:
    root = os.fspath(tmp_path)
    os.makedirs(f"{root}/net/ipv4/conf/eth0.100")
    os.makedirs(f"{root}/kernel")
    for name in ("net/ipv4/ip_forward", "net/ipv4/conf/eth0.100/forwarding", "kernel/shmmax"):
        with open(f"{root}/{name}", "w"):
            pass
    apply_sysctl(
        {
            "net.ipv4.ip_forward": "1",
            "net/ipv4/conf/eth0.100/forwarding": "0",
            "kernel.shmmax": "68719476736",
        },
        proc_sys=root,
    )
    with open(f"{root}/net/ipv4/ip_forward") as f:
        assert f.read() == "1"
    with open(f"{root}/net/ipv4/conf/eth0.100/forwarding") as f:
        assert f.read() == "0"
    with open(f"{root}/kernel/shmmax") as f:
        assert f.read() == "68719476736"


def test_apply_failure_names_the_key(tmp_path: os.PathLike[str]) -> None:
    root = os.fspath(tmp_path)
    with pytest.raises(CreateError) as info:
        apply_sysctl({"net.core.somaxconn": "256"}, proc_sys=root)
    assert str(info.value) == (
        f'linux.sysctl.net.core.somaxconn: writing "256" to {root}/net/core/somaxconn: '
        "No such file or directory"
    )


def test_apply_refuses_a_key_that_climbs_out(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(ConfigError):
        apply_sysctl({"net/../../x": "1"}, proc_sys=os.fspath(tmp_path))


def test_oom_score_adj(tmp_path: os.PathLike[str]) -> None:
    target = os.path.join(tmp_path, "oom_score_adj")
    with open(target, "w") as f:
        f.write("0")
    apply_oom_score_adj(None, path=target)
    with open(target) as f:
        assert f.read() == "0"  # unset: left alone, as the spec requires
    apply_oom_score_adj(-500, path=target)
    with open(target) as f:
        assert f.read() == "-500"


def test_oom_score_adj_failure_names_the_field(tmp_path: os.PathLike[str]) -> None:
    target = os.path.join(tmp_path, "missing", "oom_score_adj")
    with pytest.raises(CreateError) as info:
        apply_oom_score_adj(100, path=target)
    assert str(info.value) == (
        f"process.oomScoreAdj 100: writing {target}: No such file or directory"
    )
