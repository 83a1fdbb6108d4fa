"""The same calls with corral and runc 1.1.5, compared after normalization.

containerd's shim (go-runc) and podman/conmon read a runtime's exit status, its stdout
(JSON from state, list, ps, events, features) and the last ``"level":"error"`` line of
``--log FILE --log-format json``; some match the message ("does not exist", "container
not running"). Each test here runs one scenario with each runtime, under its own
``--root`` and with its own container ids, on the same busybox bundle, and compares
what the clients see: exit status, stdout, the log's error message, and stderr once
corral's ``corral: `` prefix is taken off. Ids, pids, times, paths are replaced by
placeholders first, so that a regression shows as a diff of two lists.

The differences corral keeps on purpose (docs/runc-compat.md) are normalized here,
each with its reason: the ``ociVersion`` of ``state`` (the spec version the state
complies with, corral's; runc prints the config's), ``owner`` in ``state`` (runc
leaves it empty there, fills it in ``list``), and messages corral words differently
(checked for the same exit status, and that both failed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import corral_command, requires_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

RUNC = shutil.which("runc") or "/usr/sbin/runc"

pytestmark = [
    requires_root,
    pytest.mark.skipif(not os.access(RUNC, os.X_OK), reason="runc is not installed"),
]

_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


class Outcome:
    """One call as a client sees it, normalized."""

    __slots__ = ("log", "status", "stderr", "stdout")

    def __init__(self, status: int, stdout: object, stderr: str, log: str) -> None:
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
        self.log = log

    def as_tuple(self) -> tuple[int, object, str, str]:
        return (self.status, self.stdout, self.stderr, self.log)

    def __repr__(self) -> str:
        return repr(self.as_tuple())


class Side:
    """One runtime: its command, private root, log file and container ids."""

    def __init__(self, name: str, command: list[str], tmp_path: Path) -> None:
        self.name = name
        self.command = command
        self.dir = tmp_path / name
        self.dir.mkdir()
        self.root = str(self.dir / "root")
        self.log = self.dir / "log.json"
        self.ids: dict[str, str] = {}
        self.bundles: dict[str, str] = {}

    def id(self, alias: str) -> str:
        """This runtime's real id for ``alias``: the two never share an id (and so
        never a cgroup path: both place a container at /<id> by default)."""
        if alias not in self.ids:
            self.ids[alias] = f"{alias}-{self.name}-{uuid.uuid4().hex[:8]}"
        return self.ids[alias]

    def raw(
        self, *args: str, global_flags: list[str] | None = None, stdin: str | None = None
    ) -> tuple[int, str, str, str]:
        """Run ``args`` (``@alias`` becomes this side's id); status, stdout, stderr, the
        last error message of the JSON log."""
        real = [self.id(a[1:]) if a.startswith("@") else a for a in args]
        if self.log.exists():
            self.log.unlink()
        flags = (
            global_flags
            if global_flags is not None
            else ["--root", self.root, "--log", str(self.log), "--log-format", "json"]
        )
        out, err = self.dir / "out", self.dir / "err"
        # Files, not pipes: a created container's init keeps create's stdio open.
        feed: dict[str, Any] = (
            {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
        )
        with open(out, "w") as stdout, open(err, "w") as stderr:
            result = subprocess.run(
                [*self.command, *flags, *real],
                **feed,
                stdout=stdout,
                stderr=stderr,
                text=True,
                timeout=30,
                check=False,
            )
        return result.returncode, out.read_text(), err.read_text(), self._last_error()

    def _last_error(self) -> str:
        """What containerd's shim reports: the ``msg`` of the last error line."""
        message = ""
        if self.log.exists():
            for line in self.log.read_text().splitlines():
                entry = json.loads(line)  # every line must be JSON, or the shim fails
                assert list(entry) == ["level", "msg", "time"], line
                assert _TIME.fullmatch(entry["time"]), line
                if entry["level"] == "error":
                    message = entry["msg"].strip()
        return message

    def __call__(self, *args: str, stdin: str | None = None) -> Outcome:
        status, stdout, stderr, log = self.raw(*args, stdin=stdin)
        return Outcome(
            status,
            self.normalize_stdout(stdout),
            self.normalize(stderr),
            log and self.normalize(log),
        )

    def normalize(self, text: str) -> str:
        for alias, real in self.ids.items():
            text = text.replace(real, f"<{alias}>")
        text = text.replace(self.root, "<root>")
        text = _TIME.sub("<time>", text)
        lines = [line.removeprefix("corral: ") for line in text.splitlines()]
        return "\n".join(lines)

    def normalize_stdout(self, text: str) -> object:
        text = self.normalize(text)
        try:
            document = json.loads(text)
        except ValueError:
            return text
        return _normalize_document(document)

    def state(self, alias: str) -> dict[str, Any]:
        status, stdout, _, _ = self.raw("state", "@" + alias)
        assert status == 0, stdout
        state: dict[str, Any] = json.loads(stdout)
        return state

    def wait_for(self, alias: str, status: str) -> None:
        deadline = time.monotonic() + 10
        while self.state(alias)["status"] != status:
            assert time.monotonic() < deadline, f"{self.name}: {alias} never {status}"
            time.sleep(0.02)

    def cleanup(self) -> None:
        for real in self.ids.values():
            subprocess.run(
                [*self.command, "--root", self.root, "delete", "--force", real],
                capture_output=True,
                check=False,
                timeout=30,
            )


def _normalize_document(document: object) -> object:
    """Pids become "<pid>" (0 stays: it means stopped); the fields that differ on
    purpose become placeholders."""
    if isinstance(document, list):
        return [_normalize_document(item) for item in document]
    if isinstance(document, int) and not isinstance(document, bool):
        return "<pid>" if document else 0
    if not isinstance(document, dict):
        return document
    result = dict(document)
    if "ociVersion" in result and "status" in result:
        result["ociVersion"] = "<oci>"  # corral: the spec it complies with; runc: config's
        if isinstance(result.get("pid"), int) and result["pid"]:
            result["pid"] = "<pid>"
    return result


Pair = tuple[Side, Side]


@pytest.fixture
def sides(tmp_path: Path) -> Any:
    runc = Side("runc", [RUNC], tmp_path)
    corral = Side("corral", corral_command(), tmp_path)
    yield runc, corral
    runc.cleanup()
    corral.cleanup()


@pytest.fixture
def bundle(make_bundle: Callable[..., Path]) -> str:
    return str(make_bundle(["sleep", "1000"]))


def both(sides: Pair, *args: str, stdin: str | None = None) -> tuple[Outcome, Outcome]:
    runc, corral = sides
    return runc(*args, stdin=stdin), corral(*args, stdin=stdin)


def same(sides: Pair, *args: str, stdin: str | None = None) -> Outcome:
    """Run ``args`` with both; everything a client sees must be equal."""
    expected, got = both(sides, *args, stdin=stdin)
    assert got.as_tuple() == expected.as_tuple(), f"{' '.join(args)}: runc {expected}, corral {got}"
    return got


def same_status(sides: Pair, *args: str) -> tuple[Outcome, Outcome]:
    """For calls whose message corral words its own way: same exit status, both say why."""
    expected, got = both(sides, *args)
    assert got.status == expected.status, f"{' '.join(args)}: runc {expected}, corral {got}"
    assert got.stdout == expected.stdout, f"{' '.join(args)}: runc {expected}, corral {got}"
    assert bool(got.log) == bool(expected.log), f"{' '.join(args)}: runc {expected}, corral {got}"
    return expected, got


def create(sides: Pair, bundle: str, alias: str) -> None:
    same(sides, "create", "--bundle", bundle, "@" + alias)


def state_of(sides: Pair, alias: str) -> dict[str, Any]:
    """The normalized state, equal on both sides but for ``owner`` (runc's ``state``
    leaves it empty; corral's says who owns the container, as ``list`` does)."""
    states = [side.normalize_stdout(side.raw("state", "@" + alias)[1]) for side in sides]
    expected, got = states
    assert isinstance(expected, dict) and isinstance(got, dict), states
    assert expected.pop("owner") == ""
    assert got.pop("owner") == "root"
    assert list(got) == list(expected), states
    assert got == expected, states
    return got


# -- a missing container -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["state"],
        ["start"],
        ["kill"],
        ["kill", "--all"],
        ["delete"],
        ["pause"],
        ["resume"],
        ["ps"],
        ["ps", "--format", "json"],
        ["events", "--stats"],
        ["events", "--interval", "0"],
        ["update", "--pids-limit", "10"],
        ["exec"],
    ],
    ids=" ".join,
)
def test_missing_container(sides: Pair, args: list[str]) -> None:
    tail = ["true"] if args == ["exec"] else []
    got = same(sides, *args, "@missing", *tail)
    assert got.status != 0
    assert "does not exist" in got.log  # what containerd's shim matches


