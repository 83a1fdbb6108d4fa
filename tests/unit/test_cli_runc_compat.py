"""The texts and formats of the CLI that runc's clients read, checked without root.

Each expectation is what runc 1.1.5 prints in the same case (see
docs/runc-compat.md); tests/integration/test_runc_compat.py runs both side by side.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime

import pytest

from corral.cli.args import Flag, parse
from corral.cli.lifecycle import kill_signal
from corral.cli.log import Logger
from corral.cli.main import main
from corral.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

FLAGS = [
    Flag("bundle,b", value=True),
    Flag("force,f"),
    Flag("preserve-fds", value=True, default=0),
    Flag("env,e", repeat=True),
]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nope"], "flag provided but not defined: -nope"),
        (["-nope=1"], "flag provided but not defined: -nope"),
        (["--bundle"], "flag needs an argument: -bundle"),
        (["-b"], "flag needs an argument: -b"),
        (["--env"], "flag needs an argument: -env"),
        (["--preserve-fds", "x"], 'invalid value "x" for flag -preserve-fds: parse error'),
        (["--force=maybe"], 'invalid boolean value "maybe" for -force: parse error'),
    ],
)
def test_flag_errors_are_go_flag_texts(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(argv, FLAGS)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "number"),
    [("0", 0), ("+0", 0), ("9", 9), ("+9", 9), ("KILL", 9), ("sigterm", 15), ("Usr1", 10)],
)
def test_kill_signal_reads_numbers_as_go_atoi(text: str, number: int) -> None:
    assert kill_signal(text) == number


@pytest.mark.parametrize("text", ["9x", " 9", "+", "++9", "FOO", "999"])
def test_kill_signal_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="unknown signal"):
        kill_signal(text)


def test_json_log_line_is_what_containerd_decodes(tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    Logger(str(log), "json").error('container "x" does not exist')
    Logger(str(log), "json").warning("second")
    lines = log.read_text().splitlines()
    first = json.loads(lines[0])
    # logrus's JSON formatter: keys sorted, time RFC 3339 (containerd decodes it as
    # time.Time, so an unparsable stamp would hide the error message).
    assert list(first) == ["level", "msg", "time"]
    assert first["level"] == "error"
    assert first["msg"] == 'container "x" does not exist'
    assert datetime.fromisoformat(first["time"].replace("Z", "+00:00")).tzinfo is not None
    assert json.loads(lines[1])["level"] == "warning"


def test_text_log_line_is_logrus_text(tmp_path: Path) -> None:
    log = tmp_path / "log"
    Logger(str(log), "text").error('a "quoted" word')
    line = log.read_text()
    assert re.fullmatch(
        r'time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" level=error msg="a \\"quoted\\" word"\n', line
    ), line


def test_unknown_command_exits_3(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", "/nonexistent", "bogus"]) == 3
    assert "bogus" in capfd.readouterr().err


def test_bad_log_format_writes_no_log(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log"
    status = main(["--root", str(tmp_path), "--log", str(log), "--log-format", "xml", "list"])
    assert status == 1
    assert "invalid log-format: xml" in capfd.readouterr().err
    assert not log.exists()


def test_usage_error_goes_to_the_json_log(tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    status = main(["--root", str(tmp_path), "--log", str(log), "--log-format", "json", "state"])
    assert status == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error"
    assert "requires" in entry["msg"]


def test_a_stderr_that_takes_nothing_still_gets_the_error_logged(tmp_path: Path) -> None:
    """containerd's shim runs ``create`` of a pod sandbox with a read-only /dev/null
    as stderr: the error must still reach the --log file, with corral's exit status
    (Python's flush of a failed sys.stderr at exit would make it 120)."""
    import subprocess

    from conftest import corral_command

    log = tmp_path / "log.json"
    flags = ["--root", str(tmp_path), "--log", str(log), "--log-format", "json"]
    with open(os.devnull) as read_only:
        result = subprocess.run(
            [*corral_command(), *flags, "state", "nosuch"],
            stdin=read_only,
            stdout=read_only,
            stderr=read_only,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["msg"] == "container does not exist"
