"""A small client of the Kubernetes CRI (``runtime.v1``), as the kubelet calls it.

The kubelet drives containerd's CRI plugin over gRPC; with a RuntimeClass, each
``RunPodSandbox`` names a handler, the containerd runtime entry whose shim runs the
runtime. This client makes those calls so the end-to-end tests can walk a pod through
what the kubelet does, without a kubelet.

Two halves, so that only the transport needs gRPC:

- messages are encoded and decoded here, in the protobuf wire format (varints and
  length-delimited fields; protobuf's "Encoding" guide). A message is a list of
  ``(field number, value)`` pairs: ``str``/``bytes`` are length-delimited, ``int``
  and ``bool`` varints, a list of pairs a nested message. Field numbers are those of
  ``k8s.io/cri-api/pkg/apis/runtime/v1/api.proto``.
- each call runs :mod:`e2e.grpc_call` under the system Python, whose Debian
  ``python3-grpcio`` carries the request bytes to the socket and the answer back. The
  test venv stays free of gRPC.
"""

from __future__ import annotations

import os
import subprocess

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeAlias

    Field: TypeAlias = "tuple[int, str | bytes | int | bool | list[Field]]"
    Decoded: TypeAlias = dict[int, list[int | bytes]]
    Transport: TypeAlias = Callable[[str, str, bytes, float], bytes]

SYSTEM_PYTHON = "/usr/bin/python3"
SERVICE = "/runtime.v1.RuntimeService/"

# NamespaceMode: POD = 0, CONTAINER = 1, NODE = 2, TARGET = 3.
POD, CONTAINER, NODE = 0, 1, 2
# ContainerState: CREATED = 0, RUNNING = 1, EXITED = 2, UNKNOWN = 3.
CONTAINER_STATES = {0: "created", 1: "running", 2: "exited", 3: "unknown"}


CNI_PLUGINS = "/usr/lib/cni"  # Debian's containernetworking-plugins (podman needs it)


def pod_network_config(base: str) -> str:
    """A CNI network list for pods with a network of their own: a veth pair to the host
    (``ptp``), an address from ``host-local``, no masquerading, so nothing is added to
    the host's firewall and nothing outlives the pod but the IPAM files under ``base``."""
    return (
        '{"cniVersion": "0.4.0", "name": "corral-e2e", "plugins": [{"type": "ptp", '
        '"ipMasq": false, "ipam": {"type": "host-local", "subnet": "10.222.0.0/24", '
        f'"dataDir": "{base}/ipam"}}}}]}}\n'
    )


def containerd_config(base: str, runtimes: dict[str, str], sandbox_image: str) -> str:
    """containerd's config.toml: the defaults, and for its CRI plugin (what the kubelet
    talks to) one runtime entry per ``runtimes`` name (the handler a RuntimeClass
    names) whose shim runs the path, as docs/clients.md tells users to write it.

    - ``sandbox_image``: a local pause image, as no registry is reachable;
    - ``restrict_oom_score_adj``: containerd gives a pod sandbox an oom_score_adj of
      -998, which needs CAP_SYS_RESOURCE; the test machines' root lacks it, and runc and
      corral alike fail to lower the score. This clamps it to containerd's own, as for
      rootless use;
    - CNI: the plugins of Debian's containernetworking-plugins, and the network list
      the caller writes to ``<base>/cni-conf`` (:func:`pod_network_config`); pods with
      ``hostNetwork: true`` need none.
    """
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    lines = [
        "version = 2",
        f"[{cri}]",
        f'  sandbox_image = "{sandbox_image}"',
        "  restrict_oom_score_adj = true",
        f"[{cri}.cni]",
        f'  bin_dir = "{CNI_PLUGINS}"',
        f'  conf_dir = "{base}/cni-conf"',
        f"[{cri}.containerd]",
        f'  default_runtime_name = "{next(iter(runtimes), "runc")}"',
    ]
    for name, path in runtimes.items():
        lines += [
            f"[{cri}.containerd.runtimes.{name}]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"[{cri}.containerd.runtimes.{name}.options]",
            f'  BinaryName = "{path}"',
        ]
    return "\n".join(lines) + "\n"


