"""Hooks: parsing ``hooks`` of config.json, and running hooks as real programs.

The hooks run here are small sh scripts that record what they were given (argv, the
environ the kernel holds for them, stdin, cwd) into files the test then reads.
"""

from __future__ import annotations

import os
import stat
import sys
import time

import pytest

from corral.core import jsonio
from corral.core.hooks import KEEP, HookError, run_hook, run_hooks
from corral.errors import ConfigError, CreateError
from corral.spec.hooks import Hook, Hooks, parse_hooks
from corral.spec.reader import Fields

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the hook's /proc/<pid> files"
)

STATE: dict[str, Any] = {
    "ociVersion": "1.3.0",
    "id": "web-1",
    "status": "created",
    "pid": 4242,
    "bundle": "/srv/bundles/web-1",
    "annotations": {"com.example.key": "välue"},
}


# --- parsing ---------------------------------------------------------------------


def parse(document: object) -> Hooks:
    return parse_hooks(Fields(document, "hooks"))


def config_error(document: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse(document)
    return str(info.value)


def test_parse_every_kind_in_order() -> None:
    hooks = parse(
        {
            "prestart": [{"path": "/usr/bin/fix-mounts", "args": ["fix", "a"], "env": ["k=v"]}],
            "createRuntime": [{"path": "/a"}, {"path": "/b", "timeout": 5}],
            "createContainer": [{"path": "/c"}],
            "startContainer": [{"path": "/d"}],
            "poststart": [{"path": "/e"}],
            "poststop": [{"path": "/f", "args": ["cleanup.sh", "-f"]}],
        }
    )
    first = hooks.prestart[0]
    assert (first.path, first.args, first.env, first.timeout) == (
        "/usr/bin/fix-mounts",
        ["fix", "a"],
        ["k=v"],
        None,
    )
    assert [h.path for h in hooks.create_runtime] == ["/a", "/b"]
    assert [h.timeout for h in hooks.create_runtime] == [None, 5]
    assert [h.path for h in hooks.create_container] == ["/c"]
    assert [h.path for h in hooks.start_container] == ["/d"]
    assert [h.path for h in hooks.poststart] == ["/e"]
    assert hooks.poststop[0].args == ["cleanup.sh", "-f"]
    assert hooks.of("createRuntime") is hooks.create_runtime
    assert hooks.of("poststop") is hooks.poststop
    assert bool(hooks)


def test_absent_hooks_and_unknown_kinds() -> None:
    assert not parse_hooks(None)
    assert parse_hooks(None).poststop == []
    hooks = parse({"postmortem": [{"path": "relative"}], "poststop": None})
    assert not hooks
    with pytest.raises(KeyError):
        hooks.of("postmortem")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"poststop": [{"path": "/ok"}, {"path": "rel/x"}]},
            'hooks.poststop[1].path: "rel/x" is not an absolute path',
        ),
        ({"prestart": [{"path": ""}]}, 'hooks.prestart[0].path: "" is not an absolute path'),
        ({"poststart": [{}]}, "hooks.poststart[0].path: required field is missing"),
        ({"poststart": [{"path": 7}]}, "hooks.poststart[0].path: expected a string, got 7"),
        (
            {"createRuntime": [{"path": "/x", "timeout": 0}]},
            "hooks.createRuntime[0].timeout: 0 is not greater than zero",
        ),
        (
            {"createRuntime": [{"path": "/x", "timeout": -3}]},
            "hooks.createRuntime[0].timeout: -3 is not greater than zero",
        ),
        (
            {"createRuntime": [{"path": "/x", "timeout": "5"}]},
            'hooks.createRuntime[0].timeout: expected an integer, got "5"',
        ),
        (
            {"startContainer": [{"path": "/x", "env": ["A=1", "NOEQUALS"]}]},
            'hooks.startContainer[0].env[1]: "NOEQUALS" is not NAME=value',
        ),
        (
            {"startContainer": [{"path": "/x", "env": ["=value"]}]},
            'hooks.startContainer[0].env[0]: "=value" is not NAME=value',
        ),
        (
            {"createContainer": [{"path": "/x", "args": ["a", 1]}]},
            "hooks.createContainer[0].args[1]: expected a string, got 1",
        ),
        ({"prestart": {"path": "/x"}}, "hooks.prestart: expected an array, got an object"),
        ({"prestart": ["/x"]}, 'hooks.prestart[0]: expected an object, got "/x"'),
    ],
)
def test_parse_errors_name_the_field(document: object, expected: str) -> None:
    assert config_error(document) == "config.json: " + expected


