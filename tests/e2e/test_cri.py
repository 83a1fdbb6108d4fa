"""Kubernetes' path: a pod through containerd's CRI plugin, with the runtime as handler.

The kubelet never calls the runtime: it asks containerd's CRI plugin for a pod sandbox
with the handler its RuntimeClass names (``RunPodSandbox``), then for containers in it
(``CreateContainer``, ``StartContainer``), runs probes and ``kubectl exec`` as
``ExecSync``, and stops and removes them. These tests make those calls (:mod:`e2e.cri`)
with the handler of the runtime under test, the ``BinaryName`` runtime entry that
docs/clients.md asks users to add, and check what a pod sees. Each runs with corral and
with runc. Most pods use the host's network (``hostNetwork: true``); one has its own,
set up by Debian's CNI plugins (``ptp``), as a pod usually has.

The runtime's own state proves which runtime ran the pod: the shim calls it with
``--root /run/containerd/runc/k8s.io``, and only that runtime's ``state`` finds the
container there.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from e2e.clients import IMAGE, host_memory_limit
from e2e.cri import CNI_PLUGINS, Cri

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any

SHIM_ROOT = "/run/containerd/runc/k8s.io"


class Pod:
    """A pod sandbox made with ``handler``, and helpers for containers in it."""

    def __init__(
        self,
        cri: Cri,
        handler: str,
        log_directory: str,
        cgroup_parent: str,
        host_network: bool = True,
    ) -> None:
        self.cri = cri
        self.name = f"pod-{uuid.uuid4().hex[:8]}"
        self.log_directory = log_directory
        self.cgroup_parent = cgroup_parent
        self.host_network = host_network
        self.logs: dict[str, str] = {}
        self.config = cri.sandbox_config(
            self.name, log_directory, cgroup_parent, host_network=host_network
        )
        self.id = cri.run_pod_sandbox(self.config, handler)

    def container(self, command: list[str], **options: Any) -> str:
        """A started container running ``command``; its id."""
        name = f"c-{uuid.uuid4().hex[:6]}"
        options.setdefault("host_network", self.host_network)
        container = self.cri.create_container(self.id, self.config, name, IMAGE, command, **options)
        self.cri.start_container(container)
        self.logs[container] = os.path.join(self.log_directory, f"{name}.log")
        return container

    def remove(self) -> None:
        self.cri.stop_pod_sandbox(self.id)
        self.cri.remove_pod_sandbox(self.id)


def _pod(cri: Cri, runtime: str, tmp_path: Path, host_network: bool) -> Iterator[Pod]:
    """A pod run with the runtime's handler (the config names its entries so), under a
    cgroup parent as the kubelet's cgroupfs driver gives one (``/kubepods/...``)."""
    handler = os.path.basename(runtime)
    parent = f"/corral-e2e-kubepods/pod{uuid.uuid4().hex[:8]}"
    made = Pod(cri, handler, str(tmp_path), parent, host_network)
    try:
        yield made
    finally:
        made.remove()  # removes its containers too
        _remove_cgroup_parent(parent)


@pytest.fixture
def pod(cri: Cri, runtime: str, tmp_path: Path) -> Iterator[Pod]:
    """A pod on the host's network (``hostNetwork: true``)."""
    yield from _pod(cri, runtime, tmp_path, host_network=True)


@pytest.fixture
def networked_pod(cri: Cri, runtime: str, tmp_path: Path) -> Iterator[Pod]:
    """A pod with a network namespace of its own, which containerd creates and CNI sets
    up before the runtime runs the sandbox in it (its path in ``linux.namespaces``)."""
    if not os.access(os.path.join(CNI_PLUGINS, "ptp"), os.X_OK):
        pytest.skip(f"no ptp CNI plugin in {CNI_PLUGINS} (containernetworking-plugins)")
    yield from _pod(cri, runtime, tmp_path, host_network=False)


def _remove_cgroup_parent(parent: str) -> None:
    """The kubelet's part: the runtimes leave a pod's parent cgroups to their owner."""
    top = parent.strip("/").split("/")[0]
    mounts = ["/sys/fs/cgroup"] + [
        f"/sys/fs/cgroup/{name}" for name in os.listdir("/sys/fs/cgroup")
    ]
    for mount in mounts:
        for path in (mount + parent, f"{mount}/{top}"):
            try:
                os.rmdir(path)
            except OSError:
                pass


