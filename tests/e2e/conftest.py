"""End-to-end fixtures: corral (or runc) as the runtime of a real containerd and podman.

Every test takes the ``runtime`` fixture, parametrized over the runtimes named in
``CORRAL_E2E_RUNTIMES`` (default ``corral,runc``), so a failure with corral can be
compared with the same test passing with runc. Nothing touches the host's own
containerd or podman state:

- containerd runs privately (its own root, state, socket and config) for the session;
  ``ctr --runc-binary`` makes its ``io.containerd.runc.v2`` shim call the runtime
  under test, exactly what a ``BinaryName`` runtime entry in config.toml does.
- Kubernetes goes through the same containerd's CRI plugin: its config has a
  ``BinaryName`` runtime entry per runtime, the handler a RuntimeClass names, and
  :mod:`e2e.cri` makes the kubelet's calls (``RunPodSandbox`` with that handler,
  ``CreateContainer``, ``ExecSync``...) over gRPC.
- podman runs with its own ``--root``/``--runroot``, a private ``containers.conf``
  (cgroupfs manager, file events logger, rlimits this sandbox lets a root process set),
  and ``--runtime <path>``.
- The image is built here from the host's busybox-static: a one-layer OCI archive
  written by :func:`corral.image.ociimage.build_oci_image`, imported into both (and a
  pause image for the pod sandboxes). No registry is needed.

The tests skip (with the reason) when not root or when containerd/podman (or, for the
CRI tests, the system Python's grpc module) are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid

import pytest

from e2e.clients import IMAGE, PAUSE_IMAGE, Ctr, Podman
from e2e.cri import Cri, containerd_config, grpc_missing, pod_network_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

APPLETS = [
    *("sh", "cat", "echo", "env", "id", "hostname", "ls", "mkdir", "pwd", "sleep"),
    *("true", "false", "ps", "grep", "head", "wc", "touch", "rm", "cut", "tr"),
    *("seq", "dd", "kill", "top", "unshare"),
]


def _runtimes() -> list[str]:
    return [
        name for name in os.environ.get("CORRAL_E2E_RUNTIMES", "corral,runc").split(",") if name
    ]


def _skip_reason(*tools: str) -> str | None:
    if not sys.platform.startswith("linux"):
        return "end-to-end tests need Linux"
    if os.geteuid() != 0:
        return "end-to-end tests need root"
    if not os.path.exists("/bin/busybox"):
        return "busybox-static is not installed"
    for tool in tools:
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _runtime_path(name: str) -> str | None:
    """The absolute path of runtime ``name``, None if it is not installed."""
    if name == "corral":
        launcher = os.path.join(os.path.dirname(sys.executable), "corral")
        return launcher if os.access(launcher, os.X_OK) else None
    return shutil.which(name)


@pytest.fixture(params=_runtimes())
def runtime(request: pytest.FixtureRequest) -> str:
    """The absolute path of the runtime binary under test."""
    name: str = request.param
    found = _runtime_path(name)
    if found is None:
        pytest.skip(
            "no installed corral launcher beside this interpreter"
            if name == "corral"
            else f"{name} is not installed"
        )
    return found


def _busybox_rootfs_tar(path: str) -> None:
    """A root filesystem of busybox-static with the applets the tests use."""
    import io

    with tarfile.open(path, "w") as archive:
        for directory in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "home"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            archive.addfile(info)
        archive.add("/bin/busybox", arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            archive.addfile(link)
        for name, text in (
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"),
            ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))


def _oci_archive(work: str, reference: str, command: list[str]) -> str:
    from corral.image.ociimage import build_oci_image

    rootfs_tar = os.path.join(work, "rootfs.tar")
    if not os.path.exists(rootfs_tar):
        _busybox_rootfs_tar(rootfs_tar)
    name, _, tag = reference.rpartition(":")
    output = os.path.join(work, f"{name.rpartition('/')[2]}-oci.tar")
    build_oci_image(
        rootfs_tar, output, name=name, tag=tag, arch="amd64", os="linux", command=command
    )
    return output


@pytest.fixture(scope="session")
def image_archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An OCI image archive of busybox-static with the applets the tests use."""
    return _oci_archive(str(tmp_path_factory.mktemp("image")), IMAGE, ["/bin/sh"])