def test_delete_force_of_a_missing_container_succeeds(sides: Pair) -> None:
    got = same(sides, "delete", "--force", "@missing")
    assert got.status == 0


# -- the lifecycle and every wrong-state error ----------------------------------------------


def test_lifecycle_outputs_and_errors(sides: Pair, bundle: str) -> None:
    runc, corral = sides
    create(sides, bundle, "c")
    assert state_of(sides, "c")["status"] == "created"
    listing = same(sides, "list", "--format", "json")
    assert isinstance(listing.stdout, list) and listing.stdout[0]["status"] == "created"
    same(sides, "ps", "--format", "json", "@c")  # [<pid>]: the init
    same(sides, "kill", "@c", "0")
    same(sides, "kill", "@c", "FOO")
    same(sides, "start", "@c")
    same(sides, "start", "@c")  # cannot start an already running container
    same(sides, "delete", "@c")  # cannot delete ... not stopped: running
    same(sides, "resume", "@c")  # container not paused
    same(sides, "pause", "@c")
    same(sides, "pause", "@c")  # container not running
    assert state_of(sides, "c")["status"] == "paused"
    same(sides, "start", "@c")  # in the paused state
    same(sides, "delete", "@c")  # not stopped: paused
    same(sides, "resume", "@c")
    same(sides, "kill", "@c", "KILL")
    runc.wait_for("c", "stopped")
    corral.wait_for("c", "stopped")
    stopped = state_of(sides, "c")
    assert stopped["status"] == "stopped" and stopped["pid"] == 0
    for args in (
        ["start", "@c"],
        ["kill", "@c", "9"],
        ["pause", "@c"],
        ["resume", "@c"],
        ["update", "--pids-limit", "10", "@c"],
        ["events", "--stats", "@c"],
        ["exec", "@c", "true"],
    ):
        got = same(sides, *args)
        assert got.status != 0, args
    assert same(sides, "kill", "--all", "@c", "9").status == 0
    assert same(sides, "ps", "--format", "json", "@c").stdout is None
    assert same(sides, "delete", "@c").status == 0
    same(sides, "state", "@c")  # container does not exist
    assert same(sides, "list", "--format", "json").stdout is None