def test_env_values_may_contain_equals_and_be_empty() -> None:
    hooks = parse({"poststart": [{"path": "/x", "env": ["A=b=c", "EMPTY="]}]})
    assert hooks.poststart[0].env == ["A=b=c", "EMPTY="]


# --- running ---------------------------------------------------------------------


def script(directory: Path, name: str, body: str) -> str:
    """Write an executable sh script; return its path."""
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def recorder(directory: Path, name: str = "hook") -> tuple[str, Path]:
    """A hook that records its argv, stdin and cwd into ``<directory>/<name>.out/``."""
    out = directory / f"{name}.out"
    out.mkdir()
    body = (
        f'out="{out}"\n'
        'printf "%s\\n" "$0" "$@" > "$out/argv"\n'
        'cat > "$out/stdin"\n'
        'pwd -P > "$out/cwd"\n'
    )
    if sys.platform.startswith("linux"):
        # The environ the kernel gave the process: sh's own variables (PWD...) are not in it.
        body += 'cat /proc/$$/environ > "$out/environ"\n'
    return script(directory, name, body), out


def test_state_arrives_on_stdin_and_args_are_passed(tmp_path: Path) -> None:
    path, out = recorder(tmp_path)
    run_hook(Hook(path, ["argv0", "one", "two words"], []), STATE, where="w")
    # For a "#!" script the kernel passes the script's path as $0 (binfmt_script).
    assert (out / "argv").read_text().splitlines() == [path, "one", "two words"]
    assert jsonio.loads((out / "stdin").read_bytes()) == STATE


@linux_only
def test_args_zero_is_argv_zero(tmp_path: Path) -> None:
    out = tmp_path / "cmdline"
    command = f'cat /proc/$$/cmdline > "{out}"'
    run_hook(Hook("/bin/sh", ["custom-argv0", "-c", command], []), STATE, where="w")
    assert out.read_bytes().split(b"\0")[:-1] == [b"custom-argv0", b"-c", command.encode()]


def test_without_args_argv_is_the_path(tmp_path: Path) -> None:
    path, out = recorder(tmp_path)
    run_hook(Hook(path, [], []), STATE, where="w")
    assert (out / "argv").read_text().splitlines() == [path]


@linux_only
def test_environment_is_exactly_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_TEST_SECRET", "must-not-leak")
    path, out = recorder(tmp_path)
    run_hook(Hook(path, [], ["A=1", "B=x=y", "A=2", "EMPTY="]), STATE, where="w")
    environ = (out / "environ").read_bytes().split(b"\0")[:-1]
    # A later entry wins, as with runc; the runtime's own environment is not passed on.
    assert sorted(environ) == [b"A=2", b"B=x=y", b"EMPTY="]


@linux_only
def test_no_env_means_an_empty_environment(tmp_path: Path) -> None:
    path, out = recorder(tmp_path)
    run_hook(Hook(path, [], []), STATE, where="w")
    assert (out / "environ").read_bytes() == b""


def test_cwd_is_the_callers_unless_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bundle").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    path, out = recorder(tmp_path)
    run_hooks([Hook(path, [], [])], STATE, kind="createRuntime", cwd=str(tmp_path / "bundle"))
    assert (out / "cwd").read_text().strip() == os.path.realpath(tmp_path / "bundle")
    path, out = recorder(tmp_path, "second")
    run_hooks([Hook(path, [], [])], STATE, kind="createRuntime")
    assert (out / "cwd").read_text().strip() == os.path.realpath(tmp_path / "elsewhere")


def test_missing_cwd_is_reported(tmp_path: Path) -> None:
    path, _ = recorder(tmp_path)
    with pytest.raises(HookError) as info:
        run_hooks([Hook(path, [], [])], STATE, kind="poststart", cwd="/no/such/dir")
    assert str(info.value) == (
        f'hooks.poststart[0] ({path}): cannot change to directory "/no/such/dir": '
        "No such file or directory"
    )


def test_hooks_run_in_order(tmp_path: Path) -> None:
    order = tmp_path / "order"
    hooks = [Hook(script(tmp_path, f"h{n}", f'echo {n} >> "{order}"\n'), [], []) for n in (3, 1, 2)]
    run_hooks(hooks, STATE, kind="prestart")
    assert order.read_text().split() == ["3", "1", "2"]


def test_exit_status_is_an_error_quoting_the_last_stderr_line(tmp_path: Path) -> None:
    path = script(tmp_path, "fails", "echo progress; echo first >&2; echo 'it broke' >&2; exit 3\n")
    with pytest.raises(HookError) as info:
        run_hooks([Hook(path, [], [])], STATE, kind="createRuntime")
    error = info.value
    assert isinstance(error, CreateError)
    assert str(error) == f"hooks.createRuntime[0] ({path}): exit status 3: it broke"
    assert (error.where, error.path, error.reason) == (
        "hooks.createRuntime[0]",
        path,
        "exit status 3",
    )
    assert error.stdout == b"progress\n"
    assert error.stderr == b"first\nit broke\n"


