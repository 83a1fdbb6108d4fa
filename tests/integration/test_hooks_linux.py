"""The six OCI hook kinds on Linux, run through the CLI around busybox containers.

One small sh hook, ``hook.sh KIND OUT``, records into ``OUT/KIND.*`` what it saw: the
state on its stdin, its mount and pid namespaces (``readlink /proc/self/ns/...``), its
working directory, its environment and arguments, and whether it sees the host's
filesystem (a marker file at a host path); it appends KIND to ``OUT/order``. The tests
compare those records with the host's own namespaces and with the container's
(``/proc/<init pid>/ns/...``), and with what config.md and runtime.md require.

The hook directory is also bind-mounted at ``/hooks`` in the container: a
``startContainer`` hook's path resolves in the container, so it is ``/hooks/hook.sh``
there, and what it records lands in the same directory on the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from conftest import create_detached, requires_root, wait_for_status, wait_until

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from conftest import Corral

    MakeBundle = Callable[..., Path]

pytestmark = requires_root

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
CREATE_KINDS = ("prestart", "createRuntime", "createContainer")
IN_CONTAINER = "/hooks"  # where the hook directory is mounted in the container

HOOK = r"""#!/bin/sh
# hook.sh KIND OUT: record what this hook sees into OUT/KIND.*, append KIND to OUT/order.
kind=$1 out=$2
cat > "$out/$kind.state"
readlink /proc/self/ns/mnt > "$out/$kind.mnt"
readlink /proc/self/ns/pid > "$out/$kind.pidns"
pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$out/$kind.state")
if [ -n "$pid" ] && [ -e "/proc/$pid/ns/mnt" ]; then
    readlink "/proc/$pid/ns/mnt" > "$out/$kind.initmnt"
