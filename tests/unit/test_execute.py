"""Program lookup, the environment, and what survives the final execve."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from corral.core.execute import (
    DEFAULT_PATH,
    exec_environment,
    exec_process,
    find_executable,
    resolve_executable,
)
from corral.errors import CreateError
from corral.spec.model import Process, User

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux process semantics")


def make_process(args: list[str], env: list[str], uid: int = 0) -> Process:
    return Process(
        args=args,
        env=env,
        cwd="/",
        terminal=False,
        user=User(uid, 0, None, []),
        rlimits=[],
        capabilities=None,
        no_new_privileges=False,
        oom_score_adj=None,
    )


def write(path: str, text: str = "#!/bin/sh\n", mode: int = 0o755) -> str:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


# -- environment ------------------------------------------------------------------


def test_environment_later_entry_wins_and_values_keep_equals(tmp_path: os.PathLike[str]) -> None:
    env = exec_environment(["A=1", "B=x=y", "A=2", "HOME=/h", "EMPTY="], 0)
    assert env == {"A": "2", "B": "x=y", "HOME": "/h", "EMPTY": ""}


def test_home_comes_from_the_containers_passwd(tmp_path: os.PathLike[str]) -> None:
    passwd = write(
        os.path.join(tmp_path, "passwd"),
        "root:x:0:0:root:/root:/bin/sh\n"
        "broken\n"
        "app:x:1000:1000::/home/app:/bin/sh\n"
        "nohome:x:1001:1001:::/bin/sh\n",
        0o644,
    )
    assert exec_environment([], 1000, passwd)["HOME"] == "/home/app"
    assert exec_environment([], 0, passwd)["HOME"] == "/root"
    assert exec_environment([], 1001, passwd)["HOME"] == "/"
    assert exec_environment([], 4242, passwd)["HOME"] == "/"
    assert exec_environment([], 0, os.path.join(tmp_path, "none"))["HOME"] == "/"


# -- lookup -----------------------------------------------------------------------


def test_search_follows_path_order_and_skips_what_cannot_run(
    tmp_path: os.PathLike[str],
) -> None:
    base = os.fspath(tmp_path)
    for name in ("a", "b", "c", "d"):
        os.mkdir(f"{base}/{name}")
    write(f"{base}/a/prog", mode=0o644)  # not executable
    os.mkdir(f"{base}/b/prog")  # a directory
    write(f"{base}/c/prog")
    write(f"{base}/d/prog")
    search = f"{base}/missing:{base}/a:{base}/b:{base}/c:{base}/d"
    assert find_executable("prog", search) == f"{base}/c/prog"


def test_not_found_uses_runcs_words(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(CreateError) as info:
        find_executable("foo", os.fspath(tmp_path))
    assert str(info.value) == 'exec: "foo": executable file not found in $PATH'


def test_empty_path_entry_is_the_working_directory(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(os.path.join(tmp_path, "here"))
    monkeypatch.chdir(tmp_path)
    assert find_executable("here", "/nonexistent:") == "./here"


def test_name_with_a_slash_is_not_searched(tmp_path: os.PathLike[str]) -> None:
    prog = write(os.path.join(tmp_path, "prog"))
    assert find_executable(prog, "/nonexistent") == prog
    missing = os.path.join(tmp_path, "nope")
    with pytest.raises(CreateError) as info:
        find_executable(missing, "")
    # Lower case, as Go says it: Docker matches "no such file or directory".
    assert str(info.value) == f'exec: "{missing}": stat {missing}: no such file or directory'
    with pytest.raises(CreateError) as info:
        find_executable(os.fspath(tmp_path), "")
    assert str(info.value).endswith(": permission denied")


def test_resolve_uses_the_containers_path_not_ours(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prog = write(os.path.join(tmp_path, "only-here"))
    monkeypatch.setenv("PATH", os.fspath(tmp_path))  # the runtime's PATH: must not count
    with pytest.raises(CreateError, match="executable file not found"):
        resolve_executable(make_process(["only-here"], ["PATH=/nonexistent"]))
    process = make_process(["only-here"], ["PATH=/nonexistent", f"PATH={tmp_path}"])
    assert resolve_executable(process) == prog


def test_default_path_when_the_environment_has_none() -> None:
    assert DEFAULT_PATH == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    found = resolve_executable(make_process(["sh"], ["HOME=/"]))
    assert found.endswith("/sh")
    assert os.path.dirname(found) in DEFAULT_PATH.split(":")


# -- the exec itself, in a forked child -------------------------------------------


def run_child(args: list[str], env: list[str], before_exec: object = None) -> tuple[int, str]:
    """Fork; the child sends its stdout back; exec_process with preserve_fds=1.

    Fd 3 in the child is an inheritable descriptor the caller asked to preserve; fd 10
    is an inheritable one it did not: only fd 3 may reach the program.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(write_fd, 1)
            os.dup2(os.open("/dev/null", os.O_RDONLY), 3)
            os.dup2(os.open("/dev/null", os.O_RDONLY), 10)
            assert os.get_inheritable(10)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            exec_process(make_process(args, env), preserve_fds=1)
        except BaseException as error:
            os.write(2, f"child: {error}\n".encode())
        os._exit(99)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        output = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


def test_signals_are_default_and_unblocked_after_exec() -> None:
    # Python starts with SIGPIPE and SIGXFSZ ignored; the child adds SIGHUP and a mask.
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
    code, output = run_child(["cat", "/proc/self/status"], ["PATH=/usr/bin:/bin"])
    assert code == 0
    fields = dict(line.split(":\t", 1) for line in output.splitlines() if ":\t" in line)
    assert int(fields["SigIgn"], 16) == 0
    assert int(fields["SigBlk"], 16) == 0


def test_only_stdio_and_preserved_fds_reach_the_program() -> None:
    script = "import os; print(*sorted(int(n) for n in os.listdir('/proc/self/fd')))"
    code, output = run_child([sys.executable, "-I", "-S", "-c", script], [])
    assert code == 0
    fds = [int(word) for word in output.split()]
    # 0-2 and the preserved 3, plus the descriptor listdir itself used (the lowest free).
    assert fds[:4] == [0, 1, 2, 3]
    assert 10 not in fds
    assert len(fds) == 5


def test_environment_is_exactly_the_configs() -> None:
    code, output = run_child(["env"], ["PATH=/usr/bin:/bin", "A=1", "A=2", "HOME=/h"])
    assert code == 0
    assert sorted(output.splitlines()) == ["A=2", "HOME=/h", "PATH=/usr/bin:/bin"]


def test_failed_exec_raises_instead_of_returning(tmp_path: os.PathLike[str]) -> None:
    # Executable bit, but not a format the kernel runs. In a child: exec_process resets
    # the signal handlers of whoever calls it, and pytest needs its SIGINT handler.
    prog = write(os.path.join(tmp_path, "garbage"), "\x7fELF nope", 0o755)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            exec_process(make_process([prog], []), preserve_fds=0, executable=prog)
        except CreateError as error:
            os.write(write_fd, str(error).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        message = f.read()
    os.waitpid(pid, 0)
    assert message == f"exec {prog}: exec format error"
