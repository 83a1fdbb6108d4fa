"""Bad input through the ``corral`` command: one clear line, and nothing left behind.

For every error a user can cause, ``corral`` must print exactly one line on stderr,
``corral: <what is wrong>`` naming the field or value, exit non-zero, show no Python
traceback (unless ``--debug``), and leave the host as it was: no state directory, no
process, no mount. A leaked process is found by a tag in its environment: the init is
a fork of ``corral`` and keeps its environment until it execs the container's program.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from conftest import create_detached, requires_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from conftest import Corral

    MakeBundle = Callable[..., Path]
    Edit = Callable[[dict[str, Any]], None]

pytestmark = requires_root


def mountinfo() -> set[str]:
    with open("/proc/self/mountinfo") as file:
        return set(file.read().splitlines())


def tagged_processes(tag: str) -> list[int]:
    """Live processes whose environment holds ``CORRAL_TEST_TAG=<tag>``."""
    needle = f"CORRAL_TEST_TAG={tag}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as file:
                if needle in file.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


class Failure:
    """One failing ``corral`` call and what the host looked like around it."""

    def __init__(self, corral: Corral, args: list[str], tmp_path: Path) -> None:
        self.tag = uuid.uuid4().hex
        self.mounts_before = mountinfo()
        # The files, not pipes: a leaked init would hold a pipe open and hang the test.
        out, err = tmp_path / f"{self.tag}.out", tmp_path / f"{self.tag}.err"
        with open(out, "w") as stdout, open(err, "w") as stderr:
            self.result = corral(
                *args,
                check=False,
                capture_output=False,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, "CORRAL_TEST_TAG": self.tag},
            )
        self.stdout = out.read_text()
        self.stderr = err.read_text()
        self.mounts_after = mountinfo()
        self.root = corral.root

    @property
    def message(self) -> str:
        """The error line without ``corral: `` and the newline."""
        return self.stderr.removeprefix("corral: ").removesuffix("\n")

    def assert_one_clean_line(self) -> None:
        assert self.result.returncode != 0
        assert self.stderr.startswith("corral: "), self.stderr
        assert self.stderr.endswith("\n") and self.stderr.count("\n") == 1, self.stderr
        assert "Traceback" not in self.stderr
        assert self.stdout == ""

    def assert_nothing_left(self) -> None:
        assert not os.path.isdir(self.root) or os.listdir(self.root) == []
        assert tagged_processes(self.tag) == []
        assert self.mounts_after ^ self.mounts_before == set()


@pytest.fixture
def fail(corral: Corral, tmp_path: Path) -> Callable[..., Failure]:
    """``fail(*args)``: run ``corral *args``, expect a clean failure, return it."""

    def run(*args: str) -> Failure:
        failure = Failure(corral, list(args), tmp_path)
        failure.assert_one_clean_line()
        failure.assert_nothing_left()
        return failure

    return run


def test_the_leak_probe_sees_a_waiting_init(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    """The probes above can fail: a created container is found by each of them."""
    tag = uuid.uuid4().hex
    before = mountinfo()
    bundle = make_bundle(["true"])
    with open(bundle / "out", "w") as out:
        corral(
            "create",
            "--bundle",
            str(bundle),
            container_id,
            capture_output=False,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env={**os.environ, "CORRAL_TEST_TAG": tag},
        )
    assert tagged_processes(tag) == [corral.state(container_id)["pid"]]
    assert os.listdir(corral.root) == [container_id]
    assert mountinfo() == before  # the container's mounts are in its own namespace


# -- config.json --------------------------------------------------------------------------


def append_namespace(spec: dict[str, Any]) -> None:
    spec["linux"]["namespaces"].append({"type": "pidx"})


def test_unknown_namespace_names_its_json_path(
    fail: Callable[..., Failure], make_bundle: MakeBundle, container_id: str
) -> None:
    bundle = make_bundle(["true"], edit=append_namespace)
    failure = fail("create", "--bundle", str(bundle), container_id)
    assert failure.stderr == (
        'corral: config.json: linux.namespaces[6].type: unknown namespace "pidx"\n'
    )


def set_path(path: str, value: object) -> Edit:
    """An edit setting the dotted ``path`` (keys only) to ``value``."""

    def edit(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edit


def add_mount(**mount: object) -> Edit:
    def edit(spec: dict[str, Any]) -> None:
        spec["mounts"].append(mount)

    return edit


# (edit, the expected stderr line, or its start when it ends with "...")
BAD_CONFIGS: dict[str, tuple[Edit, str]] = {
    "resources": (
        set_path("linux.resources", {"memory": {"limit": "1G"}}),
        "config.json: linux.resources.memory.limit: must be an integer...",
    ),
    "seccomp": (
        set_path("linux.seccomp", {"defaultAction": "SCMP_ACT_DENY"}),
        "config.json: linux.seccomp.defaultAction: unknown seccomp action 'SCMP_ACT_DENY'",
    ),
    "hook path": (
        set_path("hooks", {"prestart": [{"path": "bin/true"}]}),
        'config.json: hooks.prestart[0].path: "bin/true" is not an absolute path',
    ),
    "terminal without a console socket": (
        set_path("process.terminal", True),
        "config.json: process.terminal: cannot allocate tty if corral will detach without...",
    ),
    "uid type": (
        set_path("process.user.uid", "root"),
        'config.json: process.user.uid: expected an integer, got "root"',
    ),
    "capability": (
        set_path("process.capabilities.bounding", ["CAP_BOGUS"]),
        'config.json: process.capabilities.bounding[0]: unknown capability "CAP_BOGUS"',
    ),
    "rlimit": (
        set_path("process.rlimits", [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
        'config.json: process.rlimits[0].type: unknown rlimit "RLIMIT_BOGUS"',
    ),
    "empty args": (set_path("process.args", []), "config.json: process.args: ..."),
    "relative cwd": (set_path("process.cwd", "etc"), "config.json: process.cwd: ..."),
    "host sysctl": (
        set_path("linux.sysctl", {"kernel.panic": "1"}),
        "config.json: linux.sysctl.kernel.panic: not a namespaced sysctl...",
    ),
    "namespace path": (
        set_path(
            "linux.namespaces", [{"type": "mount"}, {"type": "uts"}, {"type": "ipc", "path": "/x"}]
        ),
        "config.json: linux.namespaces[2].path: /x: No such file or directory",
    ),
    "bind source": (
        add_mount(destination="/tmp", type="bind", source="/nonexistent", options=["bind"]),
        'config.json: mounts[6].source: bind source "/nonexistent" does not exist',
    ),
    "root path": (
        set_path("root.path", "/nonexistent-rootfs"),
        "config.json: root.path: root filesystem /nonexistent-rootfs does not exist",
    ),
    "hostname without uts": (
        set_path("linux.namespaces", [{"type": "mount"}]),
        "config.json: hostname: ...",
    ),
    "oci version": (set_path("ociVersion", "one"), "config.json: ociVersion: ..."),
    # These get past the checks and fail in the container's init, mid-setup.
    "fs type": (
        add_mount(destination="/tmp", type="nosuchfs", source="none"),
        "mounts[6]: mount nosuchfs on /tmp: No such device",
    ),
    "missing sysctl": (
        set_path("linux.sysctl", {"net.nosuch.key": "1"}),
        "linux.sysctl.net.nosuch.key: ...",
    ),
    "cwd not a directory": (
        set_path("process.cwd", "/etc/passwd"),
        'process.cwd "/etc/passwd": ...',
    ),
    "program": (
        set_path("process.args", ["nosuchprog"]),
        'exec: "nosuchprog": executable file not found in $PATH',
    ),
}


def assert_message(failure: Failure, expected: str) -> None:
    if expected.endswith("..."):
        assert failure.message.startswith(expected[:-3]), failure.message
    else:
        assert failure.message == expected


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_a_bad_config_fails_create_cleanly(
    fail: Callable[..., Failure], make_bundle: MakeBundle, container_id: str, case: str
) -> None:
    edit, expected = BAD_CONFIGS[case]
    bundle = make_bundle(["true"], edit=edit)
    assert_message(fail("create", "--bundle", str(bundle), container_id), expected)


@pytest.mark.parametrize("case", ["fs type", "program", "resources"])
def test_a_bad_config_fails_run_cleanly(
    fail: Callable[..., Failure], make_bundle: MakeBundle, container_id: str, case: str
) -> None:
    edit, expected = BAD_CONFIGS[case]
    bundle = make_bundle(["true"], edit=edit)
    assert_message(fail("run", "--bundle", str(bundle), container_id), expected)


def test_console_socket_without_a_terminal(
    fail: Callable[..., Failure], make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    bundle = make_bundle(["true"])
    socket_path = str(tmp_path / "console.sock")
    fail("create", "--console-socket", socket_path, "--bundle", str(bundle), container_id)


def test_malformed_json(
    fail: Callable[..., Failure], make_bundle: MakeBundle, container_id: str
) -> None:
    bundle = make_bundle(["true"])
    (bundle / "config.json").write_text('{"ociVersion": "1.3.0",')
    failure = fail("create", "--bundle", str(bundle), container_id)
    assert failure.message.startswith("config.json: not valid JSON")


def test_json_that_is_not_an_object(
    fail: Callable[..., Failure], make_bundle: MakeBundle, container_id: str
) -> None:
    bundle = make_bundle(["true"])
    (bundle / "config.json").write_text("[1, 2]")
    assert fail("create", "--bundle", str(bundle), container_id).message.startswith("config.json: ")


def test_missing_config_json(
    fail: Callable[..., Failure], tmp_path: Path, container_id: str
) -> None:
    bundle = tmp_path / "empty-bundle"
    bundle.mkdir()
    failure = fail("create", "--bundle", str(bundle), container_id)
    assert "config.json" in failure.message
    assert str(bundle) in failure.message


def test_missing_bundle(fail: Callable[..., Failure], tmp_path: Path, container_id: str) -> None:
    failure = fail("create", "--bundle", str(tmp_path / "nowhere"), container_id)
    assert str(tmp_path / "nowhere") in failure.message


@pytest.mark.parametrize("bad_id", ["a/b", "..", ".", "../escape", "x" * 300, "a b"])
def test_malformed_container_id(
    fail: Callable[..., Failure], make_bundle: MakeBundle, bad_id: str, tmp_path: Path
) -> None:
    bundle = make_bundle(["true"])
    failure = fail("create", "--bundle", str(bundle), bad_id)
    assert failure.message.startswith("invalid container id")
    assert not (tmp_path / "escape").exists()


# -- the state of a container -------------------------------------------------------------


def test_second_create_of_an_id_leaves_the_first_alone(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    create_detached(corral, make_bundle(["true"]), container_id)
    first = corral.state(container_id)
    failure = Failure(
        corral, ["create", "--bundle", str(make_bundle(["true"])), container_id], tmp_path
    )
    failure.assert_one_clean_line()
    assert failure.message == f"container with id exists: {container_id}"
    assert tagged_processes(failure.tag) == []
    assert corral.state(container_id) == first
    assert os.listdir(corral.root) == [container_id]


def test_unknown_signal_changes_nothing(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    create_detached(corral, make_bundle(["sleep", "30"]), container_id)
    corral("start", container_id)
    for signal in ("FOO", "SIGFOO", "65", "RTMIN+99"):
        failure = Failure(corral, ["kill", container_id, signal], tmp_path)
        failure.assert_one_clean_line()
        assert "signal" in failure.message, failure.message
    assert corral.state(container_id)["status"] == "running"


@pytest.mark.parametrize(
    "args", [["start"], ["state"], ["kill"], ["delete"], ["kill", "--all"]], ids=" ".join
)
def test_commands_on_a_missing_container(fail: Callable[..., Failure], args: list[str]) -> None:
    assert fail(*args, "no-such-container").message == "container does not exist"


# -- how errors are reported --------------------------------------------------------------


def test_debug_adds_the_traceback(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    bundle = make_bundle(["true"], edit=append_namespace)
    failure = Failure(
        corral, ["--debug", "create", "--bundle", str(bundle), container_id], tmp_path
    )
    assert failure.result.returncode != 0
    assert "Traceback (most recent call last)" in failure.stderr
    assert 'corral: config.json: linux.namespaces[6].type: unknown namespace "pidx"\n' in (
        failure.stderr
    )
    failure.assert_nothing_left()


def test_debug_traceback_for_an_error_from_the_init(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    bundle = make_bundle(["nosuchprog"])
    failure = Failure(
        corral, ["--debug", "create", "--bundle", str(bundle), container_id], tmp_path
    )
    assert failure.result.returncode != 0
    assert "Traceback (most recent call last)" in failure.stderr
    assert "executable file not found in $PATH" in failure.stderr
    failure.assert_nothing_left()


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_log_file_gets_the_error(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path, log_format: str
) -> None:
    log = tmp_path / "corral.log"
    bundle = make_bundle(["true"], edit=append_namespace)
    args = ["--log", str(log), "--log-format", log_format, "create", "--bundle", str(bundle)]
    failure = Failure(corral, [*args, container_id], tmp_path)
    failure.assert_one_clean_line()
    failure.assert_nothing_left()
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    if log_format == "json":
        entry = json.loads(lines[0])
        assert entry["level"] == "error"
        assert entry["msg"] == failure.message
        assert entry["time"].endswith("Z")
    else:
        assert " level=error " in lines[0]
        assert lines[0].endswith(" msg=" + json.dumps(failure.message))


def test_log_file_gets_errors_from_the_init(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    log = tmp_path / "corral.log"
    bundle = make_bundle(["nosuchprog"])
    args = ["--log", str(log), "--log-format", "json", "create", "--bundle", str(bundle)]
    failure = Failure(corral, [*args, container_id], tmp_path)
    failure.assert_one_clean_line()
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["level"], e["msg"]) for e in entries] == [("error", failure.message)]
