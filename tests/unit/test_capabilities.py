"""Capability table, masks and the checks on ``process.capabilities``."""

from __future__ import annotations

import os

import pytest

from corral.errors import ConfigError
from corral.linux import capabilities
from corral.linux.capabilities import (
    CAPABILITIES,
    capability_mask,
    check_capabilities,
    kernel_last_cap,
    probe_last_cap,
)
from corral.linux.syscalls import PR_CAPBSET_READ
from corral.spec.model import Capabilities

HEADER = "/usr/include/linux/capability.h"


@pytest.mark.skipif(not os.path.exists(HEADER), reason=f"{HEADER} is not installed")
def test_table_matches_the_kernel_header() -> None:
    defined = {}
    with open(HEADER) as f:
        for line in f:
            words = line.split()
            if len(words) == 3 and words[0] == "#define" and words[2].isdigit():
                name = words[1]
                if name.startswith("CAP_") and name != "CAP_LAST_CAP":
                    defined[name] = int(words[2])
    # The header may be newer than corral's table, never different where both know.
    assert {name: defined[name] for name in CAPABILITIES} == CAPABILITIES


def test_table_is_dense_from_zero_to_checkpoint_restore() -> None:
    assert sorted(CAPABILITIES.values()) == list(range(41))
    assert CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40


def test_capability_mask_sets_one_bit_per_name() -> None:
    assert capability_mask([]) == 0
    assert capability_mask(["CAP_CHOWN"]) == 1
    assert capability_mask(["CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"]) == (1 << 10) | (1 << 21)
    assert capability_mask(["CAP_BPF", "CAP_BPF"]) == 1 << 39
    assert capability_mask(CAPABILITIES) == (1 << 41) - 1


def caps(**sets: list[str]) -> Capabilities:
    return Capabilities(sets)


def test_valid_sets_pass() -> None:
    names = ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]
    check_capabilities(
        caps(bounding=names, effective=names, permitted=names, inheritable=names, ambient=names),
        "process.capabilities",
    )


def test_unknown_name_names_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        check_capabilities(
            caps(bounding=["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_FOO"]),
            "process.capabilities",
        )
    assert info.value.path == "process.capabilities.bounding[3]"
    assert info.value.message == 'unknown capability "CAP_FOO"'


def test_names_are_case_sensitive_and_need_the_prefix() -> None:
    for bad in ("cap_chown", "CHOWN"):
        with pytest.raises(ConfigError, match="unknown capability"):
            check_capabilities(caps(effective=[bad], permitted=[bad]), "p")


def test_name_newer_than_the_running_kernel_passes_the_check() -> None:
    # config.md: a capability that cannot be granted is a warning, not a failure; the
    # init leaves it out (see test_credentials for the warning).
    check_capabilities(caps(permitted=["CAP_CHECKPOINT_RESTORE"]), "process.capabilities")


def test_effective_must_be_permitted() -> None:
    with pytest.raises(ConfigError) as info:
        check_capabilities(caps(effective=["CAP_CHOWN", "CAP_KILL"], permitted=["CAP_CHOWN"]), "pc")
    assert info.value.path == "pc.effective[1]"
    assert "CAP_KILL is effective but not permitted" in info.value.message


@pytest.mark.parametrize(
    ("permitted", "inheritable"),
    [(["CAP_KILL"], []), ([], ["CAP_KILL"]), ([], [])],
)
def test_ambient_outside_permitted_or_inheritable_is_accepted(
    permitted: list[str], inheritable: list[str]
) -> None:
    # `runc spec` writes ambient capabilities with no inheritable set, and runc runs
    # that config: the init leaves them out with a warning (test_credentials), the check
    # before create does not refuse the config.
    check_capabilities(
        caps(permitted=permitted, inheritable=inheritable, ambient=["CAP_KILL"]),
        "process.capabilities",
    )


def test_kernel_last_cap_reads_proc_and_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capabilities, "_last_cap", None)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        expected = int(f.read())
    assert kernel_last_cap() == expected
    assert capabilities._last_cap == expected


class FakePrctl:
    """Answers PR_CAPBSET_READ like a kernel whose last capability is ``last``."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.asked: list[int] = []

    def prctl(self, option: int, arg2: int = 0, *rest: int) -> int:
        assert option == PR_CAPBSET_READ
        self.asked.append(arg2)
        if arg2 > self.last:
            raise OSError(22, "prctl: Invalid argument")
        return 1


def test_probe_last_cap_stops_at_the_first_einval() -> None:
    fake = FakePrctl(38)
    assert probe_last_cap(fake) == 38  # type: ignore[arg-type]
    assert fake.asked == list(range(40))


def test_kernel_last_cap_without_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_proc(*args: object, **kwargs: object) -> object:
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(capabilities, "_last_cap", None)
    monkeypatch.setattr("builtins.open", no_proc)
    # Without a Syscalls object: assume corral's last, so a check rejects nothing real.
    assert kernel_last_cap() == 40
    assert capabilities._last_cap is None
    # With one: ask the kernel, and remember.
    assert kernel_last_cap(FakePrctl(37)) == 37  # type: ignore[arg-type]
    assert kernel_last_cap() == 37