def test_delete_of_a_created_container_needs_no_force(sides: Pair, bundle: str) -> None:
    create(sides, bundle, "c")
    assert same(sides, "delete", "@c").status == 0
    same(sides, "state", "@c")


def test_sigkill_ends_a_paused_container(sides: Pair, bundle: str) -> None:
    runc, corral = sides
    create(sides, bundle, "c")
    same(sides, "start", "@c")
    same(sides, "pause", "@c")
    same(sides, "kill", "@c", "KILL")
    runc.wait_for("c", "stopped")
    corral.wait_for("c", "stopped")
    assert same(sides, "delete", "@c").status == 0


def test_kill_all_reaches_what_a_stopped_container_left(
    sides: Pair, make_bundle: Callable[..., Path]
) -> None:
    """With the host's pid namespace the init can die while a child stays in the cgroup:
    containerd's shim then runs ``kill --all ID 9``, which must end it and succeed."""
    marker = f"77{uuid.uuid4().int % 10_000}"

    def host_pid_namespace(spec: dict[str, Any]) -> None:
        namespaces = spec["linux"]["namespaces"]
        spec["linux"]["namespaces"] = [ns for ns in namespaces if ns["type"] != "pid"]

    shared = str(make_bundle(["sh", "-c", f"sleep {marker} & sleep 0.3"], edit=host_pid_namespace))
    for side in sides:
        assert side.raw("create", "--bundle", shared, "@c")[0] == 0
        assert side.raw("start", "@c")[0] == 0
        side.wait_for("c", "stopped")
        assert _sleepers(marker), side.name
        assert side("kill", "--all", "@c", "9").as_tuple() == (0, "", "", "")
        deadline = time.monotonic() + 5
        while _sleepers(marker):
            assert time.monotonic() < deadline, f"{side.name}: the child survived kill --all"
            time.sleep(0.02)
        assert side.raw("delete", "@c")[0] == 0


