"""linux.memoryPolicy: the kernel's rules as config errors, the call, and failure lines."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from corral.errors import ConfigError, CreateError
from corral.linux.mempolicy import (
    FLAGS,
    MODES,
    apply_memory_policy,
    check_memory_policy,
    explain_failure,
    memory_policy,
)
from corral.spec.model import Spec, parse_config


def make_spec(policy: Any = None) -> Spec:
    linux: dict[str, Any] = {"namespaces": [{"type": "mount"}]}
    if policy is not None:
        linux["memoryPolicy"] = policy
    return parse_config({"ociVersion": "1.2.0", "linux": linux})


class RecordingMempolicy:
    def __init__(self, fail: OSError | None = None) -> None:
        self.calls: list[tuple[int, set[int]]] = []
        self.fail = fail

    def set_mempolicy(self, mode: int, nodes: set[int]) -> None:
        self.calls.append((mode, nodes))
        if self.fail is not None:
            raise self.fail


def test_absent_policy_makes_no_call() -> None:
    sc = RecordingMempolicy()
    apply_memory_policy(sc, make_spec())  # type: ignore[arg-type]
    assert memory_policy(make_spec()) is None
    assert sc.calls == []


def test_mode_flags_and_nodes_reach_the_call() -> None:
    sc = RecordingMempolicy()
    spec = make_spec(
        {"mode": "MPOL_INTERLEAVE", "nodes": "0-2,5", "flags": ["MPOL_F_STATIC_NODES"]}
    )
    apply_memory_policy(sc, spec)  # type: ignore[arg-type]
    assert sc.calls == [(MODES["MPOL_INTERLEAVE"] | FLAGS["MPOL_F_STATIC_NODES"], {0, 1, 2, 5})]


@pytest.mark.parametrize(
    ("policy", "mode", "nodes"),
    [
        ({"mode": "MPOL_DEFAULT"}, 0, set()),
        ({"mode": "MPOL_LOCAL", "nodes": ""}, 4, set()),
        ({"mode": "MPOL_PREFERRED"}, 1, set()),
        ({"mode": "MPOL_PREFERRED", "nodes": "1"}, 1, {1}),
        ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}, 2 | 1 << 13,
         {0}),
        ({"mode": "MPOL_PREFERRED_MANY", "nodes": "0,1", "flags": ["MPOL_F_RELATIVE_NODES"]},
         5 | 1 << 14, {0, 1}),
        ({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "1023"}, 6, {1023}),
    ],
)  # fmt: skip
def test_valid_policies(policy: dict[str, Any], mode: int, nodes: set[int]) -> None:
    checked = memory_policy(make_spec(policy))
    assert checked is not None
    assert (checked.mode, checked.nodes) == (mode, nodes)


@pytest.mark.parametrize(
    ("policy", "path", "message"),
    [
        ({"nodes": "0"}, "mode", "required field is missing"),
        ({"mode": "MPOL_FIRST_TOUCH"}, "mode", 'unknown mode "MPOL_FIRST_TOUCH"'),
        ({"mode": "MPOL_DEFAULT", "nodes": "0"}, "nodes", "MPOL_DEFAULT takes no nodes"),
        ({"mode": "MPOL_LOCAL", "nodes": "1"}, "nodes", "MPOL_LOCAL takes no nodes"),
        ({"mode": "MPOL_BIND"}, "nodes", "MPOL_BIND needs at least one node"),
        ({"mode": "MPOL_INTERLEAVE", "nodes": " "}, "nodes", "needs at least one node"),
        ({"mode": "MPOL_BIND", "nodes": "1024"}, "nodes", "node 1024 is above the maximum 1023"),
        ({"mode": "MPOL_BIND", "nodes": "x"}, "nodes", "is not a node number"),
        ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_LAZY"]}, "flags[0]",
         'unknown flag "MPOL_F_LAZY"'),
        ({"mode": "MPOL_DEFAULT", "flags": ["MPOL_F_STATIC_NODES"]}, "flags[0]",
         "MPOL_DEFAULT takes no flags"),
        ({"mode": "MPOL_PREFERRED", "flags": ["MPOL_F_STATIC_NODES"]}, "flags[0]",
         "needs nodes to apply to"),
        ({"mode": "MPOL_LOCAL", "flags": ["MPOL_F_RELATIVE_NODES"]}, "flags[0]",
         "needs nodes to apply to"),
        ({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]},
         "flags[0]", "goes with MPOL_BIND or MPOL_PREFERRED_MANY only"),
        ({"mode": "MPOL_BIND", "nodes": "0",
          "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}, "flags",
         "exclude each other"),
        ({"mode": "MPOL_BIND", "nodes": 0}, "nodes", "expected a string"),
    ],
)  # fmt: skip
def test_policy_errors_name_the_field(policy: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_memory_policy(make_spec(policy))
    assert info.value.path == f"linux.memoryPolicy.{path}"
    assert message in str(info.value)


def test_no_numa_kernel_is_said_plainly() -> None:
    sc = RecordingMempolicy(
        fail=OSError(errno.ENOSYS, "set_mempolicy 0x2: Function not implemented")
    )
    with pytest.raises(CreateError) as info:
        apply_memory_policy(sc, make_spec({"mode": "MPOL_BIND", "nodes": "0"}))  # type: ignore[arg-type]
    assert str(info.value) == (
        "linux.memoryPolicy: this kernel has no NUMA support (built without CONFIG_NUMA)"
    )


@pytest.fixture
def host(tmp_path: Path) -> dict[str, str]:
    online = tmp_path / "online"
    online.write_text("0-1\n")
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nMems_allowed:\t3\nMems_allowed_list:\t1\n")
    return {"node_online": str(online), "status": str(status)}


def einval() -> OSError:
    return OSError(errno.EINVAL, "set_mempolicy 0x2: Invalid argument")


def checked(policy: dict[str, Any]) -> Any:
    result = memory_policy(make_spec(policy))
    assert result is not None
    return result


def test_einval_for_an_offline_node(host: dict[str, str]) -> None:
    line = explain_failure(checked({"mode": "MPOL_BIND", "nodes": "1-3"}), einval(), **host)
    assert line == 'node 2,3 of "1-3" is not online on this host (online: 0,1)'


def test_einval_outside_the_cpuset(host: dict[str, str]) -> None:
    line = explain_failure(checked({"mode": "MPOL_BIND", "nodes": "0"}), einval(), **host)
    assert line == (
        'none of the nodes "0" is allowed by this process\'s cpuset (Mems_allowed_list: 1)'
    )


def test_einval_for_a_mode_newer_than_the_kernel(host: dict[str, str]) -> None:
    policy = checked({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "1"})
    line = explain_failure(policy, einval(), **host)
    assert "MPOL_WEIGHTED_INTERLEAVE needs Linux 6.9" in line
    assert line.startswith("Invalid argument: the kernel refused MPOL_WEIGHTED_INTERLEAVE")


def test_einval_without_host_facts(tmp_path: Path) -> None:
    policy = checked({"mode": "MPOL_BIND", "nodes": "0"})
    missing = {"node_online": str(tmp_path / "none"), "status": str(tmp_path / "none")}
    line = explain_failure(policy, einval(), **missing)
    assert line == 'Invalid argument: the kernel refused MPOL_BIND with nodes "0"'


def test_other_errors_pass_through(host: dict[str, str]) -> None:
    policy = checked({"mode": "MPOL_BIND", "nodes": "0"})
    assert explain_failure(policy, OSError(errno.EFAULT, "x"), **host) == "Bad address"
