"""linux.personality: the checked domain, and personality(2) against a recording fake."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from corral.errors import ConfigError, CreateError, UnsupportedError
from corral.linux.personality import (
    PERSONALITY_QUERY,
    apply_personality,
    check_personality,
    personality_value,
)
from corral.spec.model import Spec, parse_config


def make_spec(personality: Any = None) -> Spec:
    linux: dict[str, Any] = {"namespaces": [{"type": "mount"}]}
    if personality is not None:
        linux["personality"] = personality
    return parse_config({"ociVersion": "1.2.0", "linux": linux})


class RecordingPersonality:
    """personality(2): remembers the persona; the query returns ``kept`` if given."""

    def __init__(self, kept: int | None = None, error: OSError | None = None) -> None:
        self.calls: list[int] = []
        self.persona = 0
        self.kept = kept
        self.error = error

    def personality(self, persona: int) -> int:
        self.calls.append(persona)
        if self.error is not None:
            raise self.error
        previous = self.persona
        if persona != PERSONALITY_QUERY:
            self.persona = persona if self.kept is None else self.kept
        return previous


def test_absent_means_nothing_to_do() -> None:
    spec = make_spec()
    assert personality_value(spec) is None
    sc = RecordingPersonality()
    apply_personality(sc, spec)  # type: ignore[arg-type]
    assert sc.calls == []


@pytest.mark.parametrize(("domain", "value"), [("LINUX", 0), ("LINUX32", 8)])
def test_domains_map_to_per_constants(domain: str, value: int) -> None:
    assert personality_value(make_spec({"domain": domain})) == value
    assert personality_value(make_spec({"domain": domain, "flags": []})) == value


def test_unknown_domain_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        check_personality(make_spec({"domain": "LINUX64"}))
    assert info.value.path == "linux.personality.domain"
    assert '"LINUX64"' in str(info.value)


def test_domain_is_required() -> None:
    with pytest.raises(ConfigError) as info:
        check_personality(make_spec({"flags": []}))
    assert info.value.path == "linux.personality.domain"


def test_any_flag_is_refused_not_ignored() -> None:
    with pytest.raises(UnsupportedError) as info:
        check_personality(make_spec({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}))
    assert info.value.path == "linux.personality.flags[0]"


def test_apply_sets_then_verifies() -> None:
    sc = RecordingPersonality()
    apply_personality(sc, make_spec({"domain": "LINUX32"}))  # type: ignore[arg-type]
    assert sc.calls == [8, PERSONALITY_QUERY]
    assert sc.persona == 8


def test_a_persona_the_kernel_did_not_take_is_an_error() -> None:
    sc = RecordingPersonality(kept=0)
    with pytest.raises(CreateError, match="kept persona 0x0 instead of 0x8"):
        apply_personality(sc, make_spec({"domain": "LINUX32"}))  # type: ignore[arg-type]


def test_a_failing_call_names_the_field() -> None:
    sc = RecordingPersonality(error=OSError(errno.EINVAL, "personality 0x8: Invalid argument"))
    with pytest.raises(CreateError, match=r"^linux\.personality: personality 0x8"):
        apply_personality(sc, make_spec({"domain": "LINUX32"}))  # type: ignore[arg-type]
