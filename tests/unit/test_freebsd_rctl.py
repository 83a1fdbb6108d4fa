"""rctl rules from ``org.corral.freebsd.rctl.*`` annotations, and adding/removing them
through a recording fake of rctl_add_rule(2)/rctl_remove_rule(2)."""

from __future__ import annotations

import errno
import os

import pytest

from corral.errors import ConfigError, CreateError
from corral.freebsd.rctl import (
    ACTIONS,
    ANNOTATION_PREFIX,
    RESOURCES,
    apply_rctl,
    check_rctl,
    parse_limit,
    rctl_rules,
    remove_rctl,
)
from corral.spec.model import parse_config

P = ANNOTATION_PREFIX

# rctl(8), RESOURCES (FreeBSD 14), in the manual's order.
RCTL_8_RESOURCES = [
    "cputime", "datasize", "stacksize", "coredumpsize", "memoryuse", "memorylocked",
    "maxproc", "openfiles", "vmemoryuse", "pseudoterminals", "swapuse", "nthr",
    "msgqqueued", "msgqsize", "nmsgq", "nsem", "nsemop", "nshm", "shmsize", "wallclock",
    "pcpu", "readbps", "writebps", "readiops", "writeiops",
]  # fmt: skip


def test_every_rctl_8_resource_is_known() -> None:
    assert list(RESOURCES) == RCTL_8_RESOURCES


def test_actions_include_deny_throttle_and_signals() -> None:
    assert {"deny", "log", "devctl", "throttle", "sigterm", "sigkill", "sigxcpu"} <= ACTIONS
    assert "sigfoo" not in ACTIONS


RULES: list[tuple[dict[str, str], list[str]]] = [
    ({}, []),
    ({"other": "1", "org.corral.freebsd.rctlx": "1"}, []),
    ({P + "maxproc": "100"}, ["jail:c1:maxproc:deny=100"]),
    ({P + "memoryuse": "512m"}, [f"jail:c1:memoryuse:deny={512 << 20}"]),
    ({P + "memoryuse": "512M"}, [f"jail:c1:memoryuse:deny={512 << 20}"]),
    ({P + "vmemoryuse": "2g"}, [f"jail:c1:vmemoryuse:deny={2 << 30}"]),
    ({P + "swapuse": "1t"}, [f"jail:c1:swapuse:deny={1 << 40}"]),
    ({P + "datasize": "1k"}, ["jail:c1:datasize:deny=1024"]),
    ({P + "shmsize": "3p"}, [f"jail:c1:shmsize:deny={3 << 50}"]),
    ({P + "stacksize": "1e"}, [f"jail:c1:stacksize:deny={1 << 60}"]),
    ({P + "memorylocked": "4096"}, ["jail:c1:memorylocked:deny=4096"]),
    ({P + "openfiles": "1024"}, ["jail:c1:openfiles:deny=1024"]),
    ({P + "pcpu": "50"}, ["jail:c1:pcpu:deny=50"]),
    ({P + "pcpu": "400"}, ["jail:c1:pcpu:deny=400"]),
    ({P + "cputime": "3600"}, ["jail:c1:cputime:sigkill=3600"]),
    ({P + "wallclock": "60"}, ["jail:c1:wallclock:sigkill=60"]),
    ({P + "cputime": "sigxcpu=10"}, ["jail:c1:cputime:sigxcpu=10"]),
    ({P + "readbps": "10m"}, [f"jail:c1:readbps:throttle={10 << 20}"]),
    ({P + "writeiops": "200"}, ["jail:c1:writeiops:throttle=200"]),
    ({P + "memoryuse": "log=1g"}, [f"jail:c1:memoryuse:log={1 << 30}"]),
    ({P + "maxproc": "devctl=0"}, ["jail:c1:maxproc:devctl=0"]),
    (
        {P + "openfiles": "64", "x": "y", P + "maxproc": "10", P + "coredumpsize": "0"},
        [
            "jail:c1:coredumpsize:deny=0",
            "jail:c1:maxproc:deny=10",
            "jail:c1:openfiles:deny=64",
        ],
    ),
]


@pytest.mark.parametrize(("annotations", "rules"), RULES)
def test_rules(annotations: dict[str, str], rules: list[str]) -> None:
    assert rctl_rules(annotations, "c1", ncpu=4) == rules


