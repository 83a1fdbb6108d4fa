"""corral exec's process record: flags and process.json -> Process, with runc's rules."""

from __future__ import annotations

import json

import pytest

from corral.core.exec_container import check_exec_console, check_exec_status
from corral.core.exec_request import (
    ExecOptions,
    add_capabilities,
    exec_spec,
    inherit_from_config,
    parse_cgroup_flags,
    parse_user,
    process_from_flags,
)
from corral.errors import ConfigError, IllegalStateError, UsageError
from corral.linux.exec import join_order, sub_cgroup_directories

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any


def config() -> dict[str, Any]:
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": True,
            "user": {"uid": 5, "gid": 6, "additionalGids": [7]},
            "args": ["sleep", "100"],
            "env": ["PATH=/bin", "A=1"],
            "cwd": "/work",
            "capabilities": {
                "bounding": ["CAP_KILL"],
                "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL"],
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}],
            "noNewPrivileges": True,
            "oomScoreAdj": 100,
            "apparmorProfile": "container-default",
        },
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
    }


# -- the command-line form ---------------------------------------------------------------


def test_flags_start_from_the_configs_process() -> None:
    spec = exec_spec(ExecOptions(args=["ls", "-l"]), config())
    process = spec.process
    assert process is not None
    assert process.args == ["ls", "-l"]
    assert process.cwd == "/work"
    assert process.env == ["PATH=/bin", "A=1"]
    assert (process.user.uid, process.user.gid, process.user.additional_gids) == (5, 6, [7])
    assert process.no_new_privileges is True
    assert process.oom_score_adj == 100
    assert [(r.type, r.soft, r.hard) for r in process.rlimits] == [("RLIMIT_NOFILE", 10, 20)]
    assert process.capabilities is not None and process.capabilities.bounding == ["CAP_KILL"]
    assert spec.raw["process"]["apparmorProfile"] == "container-default"
    # The container's linux section travels along (seccomp, labels apply to exec too).
    assert spec.linux is not None and spec.linux.namespace("mount") is not None


def test_terminal_is_false_unless_tty_given() -> None:
    # runc: "Always set tty to false, unless explicitly enabled from CLI".
    spec = exec_spec(ExecOptions(args=["sh"]), config())
    assert spec.process is not None and spec.process.terminal is False
    spec = exec_spec(ExecOptions(args=["sh"], tty=True), config())
    assert spec.process is not None and spec.process.terminal is True


def test_env_is_appended_so_a_flag_wins() -> None:
    spec = exec_spec(ExecOptions(args=["sh"], env=["A=2", "B=3"]), config())
    assert spec.process is not None
    assert spec.process.env == ["PATH=/bin", "A=1", "A=2", "B=3"]


def test_cwd_user_groups_labels_override() -> None:
    options = ExecOptions(
        args=["sh"],
        cwd="/tmp",
        user="1000:2000",
        additional_gids=["11", "12"],
        apparmor="other",
        process_label="system_u:system_r:container_t:s0",
    )
    spec = exec_spec(options, config())
    process = spec.process
    assert process is not None
    assert process.cwd == "/tmp"
    assert (process.user.uid, process.user.gid) == (1000, 2000)
    assert process.user.additional_gids == [7, 11, 12]
    assert spec.raw["process"]["apparmorProfile"] == "other"
    assert spec.raw["process"]["selinuxLabel"] == "system_u:system_r:container_t:s0"


def test_user_without_gid_keeps_the_configs_gid() -> None:
    process = exec_spec(ExecOptions(args=["id"], user="42"), config()).process
    assert process is not None and (process.user.uid, process.user.gid) == (42, 6)


def test_no_new_privs_only_when_given() -> None:
    base = config()
    base["process"]["noNewPrivileges"] = False
    assert process_from_flags(ExecOptions(args=["x"]), base)["noNewPrivileges"] is False
    given = process_from_flags(ExecOptions(args=["x"], no_new_privs=True), base)
    assert given["noNewPrivileges"] is True
    off = process_from_flags(ExecOptions(args=["x"], no_new_privs=False), config())
    assert off["noNewPrivileges"] is False


def test_flags_do_not_change_the_config_document() -> None:
    base = config()
    before = json.dumps(base, sort_keys=True)
    process_from_flags(ExecOptions(args=["x"], env=["Z=1"], caps=["CAP_CHOWN"], user="1"), base)
    assert json.dumps(base, sort_keys=True) == before


def test_caps_join_bounding_effective_permitted() -> None:
    sets = add_capabilities(config()["process"]["capabilities"], ["CAP_NET_ADMIN", "CAP_KILL"])
    for name in ("bounding", "effective", "permitted"):
        assert sets[name] == ["CAP_KILL", "CAP_NET_ADMIN"]
    assert "ambient" not in sets  # no inheritable set: the kernel could not raise it


def test_caps_join_ambient_only_where_inheritable() -> None:
    caps = {"inheritable": ["CAP_CHOWN"], "permitted": [], "effective": [], "bounding": []}
    sets = add_capabilities(caps, ["CAP_CHOWN", "CAP_KILL"])
    assert sets["ambient"] == ["CAP_CHOWN"]