def _sleepers(marker: str) -> list[str]:
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as file:
                if file.read().split(b"\0")[:2] == [b"sleep", marker.encode()]:
                    found.append(name)
        except OSError:
            continue
    return found


def test_update_and_stats_of_a_running_container(sides: Pair, bundle: str, tmp_path: Path) -> None:
    create(sides, bundle, "c")
    same(sides, "start", "@c")
    resources = json.dumps({"pids": {"limit": 50}})
    assert same(sides, "update", "--resources", "-", "@c", stdin=resources).status == 0
    file = tmp_path / "resources.json"
    file.write_text(resources)
    assert same(sides, "update", f"--resources={file}", "@c").status == 0
    expected, got = both(sides, "events", "--stats", "@c")
    assert (got.status, got.stderr, got.log) == (expected.status, expected.stderr, expected.log)
    assert isinstance(expected.stdout, dict) and isinstance(got.stdout, dict)
    assert list(got.stdout) == list(expected.stdout) == ["type", "id", "data"]
    assert got.stdout["type"] == expected.stdout["type"] == "stats"
    assert list(got.stdout["data"]) == list(expected.stdout["data"])
    for section in ("cpu", "pids", "hugetlb"):
        assert list(got.stdout["data"][section]) == list(expected.stdout["data"][section])


# -- the command line itself -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["state", "--bogus", "@c"],
        ["delete", "--force=maybe", "@c"],
        ["create", "--preserve-fds", "x", "@c"],
        ["create", "--bundle"],
        ["events", "--interval=bad", "@c"],
        ["--bogus", "state", "@c"],
    ],
    ids=" ".join,
)
def test_flag_errors(sides: Pair, args: list[str]) -> None:
    """Go flag's texts in the log; runc also prints its help on stdout, corral not."""
    expected, got = both(sides, *args)
    assert got.status == expected.status == 1
    if args[0] == "--bogus":
        # runc fails before it opens the --log file: nothing there, the text on stderr.
        assert got.log == expected.log == ""
        assert got.stderr.endswith("flag provided but not defined: -bogus")
        assert "flag provided but not defined: -bogus" in expected.stderr
    else:
        assert got.log == expected.log
        assert got.stderr == expected.stderr


@pytest.mark.parametrize(
    "args", [["start"], ["state", "@a", "@b"], ["kill"], ["kill", "@a", "9", "x"]], ids=" ".join
)
def test_wrong_number_of_arguments(sides: Pair, args: list[str]) -> None:
    expected, got = both(sides, *args)
    assert got.status == expected.status == 1
    assert got.log and expected.log


def test_unknown_command(sides: Pair) -> None:
    expected, got = both(sides, "bogus")
    assert got.status == expected.status == 3


def test_bad_log_format_writes_no_log(sides: Pair) -> None:
    for side in sides:
        status, _, stderr, log = side.raw(
            "state",
            "x",
            global_flags=["--root", side.root, "--log", str(side.log), "--log-format", "xml"],
        )
        assert (status, log) == (1, ""), side.name
        assert "invalid log-format: xml" in stderr, side.name
        assert not side.log.exists(), side.name