def grpc_missing() -> str | None:
    """Why the CRI tests cannot run here, or None."""
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import grpc"], capture_output=True, check=False, timeout=30
    )
    if probe.returncode != 0:
        return f"{SYSTEM_PYTHON} cannot import grpc (Debian's python3-grpcio)"
    return None


# -- the wire format -------------------------------------------------------------------


def _varint(number: int) -> bytes:
    if number < 0:
        number += 1 << 64  # int64: two's complement in ten bytes
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(fields: list[Field]) -> bytes:
    """A message's bytes; fields in the order given (repeated ones repeat the number)."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, bool | int):
            out += _varint(number << 3) + _varint(int(value))
            continue
        if isinstance(value, str):
            payload = value.encode()
        elif isinstance(value, bytes):
            payload = value
        else:
            payload = encode(value)
        out += _varint(number << 3 | 2) + _varint(len(payload)) + payload
    return bytes(out)


def decode(data: bytes) -> Decoded:
    """A message's fields by number: varints as ints, length-delimited ones as bytes
    (decode those again for a nested message)."""
    fields: Decoded = {}
    position = 0

    def varint() -> int:
        nonlocal position
        value = shift = 0
        while True:
            byte = data[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while position < len(data):
        key = varint()
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == 0:
            value = varint()
        elif wire_type == 2:
            length = varint()
            value = data[position : position + length]
            position += length
        elif wire_type == 1:
            value = int.from_bytes(data[position : position + 8], "little")
            position += 8
        elif wire_type == 5:
            value = int.from_bytes(data[position : position + 4], "little")
            position += 4
        else:
            raise ValueError(f"field {number}: unknown wire type {wire_type}")
        fields.setdefault(number, []).append(value)
    return fields


def text(fields: Decoded, number: int) -> str:
    value = fields.get(number, [b""])[0]
    assert isinstance(value, bytes), (number, value)
    return value.decode()


def number(fields: Decoded, field: int) -> int:
    value = fields.get(field, [0])[0]
    assert isinstance(value, int), (field, value)
    return value if value < 1 << 63 else value - (1 << 64)


# -- the calls -------------------------------------------------------------------------


def _pair(key: str, value: str) -> list[Field]:
    return [(1, key), (2, value)]


class CriError(Exception):
    """A call that failed: gRPC's status code and message."""


def call_through_helper(socket: str, method: str, request: bytes, timeout: float) -> bytes:
    """One call by :mod:`e2e.grpc_call` under the system Python."""
    helper = os.path.join(os.path.dirname(__file__), "grpc_call.py")
    result = subprocess.run(
        [SYSTEM_PYTHON, "-I", helper, socket, method, str(timeout)],
        input=request,
        capture_output=True,
        timeout=timeout + 30,
        check=False,
    )
    if result.returncode != 0:
        raise CriError(f"{method}: {result.stderr.decode().strip()}")
    return result.stdout