def cgroup_paths(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cgroup") as table:
        return [line.rstrip("\n").split(":", 2)[2] for line in table]


def runtime_state(runtime: str, container: str) -> dict[str, Any]:
    """The container as the runtime that runs it reports it (``state``)."""
    result = subprocess.run(
        [runtime, "--root", SHIM_ROOT, "state", container],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    state: dict[str, Any] = json.loads(result.stdout)
    return state


def wait_for_exit(cri: Cri, container: str, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        state, code = cri.container_status(container)
        if state == "exited":
            return code
        assert time.monotonic() < deadline, f"{container} still {state}"
        time.sleep(0.1)


def test_pod_runs_execs_and_stops_with_the_handlers_runtime(
    pod: Pod, cri: Cri, runtime: str
) -> None:
    sandbox = runtime_state(runtime, pod.id)
    assert sandbox["status"] == "running"
    script = 'trap "exit 0" TERM; echo started; while true; do sleep 0.1; done'
    container = pod.container(["sh", "-c", script], envs={"GREETING": "hello"}, working_dir="/tmp")
    assert cri.container_status(container) == ("running", 0)
    assert runtime_state(runtime, container)["status"] == "running"

    # kubectl exec and exec probes are ExecSync: the runtime's exec, attached.
    code, out, err = cri.exec_sync(container, ["sh", "-c", 'echo "$GREETING" $(pwd); exit 3'])
    assert (code, out, err) == (3, "hello /tmp\n", "")
    code, out, err = cri.exec_sync(container, ["sh", "-c", "echo oops >&2"])
    assert (code, out, err) == (0, "", "oops\n")
    # The container's own pid namespace, with the kubelet's namespace options.
    code, out, _ = cri.exec_sync(container, ["cat", "/proc/1/cmdline"])
    assert out.split("\0")[:2] == ["sh", "-c"]

    # StopContainer: SIGTERM through the runtime's kill; the trap exits 0.
    cri.stop_container(container, timeout=10)
    assert wait_for_exit(cri, container) == 0
    with open(pod.logs[container]) as lines:
        assert "started" in lines.read()  # the CRI log format: time stream tag message
    cri.remove_container(container)


def test_exit_code_of_a_container(pod: Pod, cri: Cri) -> None:
    container = pod.container(["sh", "-c", "exit 7"])
    assert wait_for_exit(cri, container) == 7


def test_security_context_memory_limit_and_resize(pod: Pod, cri: Cri, runtime: str) -> None:
    limit = 48 * 1024 * 1024
    container = pod.container(
        ["sleep", "60"], run_as_user=65534, readonly_rootfs=True, memory_limit=limit
    )
    code, out, _ = cri.exec_sync(container, ["id", "-u"])
    assert (code, out) == (0, "65534\n")
    code, _, err = cri.exec_sync(container, ["touch", "/file"])
    assert code != 0
    assert "Read-only file system" in err
    pid = runtime_state(runtime, container)["pid"]
    assert host_memory_limit(pid) == limit
    cri.update_memory_limit(container, 2 * limit)
    assert host_memory_limit(pid) == 2 * limit
    # Placed where the kubelet's cgroupfs driver expects: <parent>/<container id>.
    assert f"{pod.cgroup_parent}/{container}" in cgroup_paths(pid)


def test_share_process_namespace(pod: Pod, cri: Cri) -> None:
    """shareProcessNamespace: the container joins the sandbox's pid namespace (the
    runtime's ``linux.namespaces`` entry with a ``path``), whose pid 1 is the pause."""
    container = pod.container(["sleep", "60"], share_process_namespace=True)
    code, out, _ = cri.exec_sync(container, ["cat", "/proc/1/cmdline"])
    assert (code, out.split("\0")[:2]) == (0, ["sleep", "2147483647"])


def test_runtime_default_seccomp(pod: Pod, cri: Cri) -> None:
    """``seccompProfile: RuntimeDefault``: containerd writes its default profile into
    ``linux.seccomp``, and the runtime loads it (Seccomp: 2 is filter mode, proc(5));
    a container without one runs unfiltered."""
    confined = pod.container(["sleep", "60"], runtime_default_seccomp=True)
    unconfined = pod.container(["sleep", "60"])
    for container, mode in ((confined, "2"), (unconfined, "0")):
        code, out, _ = cri.exec_sync(container, ["cat", "/proc/1/status"])
        assert code == 0
        assert f"Seccomp:\t{mode}" in out.splitlines()
    # unshare(2) needs no capability for a user namespace, but containerd's default
    # profile allows it only to a container with CAP_SYS_ADMIN.
    code, _, err = cri.exec_sync(confined, ["unshare", "-U", "true"])
    assert code != 0
    assert "Operation not permitted" in err
    assert cri.exec_sync(unconfined, ["unshare", "-U", "true"])[0] == 0


def test_pod_with_its_own_network_and_hostname(networked_pod: Pod, cri: Cri, runtime: str) -> None:
    """The usual Kubernetes pod: the sandbox in the network namespace CNI set up, with
    the pod's hostname; each container joins the sandbox's network, UTS and ipc
    namespaces by path."""
    pod = networked_pod
    container = pod.container(["sleep", "60"])
    assert cri.exec_sync(container, ["hostname"])[:2] == (0, pod.name + "\n")
    code, out, _ = cri.exec_sync(container, ["cat", "/proc/net/dev"])
    assert code == 0
    assert "eth0:" in out  # ptp's end of the veth pair
    sandbox_pid = runtime_state(runtime, pod.id)["pid"]
    container_pid = runtime_state(runtime, container)["pid"]
    for kind in ("net", "uts", "ipc"):
        shared = os.readlink(f"/proc/{container_pid}/ns/{kind}")
        assert shared == os.readlink(f"/proc/{sandbox_pid}/ns/{kind}"), kind
        assert shared != os.readlink(f"/proc/self/ns/{kind}"), kind
    assert os.readlink(f"/proc/{container_pid}/ns/pid") != os.readlink(
        f"/proc/{sandbox_pid}/ns/pid"
    )