@pytest.fixture(scope="session")
def pause_archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The pod sandbox's image: the same busybox, sleeping for ever (the part of
    Kubernetes' pause image the tests need: a process holding the pod's namespaces)."""
    work = str(tmp_path_factory.mktemp("pause"))
    return _oci_archive(work, PAUSE_IMAGE, ["sleep", "2147483647"])


@pytest.fixture(scope="session")
def containerd(image_archive: str) -> Iterator[Ctr]:
    reason = _skip_reason("containerd", "ctr")
    if reason:
        pytest.skip(reason)
    # A short path: the socket's name must fit in sun_path (108 bytes).
    base = f"/tmp/corral-e2e-ctrd-{uuid.uuid4().hex[:8]}"
    os.makedirs(base)
    address = f"{base}/containerd.sock"
    config = f"{base}/config.toml"
    with open(config, "w") as file:
        # Its CRI plugin gets a runtime entry per runtime under test (e2e/test_cri.py).
        runtimes = {name: _runtime_path(name) for name in _runtimes()}
        installed = {name: path for name, path in runtimes.items() if path}
        file.write(containerd_config(base, installed, PAUSE_IMAGE))
    os.makedirs(f"{base}/cni-conf")
    with open(f"{base}/cni-conf/10-corral-e2e.conflist", "w") as file:
        file.write(pod_network_config(base))
    # Started through a shell that exits at once, so the daemon is not pytest's child:
    # tests elsewhere check that a process they forked left no child behind.
    started = subprocess.run(
        [
            "sh",
            "-c",
            'containerd --root "$1/root" --state "$1/state" --address "$2" --config "$3"'
            ' </dev/null >"$1/containerd.log" 2>&1 & echo $!',
            "sh",
            base,
            address,
            config,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    daemon = int(started.stdout)
    try:
        for _ in range(100):
            if os.path.exists(address):
                break
            time.sleep(0.05)
        ctr = Ctr(address)
        ctr("images", "import", image_archive, timeout=120)
        yield ctr
    finally:
        _stop(daemon)
        # The shims outlive containerd only while they have tasks; the tests delete theirs.
        subprocess.run(["umount", "-R", f"{base}/state"], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def cri(containerd: Ctr, image_archive: str, pause_archive: str) -> Cri:
    """containerd's CRI service, the two images imported where it looks (``k8s.io``)."""
    reason = grpc_missing()
    if reason:
        pytest.skip(reason)
    k8s = Ctr(containerd.address, namespace="k8s.io")
    for archive in (image_archive, pause_archive):
        k8s("images", "import", archive, timeout=120)
    return Cri(containerd.address)


def _stop(pid: int) -> None:
    """SIGTERM, then SIGKILL after 10 s, a process that is not our child."""
    import signal

    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not os.path.exists(f"/proc/{pid}"):
                return
            time.sleep(0.05)


@pytest.fixture
def ctr_name() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def podman_storage(image_archive: str) -> Iterator[str]:
    """A private podman storage with the busybox image loaded (shared by both runtimes)."""
    reason = _skip_reason("podman", "conmon")
    if reason:
        pytest.skip(reason)
    base = f"/tmp/corral-e2e-podman-{uuid.uuid4().hex[:8]}"
    os.makedirs(f"{base}/tmp")
    with open(f"{base}/containers.conf", "w") as conf:
        # This sandbox caps RLIMIT_NOFILE at 20000 and podman's root defaults
        # (1048576) would fail in any runtime; ask for what a root process may set.
        conf.write(
            "[containers]\n"
            'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
        )
    loader = Podman(base, "runc")
    loader("load", "-i", image_archive, timeout=120)
    try:
        yield base
    finally:
        subprocess.run(
            Podman(base, "runc").command("rm", "-a", "-f"),
            env=loader.env(),
            capture_output=True,
            check=False,
            timeout=120,
        )
        subprocess.run(
            Podman(base, "runc").command("system", "reset", "-f"),
            env=loader.env(),
            capture_output=True,
            check=False,
            timeout=120,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def podman(podman_storage: str, runtime: str) -> Podman:
    return Podman(podman_storage, runtime)