class Cri:
    """The RuntimeService of the containerd listening on ``socket``.

    ``transport(socket, method, request, timeout)`` carries one call's bytes; by
    default :func:`call_through_helper`. The benchmark, which runs under a Python with
    gRPC, passes one that calls in-process, so that no interpreter start is timed.
    """

    def __init__(self, socket: str, transport: Transport = call_through_helper) -> None:
        self.socket = socket
        self.transport = transport

    def call(self, method: str, request: list[Field], timeout: float = 60) -> Decoded:
        return decode(self.transport(self.socket, SERVICE + method, encode(request), timeout))

    def run_pod_sandbox(self, config: list[Field], handler: str) -> str:
        """The pod :meth:`sandbox_config` describes, run with ``handler``; its id."""
        return text(self.call("RunPodSandbox", [(1, config), (2, handler)]), 1)

    @staticmethod
    def sandbox_config(
        name: str, log_directory: str, cgroup_parent: str = "", *, host_network: bool = True
    ) -> list[Field]:
        """A pod on the host's network (no CNI needed) or on its own (set up by CNI),
        with its own pid and ipc namespaces, under ``cgroup_parent`` (the kubelet's
        ``/kubepods/...``)."""
        metadata: list[Field] = [(1, name), (2, f"uid-{name}"), (3, "corral-e2e"), (4, 0)]
        namespaces: list[Field] = [(1, NODE if host_network else POD)]
        linux: list[Field] = [(2, [(1, namespaces)])]
        if cgroup_parent:
            linux.insert(0, (1, cgroup_parent))
        config: list[Field] = [(1, metadata), (3, log_directory), (8, linux)]
        if not host_network:
            # The kubelet sets a hostname only for a pod with its own network: a
            # host-network pod shares the node's UTS namespace too.
            config.insert(1, (2, name))
        return config

    def create_container(
        self,
        pod: str,
        sandbox_config: list[Field],
        name: str,
        image: str,
        command: list[str],
        *,
        envs: dict[str, str] | None = None,
        working_dir: str = "",
        memory_limit: int = 0,
        run_as_user: int | None = None,
        readonly_rootfs: bool = False,
        share_process_namespace: bool = False,
        runtime_default_seccomp: bool = False,
        host_network: bool = True,
    ) -> str:
        """A container in ``pod``, its id; ``command`` replaces the image's."""
        # As the kubelet asks: the node's network or the pod's, a pid namespace of the
        # container's own (the pod's with shareProcessNamespace), the pod's ipc namespace.
        namespaces: list[Field] = [
            (1, NODE if host_network else POD),
            (2, POD if share_process_namespace else CONTAINER),
        ]
        security: list[Field] = [(3, namespaces), (7, readonly_rootfs)]
        if runtime_default_seccomp:
            # seccompProfile: {type: RuntimeDefault}; ProfileType RuntimeDefault is 0,
            # so the SecurityProfile message is present and empty.
            security.append((15, []))
        if run_as_user is not None:
            security.append((5, [(1, run_as_user)]))  # Int64Value{value = 1}
        linux: list[Field] = [(2, security)]
        if memory_limit:
            linux.insert(0, (1, [(4, memory_limit)]))
        config: list[Field] = [
            (1, [(1, name), (2, 0)]),
            (2, [(1, image)]),
            *((3, word) for word in command),
            *([(5, working_dir)] if working_dir else []),
            *((6, _pair(key, value)) for key, value in (envs or {}).items()),
            (11, f"{name}.log"),
            (15, linux),
        ]
        request: list[Field] = [
            (1, pod),
            (2, config),
            (3, sandbox_config),
        ]
        return text(self.call("CreateContainer", request), 1)

    def start_container(self, container: str) -> None:
        self.call("StartContainer", [(1, container)])

    def exec_sync(self, container: str, command: list[str]) -> tuple[int, str, str]:
        """Exit code, stdout and stderr of ``command`` run in the container."""
        response = self.call("ExecSync", [(1, container), *((2, word) for word in command)])
        return number(response, 3), text(response, 1), text(response, 2)

    def container_status(self, container: str) -> tuple[str, int]:
        """The container's state (created, running, exited) and exit code."""
        status = self.call("ContainerStatus", [(1, container)])
        nested = status.get(1, [b""])[0]
        assert isinstance(nested, bytes)
        fields = decode(nested)
        return CONTAINER_STATES[number(fields, 3)], number(fields, 7)

    def update_memory_limit(self, container: str, limit: int) -> None:
        """UpdateContainerResources (the kubelet's in-place resize): the shim calls the
        runtime's ``update --resources -``."""
        self.call("UpdateContainerResources", [(1, container), (2, [(4, limit)])])

    def stop_container(self, container: str, timeout: int) -> None:
        self.call("StopContainer", [(1, container), (2, timeout)], timeout=timeout + 30)

    def remove_container(self, container: str) -> None:
        self.call("RemoveContainer", [(1, container)])

    def stop_pod_sandbox(self, pod: str) -> None:
        self.call("StopPodSandbox", [(1, pod)])

    def remove_pod_sandbox(self, pod: str) -> None:
        self.call("RemovePodSandbox", [(1, pod)])