def test_caps_without_capabilities_in_config() -> None:
    sets = add_capabilities(None, ["CAP_KILL"])
    assert sets == {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (ExecOptions(), "process args cannot be empty"),
        (ExecOptions(args=["x"], cwd="relative"), '--cwd "relative": not an absolute path'),
        (ExecOptions(args=["x"], env=["NOEQUALS"]), '--env "NOEQUALS"'),
        (ExecOptions(args=["x"], env=["=v"]), '--env "=v"'),
        (ExecOptions(args=["x"], user="root"), "--user \"root\": uid 'root'"),
        (ExecOptions(args=["x"], user="1:g"), "gid 'g'"),
        (ExecOptions(args=["x"], user="-1"), "uid '-1'"),
        (ExecOptions(args=["x"], user="4294967295"), "uid '4294967295'"),
        (ExecOptions(args=["x"], additional_gids=["-3"]), '--additional-gids "-3"'),
        (ExecOptions(args=["x"], caps=["NET_ADMIN"]), '--cap "NET_ADMIN"'),
        (ExecOptions(args=["x"], preserve_fds=-1), "--preserve-fds: -1 is negative"),
    ],
)
def test_bad_flags_name_the_flag(options: ExecOptions, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        exec_spec(options, config())
    assert words in str(caught.value)


def test_parse_user() -> None:
    assert parse_user("0") == (0, None)
    assert parse_user("10:20") == (10, 20)
    with pytest.raises(UsageError):
        parse_user("10:")


def test_a_config_without_process_still_needs_a_cwd() -> None:
    document = {"ociVersion": "1.0.2", "linux": {}}
    with pytest.raises(ConfigError) as caught:
        exec_spec(ExecOptions(args=["x"]), document)
    assert caught.value.path == "process.cwd"


# -- process.json --------------------------------------------------------------------------


def write(tmp_path: Path, document: object) -> str:
    path = tmp_path / "process.json"
    path.write_text(json.dumps(document))
    return str(path)


def test_process_file_is_taken_as_it_is(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "args": ["/bin/echo", "hi"],
            "cwd": "/",
            "env": ["X=1"],
            "user": {"uid": 1, "gid": 2},
            "terminal": False,
            "noNewPrivileges": False,
            "capabilities": {"bounding": ["CAP_CHOWN"]},
        },
    )
    spec = exec_spec(ExecOptions(process_file=path), config())
    process = spec.process
    assert process is not None
    assert process.args == ["/bin/echo", "hi"]
    assert process.env == ["X=1"]  # the config's env is not merged into a process.json
    assert (process.user.uid, process.user.gid, process.user.additional_gids) == (1, 2, [])
    assert process.no_new_privileges is False
    assert process.capabilities is not None and process.capabilities.bounding == ["CAP_CHOWN"]


def test_process_file_inherits_what_it_leaves_out(tmp_path: Path) -> None:
    path = write(tmp_path, {"args": ["true"], "cwd": "/"})
    spec = exec_spec(ExecOptions(process_file=path), config())
    process = spec.process
    assert process is not None
    assert process.capabilities is not None and process.capabilities.permitted == ["CAP_KILL"]
    assert process.no_new_privileges is True
    assert process.oom_score_adj == 100
    assert [r.type for r in process.rlimits] == ["RLIMIT_NOFILE"]
    assert spec.raw["process"]["apparmorProfile"] == "container-default"
    assert process.env == []
    assert process.terminal is False


def test_inherit_keeps_the_files_own_values() -> None:
    merged = inherit_from_config(
        {"rlimits": [{"type": "RLIMIT_CORE", "soft": 0, "hard": 0}], "oomScoreAdj": 5},
        config()["process"],
    )
    assert merged["rlimits"] == [{"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    assert merged["oomScoreAdj"] == 5


def test_process_file_errors_name_the_field_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"args": [], "cwd": "/"})
    with pytest.raises(ConfigError) as caught:
        exec_spec(ExecOptions(process_file=path), config())
    assert caught.value.path == "args"
    assert str(caught.value).startswith(f"{path}: args: ")


def test_process_file_relative_cwd(tmp_path: Path) -> None:
    path = write(tmp_path, {"args": ["true"], "cwd": "tmp"})
    with pytest.raises(ConfigError, match='cwd: "tmp" is not an absolute path'):
        exec_spec(ExecOptions(process_file=path), config())


def test_process_file_bad_user_type(tmp_path: Path) -> None:
    path = write(tmp_path, {"args": ["true"], "cwd": "/", "user": {"uid": "0", "gid": 0}})
    with pytest.raises(ConfigError) as caught:
        exec_spec(ExecOptions(process_file=path), config())
    assert caught.value.path == "user.uid"


