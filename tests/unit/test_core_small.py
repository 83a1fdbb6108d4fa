"""Container ids, signal names, the JSON codec and the command-line parser."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.cli.args import Flag, parse
from corral.core import jsonio
from corral.core.ids import validate_id
from corral.core.signals import parse_signal, signal_name
from corral.errors import InvalidIdError, UsageError


@pytest.mark.parametrize("good", ["a", "web-1", "A.b_c+d", "0" * 64, "x" * 255])
def test_valid_ids(good: str) -> None:
    assert validate_id(good) == good


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("", "empty"),
        (".", "invalid container id"),
        ("..", "invalid container id"),
        ("a/b", "invalid container id"),
        ("a b", "invalid container id"),
        ("é", "invalid container id"),
        ("x" * 256, "longer than 255"),
        ("a\nb", "a\\nb"),
    ],
)
def test_invalid_ids(bad: str, fragment: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        validate_id(bad)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("KILL", 9),
        ("SIGKILL", 9),
        ("kill", 9),
        ("9", 9),
        ("TERM", 15),
        ("USR1", 10),
        ("RTMIN", 34),
        ("RTMIN+3", 37),
        ("RTMAX-1", 63),
        ("64", 64),
    ],
)
def test_linux_signals(text: str, number: int) -> None:
    assert parse_signal(text, "linux") == number


def test_freebsd_numbers_differ() -> None:
    assert parse_signal("USR1", "freebsd") == 30
    assert parse_signal("STOP", "freebsd") == 17


@pytest.mark.parametrize("bad", ["FOO", "0", "65", "RTMIN+40", "-9", "", "SIG"])
def test_unknown_signals(bad: str) -> None:
    with pytest.raises(UsageError, match="unknown signal"):
        parse_signal(bad, "linux")


def test_signal_name() -> None:
    assert signal_name(9, "linux") == "SIGKILL"
    assert signal_name(99, "linux") == "signal 99"


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(_json_values)
def test_jsonio_round_trips_like_json(value: object) -> None:
    assert jsonio.loads(jsonio.dumps(value)) == value
    assert json.loads(jsonio.dumps(value, indent=2)) == value
    assert jsonio.loads(json.dumps(value)) == value


def test_jsonio_indents_like_json() -> None:
    value = {"a": [1, {"b": None}], "c": {}, "d": []}
    assert jsonio.dumps(value, indent=2) == json.dumps(value, indent=2)


@pytest.mark.parametrize("bad", ["{", "[1,]", '{"a":1} x', "NaN", "", "'a'"])
def test_jsonio_rejects_malformed(bad: str) -> None:
    with pytest.raises(jsonio.JSONError):
        jsonio.loads(bad)


FLAGS = [
    Flag("bundle,b", value=True),
    Flag("force,f"),
    Flag("preserve-fds", value=True, default=0),
]


def test_parse_forms() -> None:
    parsed = parse(["-b", "x", "--force", "id", "--preserve-fds=2"], FLAGS)
    assert parsed.values == {"bundle": "x", "force": True, "preserve_fds": 2}
    assert parsed.args == ["id"]
    parsed = parse(["--bundle=y", "-force=false", "--", "--not-a-flag"], FLAGS)
    assert parsed.values["bundle"] == "y"
    assert parsed.values["force"] is False
    assert parsed.args == ["--not-a-flag"]


def test_parse_stops_at_subcommand() -> None:
    parsed = parse(["--bundle", "b", "create", "--force"], FLAGS, stop_at_first_arg=True)
    assert parsed.args == ["create", "--force"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nope"], "flag provided but not defined"),
        (["--bundle"], "flag needs an argument"),
        (["--preserve-fds", "x"], "invalid value"),
        (["--force=maybe"], "invalid boolean"),
    ],
)
def test_parse_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(argv, FLAGS)