fi
pwd > "$out/$kind.cwd"
if [ -e "$HOST_MARK" ]; then echo host; else echo container; fi > "$out/$kind.root"
env > "$out/$kind.env"
printf '%s\n' "$@" > "$out/$kind.args"
echo "$kind" >> "$out/order"
"""
FAIL = r"""#!/bin/sh
# fail.sh KIND OUT: record like hook.sh, then fail with a message.
"${0%/*}/hook.sh" "$@"
echo "first line" >&2
echo "bad thing" >&2
exit 3
"""
SLOW = """#!/bin/sh
sleep 30
"""


class HookDir:
    """The hooks, and what they recorded, in ``<tmp_path>/hooks``."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "hooks"
        self.out = self.path / "out"
        self.out.mkdir(parents=True)
        self.mark = self.path / "host-mark"  # seen at this path on the host only
        self.mark.write_text("")
        for name, text in (("hook.sh", HOOK), ("fail.sh", FAIL), ("slow.sh", SLOW)):
            (self.path / name).write_text(text)
            (self.path / name).chmod(0o755)

    def entry(self, kind: str, script: str = "hook.sh", **extra: Any) -> dict[str, Any]:
        """The config entry running ``script`` as a hook of ``kind``."""
        base = IN_CONTAINER if kind == "startContainer" else str(self.path)
        entry = {
            "path": f"{base}/{script}",
            "args": [script, kind, base + "/out"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", f"HOST_MARK={self.mark}"],
        }
        entry.update(extra)
        return entry

    def edit(self, hooks: dict[str, list[dict[str, Any]]]) -> Callable[[dict[str, Any]], None]:
        """A make_bundle edit: these hooks, the hook directory at /hooks, annotations."""

        def edit(spec: dict[str, Any]) -> None:
            spec["hooks"] = hooks
            spec["annotations"] = {"org.example.hooks": "yes"}
            spec["mounts"].append(
                {
                    "destination": IN_CONTAINER,
                    "type": "bind",
                    "source": str(self.path),
                    "options": ["rbind", "rw"],
                }
            )

        return edit

    def all_kinds(self) -> Callable[[dict[str, Any]], None]:
        return self.edit({kind: [self.entry(kind)] for kind in KINDS})

    def order(self) -> list[str]:
        path = self.out / "order"
        return path.read_text().split() if path.exists() else []

    def read(self, kind: str, what: str) -> str:
        return (self.out / f"{kind}.{what}").read_text().strip()

    def state(self, kind: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.read(kind, "state"))
        return data


@pytest.fixture
def hook_dir(tmp_path: Path) -> HookDir:
    return HookDir(tmp_path)


def host_ns(kind: str) -> str:
    return os.readlink(f"/proc/self/ns/{kind}")


def processes_in_mount_namespace(ns: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/mnt") == ns:
                    found.append(int(name))
            except OSError:
                continue
    return found


def host_mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as file:
        return [line for line in file if f" {path}" in line]


# -- where and when each kind runs ----------------------------------------------------


def test_each_kind_runs_in_order_in_its_namespace_with_its_state(
    corral: Corral,
    make_bundle: MakeBundle,
    hook_dir: HookDir,
    busybox_rootfs: Path,
    container_id: str,
) -> None:
    bundle = make_bundle(["sleep", "30"], edit=hook_dir.all_kinds())
    create_detached(corral, bundle, container_id)
    assert hook_dir.order() == list(CREATE_KINDS)
    pid = corral.state(container_id)["pid"]
    container_mnt = os.readlink(f"/proc/{pid}/ns/mnt")
    container_pidns = os.readlink(f"/proc/{pid}/ns/pid")
    assert container_mnt != host_ns("mnt")

    corral("start", container_id)
    assert hook_dir.order() == [*CREATE_KINDS, "startContainer", "poststart"]
    wait_for_status(corral, container_id, "running")
    corral("kill", container_id, "KILL")
    wait_for_status(corral, container_id, "stopped")
    corral("delete", container_id)
    assert hook_dir.order() == list(KINDS)  # each ran once, in the order config.md lists

    runtime_side = ("prestart", "createRuntime", "poststart", "poststop")
    for kind in runtime_side:
        assert hook_dir.read(kind, "mnt") == host_ns("mnt"), kind
        assert hook_dir.read(kind, "pidns") == host_ns("pid"), kind
        assert hook_dir.read(kind, "root") == "host", kind
        assert hook_dir.read(kind, "cwd") == str(bundle), kind  # runc runs them there
    for kind in ("createContainer", "startContainer"):
        assert hook_dir.read(kind, "mnt") == container_mnt, kind
        assert hook_dir.read(kind, "pidns") == container_pidns, kind
    # createContainer: before pivot_root, so the host's paths, from the rootfs directory;
    # startContainer: inside the container's root, from process.cwd.
    assert hook_dir.read("createContainer", "root") == "host"
    assert hook_dir.read("createContainer", "cwd") == os.path.realpath(busybox_rootfs)
    assert hook_dir.read("startContainer", "root") == "container"
    assert hook_dir.read("startContainer", "cwd") == "/"

    common: dict[str, Any] = {"id": container_id, "bundle": str(bundle)}
    common["annotations"] = {"org.example.hooks": "yes"}
    expected = {
        # The pid as each hook's namespace sees it (runtime.md, "State").
        "prestart": {"status": "creating", "pid": pid},
        "createRuntime": {"status": "creating", "pid": pid},
        "createContainer": {"status": "creating", "pid": 1},
        "startContainer": {"status": "created", "pid": 1},
        "poststart": {"status": "running", "pid": pid},
        "poststop": {"status": "stopped"},
    }
    for kind, fields in expected.items():
        state = hook_dir.state(kind)
        assert isinstance(state.pop("ociVersion"), str), kind
        assert state == {**common, **fields}, kind
    # The runtime's hooks see the init's namespaces already made: it is paused for them.
    assert hook_dir.read("createRuntime", "initmnt") == container_mnt
    assert hook_dir.read("prestart", "initmnt") == container_mnt


def test_run_runs_every_kind_in_order(
    corral: Corral, make_bundle: MakeBundle, hook_dir: HookDir, container_id: str
) -> None:
    bundle = make_bundle(["true"], edit=hook_dir.all_kinds())
    corral("run", "--bundle", str(bundle), container_id, stdin=subprocess.DEVNULL)
    assert hook_dir.order() == list(KINDS)


def test_a_create_runtime_hook_can_configure_the_containers_namespaces(
    corral: Corral, make_bundle: MakeBundle, tmp_path: Path, container_id: str
) -> None:
    # config.md's example use: the hook gets the init's pid and enters its namespaces.
    if not os.path.exists("/usr/bin/nsenter"):
        pytest.skip("nsenter (util-linux) is not installed")
    hook = tmp_path / "name-it.sh"
    hook.write_text(
        "#!/bin/sh\n"
        "pid=$(sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p')\n"
        'exec /usr/bin/nsenter -t "$pid" -u /bin/hostname named-by-hook\n'
    )
    hook.chmod(0o755)

    def edit(spec: dict[str, Any]) -> None:
        del spec["hostname"]  # or the init would set its own after the hook
        spec["hooks"] = {"createRuntime": [{"path": str(hook)}]}

    bundle = make_bundle(["hostname"], edit=edit)
    result = corral("run", "--bundle", str(bundle), container_id, stdin=subprocess.DEVNULL)
    assert result.stdout == "named-by-hook\n"


# -- what a hook is given -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["createRuntime", "createContainer", "startContainer"])
def test_a_hook_gets_exactly_its_args_and_env(
    corral: Corral, make_bundle: MakeBundle, hook_dir: HookDir, kind: str, container_id: str
) -> None:
    entry = hook_dir.entry(kind)
    entry["args"] = [*entry["args"], "two words", ""]
    entry["env"] = [*entry["env"], "GREETING=hello world", "EMPTY="]
    bundle = make_bundle(["true"], edit=hook_dir.edit({kind: [entry]}))
    env = {**os.environ, "CORRAL_TEST_LEAK": "from-the-runtime"}
    corral("run", "--bundle", str(bundle), container_id, stdin=subprocess.DEVNULL, env=env)
    out = entry["args"][2]
    args = (hook_dir.out / f"{kind}.args").read_text()
    assert args.split("\n") == [kind, out, "two words", "", ""]  # one line each
    variables = hook_dir.read(kind, "env").splitlines()
    assert "GREETING=hello world" in variables
    assert "EMPTY=" in variables
    # Neither the runtime's environment nor the container process's.
    assert not [line for line in variables if line.startswith(("CORRAL_TEST_LEAK=", "TERM="))]


def test_a_hook_that_outlives_its_timeout_is_killed_and_fails_create(
    corral: Corral, make_bundle: MakeBundle, hook_dir: HookDir, container_id: str
) -> None:
    slow = hook_dir.entry("createRuntime", "slow.sh", timeout=1)
    bundle = make_bundle(["true"], edit=hook_dir.edit({"createRuntime": [slow]}))
    started = time.monotonic()
    result = corral("create", "--bundle", str(bundle), container_id, check=False)
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"corral: hooks.createRuntime[0] ({slow['path']}): "
        "did not finish within 1 s, killed with SIGKILL"
    ]
    assert os.listdir(corral.root) == []


# -- failures -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CREATE_KINDS)
def test_a_failing_create_hook_fails_create_and_leaves_nothing(
    corral: Corral,
    make_bundle: MakeBundle,
    hook_dir: HookDir,
    busybox_rootfs: Path,
    kind: str,
    container_id: str,
) -> None:
    # A good hook before the failing one, and one after it that must not run.
    hooks = {
        "prestart": [hook_dir.entry("prestart")],
        kind: [hook_dir.entry(kind, "fail.sh")],
        "poststop": [hook_dir.entry("poststop")],
    }
    if kind != "createContainer":
        hooks["createContainer"] = [hook_dir.entry("createContainer")]
    bundle = make_bundle(["true"], edit=hook_dir.edit(hooks))
    result = corral(
        "create", "--bundle", str(bundle), container_id, check=False, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 1
    path = f"{hook_dir.path}/fail.sh"
    assert result.stderr.splitlines() == [
        f"corral: hooks.{kind}[0] ({path}): exit status 3: bad thing"
    ]
    assert hook_dir.order() == (["prestart"] if kind != "prestart" else []) + [kind]
    # No state, no process in the container's mount namespace, no mount on the host.
    assert os.listdir(corral.root) == []
    container_mnt = hook_dir.read(kind, "mnt" if kind == "createContainer" else "initmnt")
    assert container_mnt != host_ns("mnt")
    assert wait_until(lambda: processes_in_mount_namespace(container_mnt) == [])
    assert host_mounts_under(os.path.realpath(busybox_rootfs)) == []
    assert corral("list", "-q").stdout == ""


def test_a_failing_start_container_hook_stops_the_container_before_its_program(
    corral: Corral, make_bundle: MakeBundle, hook_dir: HookDir, container_id: str
) -> None:
    hooks = {
        "startContainer": [hook_dir.entry("startContainer", "fail.sh")],
        "poststart": [hook_dir.entry("poststart")],
    }
    program = ["sh", "-c", f"echo ran > {IN_CONTAINER}/out/program"]
    bundle = make_bundle(program, edit=hook_dir.edit(hooks))
    out = create_detached(corral, bundle, container_id)
    result = corral("start", container_id, check=False)
    # runtime.md step 7: an error, and the container stopped. `start` reports it (runc
    # 1.1's `start` exits 0 here: it returns before its init runs the hooks).
    assert result.returncode == 1
    assert result.stderr == "corral: container init exited before it could be started\n"
    # The init's own message, on the container's stderr as runc's.
    errors = (out.parent / f"{out.name}.err").read_text()
    failed = f"hooks.startContainer[0] ({IN_CONTAINER}/fail.sh): exit status 3: bad thing"
    assert errors == f"corral: {failed}\n"
    wait_for_status(corral, container_id, "stopped")
    assert not (hook_dir.out / "program").exists()
    assert hook_dir.order() == ["startContainer"]  # poststart did not run
    corral("delete", container_id)


def test_failing_poststart_and_poststop_hooks_are_warnings(
    corral: Corral, make_bundle: MakeBundle, hook_dir: HookDir, container_id: str
) -> None:
    hooks = {
        "poststart": [hook_dir.entry("poststart", "fail.sh")],
        "poststop": [hook_dir.entry("poststop", "fail.sh"), hook_dir.entry("poststop-2")],
    }
    hooks["poststop"][1]["args"][1] = "poststop-2"
    bundle = make_bundle(["sleep", "30"], edit=hook_dir.edit(hooks))
    create_detached(corral, bundle, container_id)
    started = corral("start", container_id)
    assert started.stderr == (
        f"corral: warning: hooks.poststart[0] ({hook_dir.path}/fail.sh): exit status 3: bad thing\n"
    )
    assert corral.state(container_id)["status"] == "running"
    deleted = corral("delete", "--force", container_id)
    assert deleted.stderr == (
        f"corral: warning: hooks.poststop[0] ({hook_dir.path}/fail.sh): exit status 3: bad thing\n"
    )
    assert hook_dir.order() == ["poststart", "poststop", "poststop-2"]  # the rest still ran
    assert os.listdir(corral.root) == []