BAD: list[tuple[str, str, str]] = [
    ("foo", "1", 'unknown rctl resource "foo"'),
    ("", "1", 'unknown rctl resource ""'),
    ("MaxProc", "1", "unknown rctl resource"),
    ("maxproc", "", "expected a non-negative integer (count)"),
    ("maxproc", "-1", "expected a non-negative integer"),
    ("maxproc", "1k", "expected a non-negative integer"),
    ("maxproc", " 10", "expected a non-negative integer"),
    ("maxproc", "\u0661\u0660", "expected a non-negative integer"),  # Arabic-Indic "10"
    ("memoryuse", "1.5g", "expected a number of bytes"),
    ("memoryuse", "512mb", "expected a number of bytes"),
    ("memoryuse", "g", "expected a number of bytes"),
    ("memoryuse", "kill=1g", 'unknown rctl action "kill"'),
    ("memoryuse", "=1g", 'unknown rctl action ""'),
    ("cputime", "deny=10", "rctl cannot deny cputime"),
    ("wallclock", "deny=10", "use a signal such as sigkill"),
    ("readbps", "deny=1m", "use throttle"),
    ("maxproc", "throttle=10", "rctl throttles only"),
    ("pcpu", "throttle=10", "rctl throttles only"),
    ("pcpu", "401", "above the maximum 400"),
    ("cputime", str((2**63 - 1) // 1_000_000 + 1), "above the maximum"),
    ("maxproc", str(2**63), "above the maximum"),
    ("memoryuse", "8e", "above the maximum"),
]


@pytest.mark.parametrize(("resource", "value", "message"), BAD)
def test_bad_annotations(resource: str, value: str, message: str) -> None:
    key = P + resource
    with pytest.raises(ConfigError) as caught:
        rctl_rules({"a": "b", key: value}, "c1", ncpu=4)
    assert caught.value.path == f'annotations["{key}"]'
    assert message in caught.value.message


def test_largest_amounts_pass() -> None:
    assert parse_limit("maxproc", str(2**63 - 1), "x") == ("deny", 2**63 - 1)
    assert parse_limit("wallclock", str((2**63 - 1) // 10**6), "x")[1] == (2**63 - 1) // 10**6
    assert parse_limit("memoryuse", "7e", "x") == ("deny", 7 << 60)


def test_pcpu_bound_defaults_to_this_host() -> None:
    cpus = os.cpu_count() or 1
    assert parse_limit("pcpu", str(100 * cpus), "x") == ("deny", 100 * cpus)
    with pytest.raises(ConfigError):
        parse_limit("pcpu", str(100 * cpus + 1), "x")


@pytest.mark.parametrize("name", ["", "a:b", "a,b", "a/b", "a=b"])
def test_jail_names_that_break_the_rule_syntax(name: str) -> None:
    with pytest.raises(CreateError):
        rctl_rules({}, name)


def test_check_rctl_reads_the_spec_annotations() -> None:
    good = parse_config({"ociVersion": "1.3.0", "annotations": {P + "maxproc": "5"}})
    check_rctl(good)
    bad = parse_config({"ociVersion": "1.3.0", "annotations": {P + "maxprocs": "5"}})
    with pytest.raises(ConfigError) as caught:
        check_rctl(bad)
    assert caught.value.path == f'annotations["{P}maxprocs"]'


# -- executors -------------------------------------------------------------------------


class RecordingRctl:
    def __init__(self, fail: dict[tuple[str, str], int] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail or {}

    def _call(self, name: str, text: str) -> None:
        self.calls.append((name, text))
        code = self.fail.get((name, text))
        if code is not None:
            raise OSError(code, os.strerror(code))

    def rctl_add_rule(self, rule: str) -> None:
        self._call("add", rule)

    def rctl_remove_rule(self, filter: str) -> None:
        self._call("remove", filter)


def test_apply_rctl_adds_in_order() -> None:
    sc = RecordingRctl()
    apply_rctl(sc, ["jail:c:maxproc:deny=1", "jail:c:nthr:deny=2"])
    assert sc.calls == [("add", "jail:c:maxproc:deny=1"), ("add", "jail:c:nthr:deny=2")]


def test_apply_rctl_removes_the_added_rules_on_failure() -> None:
    rules = ["jail:c:maxproc:deny=1", "jail:c:nthr:deny=2", "jail:c:pcpu:deny=3", "jail:c:x:y=4"]
    sc = RecordingRctl(
        fail={("add", rules[2]): errno.EOPNOTSUPP, ("remove", rules[1]): errno.ESRCH}
    )
    with pytest.raises(CreateError) as caught:
        apply_rctl(sc, rules)
    assert str(caught.value) == (
        f'rctl rule "{rules[2]}": the kernel does not support this action for this resource'
    )
    assert sc.calls == [
        ("add", rules[0]),
        ("add", rules[1]),
        ("add", rules[2]),
        ("remove", rules[1]),  # its failure does not stop the next removal
        ("remove", rules[0]),
    ]


def test_apply_rctl_explains_racct_being_off() -> None:
    sc = RecordingRctl(fail={("add", "jail:c:maxproc:deny=1"): errno.ENOSYS})
    with pytest.raises(CreateError) as caught:
        apply_rctl(sc, ["jail:c:maxproc:deny=1"])
    assert "kern.racct.enable=1" in str(caught.value)


def test_remove_rctl_uses_the_jail_filter() -> None:
    sc = RecordingRctl()
    assert remove_rctl(sc, "c1") == []
    assert sc.calls == [("remove", "jail:c1")]


@pytest.mark.parametrize("code", [errno.ESRCH, errno.ENOSYS])
def test_remove_rctl_nothing_to_remove_is_fine(code: int) -> None:
    sc = RecordingRctl(fail={("remove", "jail:c1"): code})
    assert remove_rctl(sc, "c1") == []


def test_remove_rctl_reports_other_errors() -> None:
    sc = RecordingRctl(fail={("remove", "jail:c1"): errno.EPERM})
    [error] = remove_rctl(sc, "c1")
    assert error.startswith("rctl rules of jail c1: not permitted")