def test_process_file_not_json_or_missing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        exec_spec(ExecOptions(process_file=str(bad)), config())
    with pytest.raises(UsageError, match=r"--process .*missing.json: No such file"):
        exec_spec(ExecOptions(process_file=str(tmp_path / "missing.json")), config())
    array = write(tmp_path, [1])
    with pytest.raises(ConfigError, match="expected a process object"):
        exec_spec(ExecOptions(process_file=array), config())


def test_process_file_and_a_command_conflict(tmp_path: Path) -> None:
    path = write(tmp_path, {"args": ["true"], "cwd": "/"})
    with pytest.raises(UsageError, match="cannot both"):
        exec_spec(ExecOptions(process_file=path, args=["ls"]), config())


# -- --cgroup --------------------------------------------------------------------------


def test_cgroup_flags() -> None:
    assert parse_cgroup_flags([]) == {}
    assert parse_cgroup_flags(["sub"]) == {"": "sub"}
    assert parse_cgroup_flags(["cpu,cpuacct:a/b", "memory:m"]) == {
        "cpu": "a/b",
        "cpuacct": "a/b",
        "memory": "m",
    }


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (["a", "b"], "missing <controller>: prefix"),
        (["cpu:a", "cpu:b"], "controller cpu given twice"),
        ([":a"], "empty <controller> prefix"),
        (["cpu,:a"], "empty <controller> prefix"),
        (["cpu:../escape"], "not a sub-cgroup path"),
        (["cpu:"], "not a sub-cgroup path"),
    ],
)
def test_bad_cgroup_flags(values: list[str], words: str) -> None:
    with pytest.raises(UsageError, match="invalid --cgroup") as caught:
        parse_cgroup_flags(values)
    assert words in str(caught.value)


# -- status and console rules -------------------------------------------------------------


def test_status_rules_are_runcs() -> None:
    check_exec_status("running", False)
    check_exec_status("created", False)  # runc execs in a created container too
    check_exec_status("paused", True)
    with pytest.raises(IllegalStateError, match=r"^cannot exec in a stopped container$"):
        check_exec_status("stopped", False)
    with pytest.raises(IllegalStateError, match=r"use --ignore-paused to override\)$"):
        check_exec_status("paused", False)
    with pytest.raises(IllegalStateError, match="creating"):
        check_exec_status("creating", True)


def test_console_rules() -> None:
    check_exec_console(True, "/s", detach=True)
    check_exec_console(True, "", detach=False)
    check_exec_console(False, "", detach=True)
    with pytest.raises(UsageError, match="cannot allocate tty"):
        check_exec_console(True, "", detach=True)
    with pytest.raises(UsageError, match="cannot use console socket"):
        check_exec_console(False, "/s", detach=True)
    with pytest.raises(UsageError, match="cannot use console socket"):
        check_exec_console(True, "/s", detach=False)


# -- the order of setns ---------------------------------------------------------------------


def test_join_order_without_user_namespace() -> None:
    fds = {"mount": 3, "network": 4, "uts": 5, "pid": 6}
    order = join_order(fds, lambda _fd: True)
    assert [name for name, _ in order] == ["uts", "network", "mount"]  # pid is the parent's


def test_join_order_user_namespace_first_for_what_it_owns() -> None:
    fds = {"mount": 3, "network": 4, "user": 5, "ipc": 6, "pid": 7}
    order = join_order(fds, lambda fd: fd != 4)  # the network namespace is the host's child
    assert [name for name, _ in order] == ["network", "user", "ipc", "mount"]
    assert dict(order)["user"] == 5


# -- --cgroup directories -------------------------------------------------------------------

V1 = {"cpu": "/cg/cpu,cpuacct/c", "cpuacct": "/cg/cpu,cpuacct/c", "pids": "/cg/pids/c"}
ROOTS = {"cpu": "/cg/cpu,cpuacct", "cpuacct": "/cg/cpu,cpuacct", "pids": "/cg/pids"}


def test_sub_cgroup_everywhere() -> None:
    found = sub_cgroup_directories(V1, ROOTS, "/cg/unified/c", {"": "/sub/x"})
    assert found == ["/cg/cpu,cpuacct/c/sub/x", "/cg/pids/c/sub/x", "/cg/unified/c/sub/x"]


def test_sub_cgroup_per_controller_moves_its_whole_hierarchy() -> None:
    # cpuacct is mounted with cpu: the process can be in one cgroup of that hierarchy.
    found = sub_cgroup_directories(V1, ROOTS, "/cg/unified/c", {"cpuacct": "s"})
    assert found == ["/cg/cpu,cpuacct/c/s", "/cg/pids/c", "/cg/unified/c"]


def test_sub_cgroup_unknown_controller_or_escape() -> None:
    with pytest.raises(UsageError, match="unknown controller memory"):
        sub_cgroup_directories(V1, ROOTS, None, {"memory": "s"})
    with pytest.raises(UsageError, match="not a sub cgroup path"):
        sub_cgroup_directories(V1, ROOTS, None, {"pids": "a/../.."})
    with pytest.raises(UsageError, match="not a sub cgroup path"):
        sub_cgroup_directories({}, {}, "/cg/unified/c", {"": "."})