@pytest.mark.parametrize("name", ["bad/id", "..", "a b"])
def test_malformed_id(sides: Pair, bundle: str, name: str) -> None:
    _, got = same_status(sides, "create", "--bundle", bundle, name)
    assert got.status == 1
    for side in sides:
        assert not os.path.isdir(side.root) or not os.listdir(side.root), side.name


def test_create_twice(sides: Pair, bundle: str) -> None:
    create(sides, bundle, "c")
    expected, got = same_status(sides, "create", "--bundle", bundle, "@c")
    assert got.status == 1
    assert "exists" in got.log and "exists" in expected.log


def test_missing_program_message_podman_maps_to_127(
    sides: Pair, make_bundle: Callable[..., Path]
) -> None:
    """podman turns "executable file not found in" into exit status 127."""
    bundle = str(make_bundle(["no-such-program"]))
    expected, got = same_status(sides, "create", "--bundle", bundle, "@c")
    needle = 'exec: "no-such-program": executable file not found in $PATH'
    assert needle in expected.log and needle in got.log


def test_a_bundle_written_by_runc_spec_runs_alike(
    sides: Pair, make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    """`runc spec`'s config asks for ambient capabilities without an inheritable set,
    which the kernel cannot raise: runc runs it anyway, and so must corral (with the
    spec's warning for each capability left out)."""
    bundle = tmp_path / "runc-spec"
    bundle.mkdir()
    subprocess.run([RUNC, "spec", "--bundle", str(bundle)], check=True, timeout=30)
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["capabilities"]["ambient"]
    assert not config["process"]["capabilities"].get("inheritable")
    rootfs = json.loads((make_bundle() / "config.json").read_text())["root"]["path"]
    config["root"]["path"] = rootfs
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", "grep -E '^Cap(Prm|Amb)' /proc/self/status"]
    (bundle / "config.json").write_text(json.dumps(config))
    expected, got = both(sides, "run", "--bundle", str(bundle), "@c")
    assert (got.status, got.stdout) == (expected.status, expected.stdout) == (0, got.stdout)
    assert "CapPrm:\t0000000020000420" in str(got.stdout)
    assert "CapAmb:\t0000000000000000" in str(got.stdout)
    assert expected.stderr == ""
    assert got.stderr.splitlines() == [
        f"warning: process.capabilities.ambient: {name} cannot be granted "
        "(not both permitted and inheritable)"
        for name in config["process"]["capabilities"]["ambient"]
    ]


def test_state_json_layout(sides: Pair, bundle: str) -> None:
    """Key order and two-space indentation, as Go's MarshalIndent writes them."""
    create(sides, bundle, "c")
    texts = [side.raw("state", "@c")[1] for side in sides]
    layouts = [[line.split(":")[0] for line in text.rstrip("\n").splitlines()] for text in texts]
    assert layouts[1] == layouts[0]


def test_features_is_a_superset_in_runc_order(sides: Pair) -> None:
    documents = []
    for side in sides:
        status, stdout, _, _ = side.raw("features", global_flags=[])
        assert status == 0
        documents.append(json.loads(stdout))
    expected, got = (_paths(document) for document in documents)
    runc_only = {path for path in expected if not path.startswith("annotations.")} - set(got)
    assert not runc_only
    common = [path for path in got if path in expected]
    assert common == [path for path in expected if path in common]


def _paths(document: object, prefix: str = "") -> list[str]:
    found = []
    if isinstance(document, dict):
        for key, value in document.items():
            found.append(prefix + key)
            found += _paths(value, prefix + key + ".")
    return found


def test_version_lines(sides: Pair) -> None:
    """``spec:`` is read by go-runc's Version(); the first line names the runtime."""
    for side in sides:
        status, stdout, _, _ = side.raw("--version", global_flags=[])
        lines = stdout.splitlines()
        assert status == 0
        assert lines[0].startswith(f"{side.name} version ")
        assert any(line.startswith("spec: ") for line in lines[1:])