def test_stdout_is_quoted_when_stderr_is_empty(tmp_path: Path) -> None:
    path = script(tmp_path, "fails", "echo 'only on stdout'; exit 1\n")
    with pytest.raises(HookError) as info:
        run_hook(Hook(path, [], []), STATE, where="hooks.poststart[2]")
    assert str(info.value) == f"hooks.poststart[2] ({path}): exit status 1: only on stdout"


def test_silent_failure_has_no_trailing_colon(tmp_path: Path) -> None:
    path = script(tmp_path, "fails", "exit 9\n")
    with pytest.raises(HookError) as info:
        run_hook(Hook(path, [], []), STATE, where="hooks.poststart[0]")
    assert str(info.value) == f"hooks.poststart[0] ({path}): exit status 9"


def test_death_by_signal(tmp_path: Path) -> None:
    path = script(tmp_path, "dies", "kill -KILL $$\n")
    with pytest.raises(HookError) as info:
        run_hook(Hook(path, [], []), STATE, where="hooks.prestart[0]")
    assert str(info.value) == f"hooks.prestart[0] ({path}): killed by SIGKILL"


def test_missing_executable(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-hook")
    with pytest.raises(HookError) as info:
        run_hook(Hook(missing, [], []), STATE, where="hooks.createRuntime[0]")
    assert str(info.value) == (
        f"hooks.createRuntime[0] ({missing}): cannot execute: No such file or directory"
    )


def test_file_without_execute_bits(tmp_path: Path) -> None:
    # execve(2) needs an x bit even for root (EACCES).
    path = tmp_path / "plain"
    path.write_text("#!/bin/sh\n")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with pytest.raises(HookError) as info:
        run_hook(Hook(str(path), [], []), STATE, where="w")
    assert str(info.value) == f"w ({path}): cannot execute: Permission denied"


def test_timeout_kills_the_hook_and_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    path = script(tmp_path, "slow", f'sleep 30 &\necho $! > "{pid_file}"\nwait\n')
    started = time.monotonic()
    with pytest.raises(HookError) as info:
        run_hook(Hook(path, [], [], timeout=1), STATE, where="hooks.poststart[0]")
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 5
    assert str(info.value) == (
        f"hooks.poststart[0] ({path}): did not finish within 1 s, killed with SIGKILL"
    )
    assert_gone(int(pid_file.read_text()))


def assert_gone(pid: int) -> None:
    """The process no longer runs (it may linger as a zombie of a lazy init)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if sys.platform.startswith("linux"):
            with open(f"/proc/{pid}/stat") as file:
                if file.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        time.sleep(0.02)
    os.kill(pid, 9)
    pytest.fail(f"process {pid} survived")


def test_a_quick_hook_is_not_slowed_by_the_timeout(tmp_path: Path) -> None:
    path, out = recorder(tmp_path)
    started = time.monotonic()
    run_hook(Hook(path, [], [], timeout=30), STATE, where="w")
    assert time.monotonic() - started < 2
    assert jsonio.loads((out / "stdin").read_bytes()) == STATE


def test_a_hook_leaving_a_daemon_on_its_pipes_returns(tmp_path: Path) -> None:
    # The background sleep inherits stdout and stderr: waiting for their end of file
    # would take 30 s. The hook itself exits at once, and so does run_hook.
    pid_file = tmp_path / "daemon.pid"
    path = script(tmp_path, "forks", f'sleep 30 &\necho $! > "{pid_file}"\n')
    started = time.monotonic()
    try:
        run_hook(Hook(path, [], []), STATE, where="w")
        assert time.monotonic() - started < 2
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), 9)


def test_hook_that_ignores_a_large_state(tmp_path: Path) -> None:
    state = dict(STATE, annotations={"big": "x" * 1_000_000})
    path = script(tmp_path, "ignores", "exit 0\n")
    run_hook(Hook(path, [], []), state, where="w")  # EPIPE on its stdin is no failure


def test_hook_that_reads_a_large_state(tmp_path: Path) -> None:
    state = dict(STATE, annotations={"big": "x" * 1_000_000})
    path, out = recorder(tmp_path)
    run_hook(Hook(path, [], []), state, where="w")
    assert jsonio.loads((out / "stdin").read_bytes()) == state


def test_output_kept_is_bounded(tmp_path: Path) -> None:
    path = script(
        tmp_path,
        "noisy",
        "i=0; while [ $i -lt 2000 ]; do echo 'line of noise line of noise' >&2; "
        "i=$((i+1)); done\necho 'the real error' >&2\nexit 1\n",
    )
    with pytest.raises(HookError) as info:
        run_hook(Hook(path, [], []), STATE, where="w")
    assert len(info.value.stderr) == KEEP
    assert info.value.stderr.endswith(b"the real error\n")
    assert str(info.value).endswith(": exit status 1: the real error")


def test_successful_output_is_not_passed_through(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = script(tmp_path, "chatty", "echo to-stdout; echo to-stderr >&2\n")
    run_hook(Hook(path, [], []), STATE, where="w")
    captured = capfd.readouterr()
    assert "to-stdout" not in captured.out
    assert "to-stderr" not in captured.err


@linux_only
def test_no_descriptor_of_the_runtime_leaks(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    fd = os.open(marker, os.O_CREAT | os.O_WRONLY, 0o600)
    leaked = os.dup2(fd, 77)  # inheritable, as a descriptor passed to the init would be
    os.close(fd)
    out = tmp_path / "fds"
    path = script(tmp_path, "fds", f'ls /proc/$$/fd > "{out}"\n')
    try:
        run_hook(Hook(path, [], []), STATE, where="w")
    finally:
        os.close(leaked)
    assert "77" not in out.read_text().split()


@linux_only
def test_signals_are_not_ignored_in_the_hook(tmp_path: Path) -> None:
    out = tmp_path / "status"
    # exec: cat reads its own status, as inherited; dash blocks signals while it forks.
    path = script(tmp_path, "sigs", f'exec cat /proc/self/status > "{out}"\n')
    run_hook(Hook(path, [], []), STATE, where="w")
    fields = dict(line.split(":\t", 1) for line in out.read_text().splitlines())
    ignored = int(fields["SigIgn"], 16)
    assert not ignored & (1 << (13 - 1)), "SIGPIPE is still ignored"  # Python ignores it
    assert int(fields["SigBlk"], 16) == 0


def test_warn_reports_each_failure_and_runs_the_rest(tmp_path: Path) -> None:
    order = tmp_path / "order"
    hooks = [
        Hook(script(tmp_path, "a", f'echo a >> "{order}"; exit 1\n'), [], []),
        Hook(str(tmp_path / "missing"), [], []),
        Hook(script(tmp_path, "c", f'echo c >> "{order}"\n'), [], []),
    ]
    warnings: list[str] = []
    run_hooks(hooks, STATE, kind="poststop", warn=warnings.append)
    assert order.read_text().split() == ["a", "c"]
    assert warnings == [
        f"hooks.poststop[0] ({hooks[0].path}): exit status 1",
        f"hooks.poststop[1] ({hooks[1].path}): cannot execute: No such file or directory",
    ]


def test_without_warn_the_first_failure_stops_the_list(tmp_path: Path) -> None:
    order = tmp_path / "order"
    hooks = [
        Hook(script(tmp_path, "a", f'echo a >> "{order}"\n'), [], []),
        Hook(script(tmp_path, "b", f'echo b >> "{order}"; exit 2\n'), [], []),
        Hook(script(tmp_path, "c", f'echo c >> "{order}"\n'), [], []),
    ]
    with pytest.raises(HookError, match=r"^hooks\.createContainer\[1\] "):
        run_hooks(hooks, STATE, kind="createContainer")
    assert order.read_text().split() == ["a", "b"]


def test_no_hooks_is_a_no_op() -> None:
    run_hooks([], STATE, kind="poststart")


def own_children() -> set[int] | None:
    """This process's children (proc(5), ``/proc/<pid>/task/<tid>/children``), zombies
    included; None where the kernel does not say."""
    found: set[int] = set()
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as listed:
                found.update(int(word) for word in listed.read().split())
        except FileNotFoundError:
            return None
    return found


def test_run_hooks_leaves_no_child_and_no_descriptor(tmp_path: Path) -> None:
    before = sorted(os.listdir("/dev/fd")) if os.path.isdir("/dev/fd") else []
    # Children another test left to the garbage collector may still be here: only
    # those the hooks would leave count.
    children_before = own_children()
    fails = script(tmp_path, "fails", "exit 4\n")
    succeeds = script(tmp_path, "ok", "cat >/dev/null\n")
    for _ in range(3):
        with pytest.raises(HookError):
            run_hook(Hook(fails, [], [], timeout=5), STATE, where="w")
        run_hook(Hook(succeeds, [], []), STATE, where="w")
    if children_before is not None:
        after = own_children()
        assert after is not None and after <= children_before
    else:
        with pytest.raises(ChildProcessError):
            os.waitpid(-1, os.WNOHANG)
    if before:
        assert sorted(os.listdir("/dev/fd")) == before
