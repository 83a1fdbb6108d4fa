#!/usr/bin/env python3
"""Time corral against runc end to end, as containerd's shim drives them.

How it works: the script starts a private containerd (its own root, state and socket,
an empty config), imports a one-layer busybox image it builds from the host's
busybox-static (with corral's own OCI image writer, so no registry is needed), and then,
round after round, alternating which runtime goes first, times:

- ``ctr-run``: ``ctr run --rm --runc-binary RUNTIME IMAGE ID true``, the wall time of
  the whole client call: snapshot, shim start, the runtime's create/start/delete and
  the task's exit, as a user of containerd sees it;
- ``exec``: ``ctr task exec --exec-id N ID true`` into a long-running task, which is
  the shim calling ``RUNTIME exec --process F --detach --pid-file P`` plus its wait;
- ``pod`` (when this Python has gRPC, Debian's python3-grpcio): what the kubelet asks
  containerd's CRI plugin to start a pod with one container, ``RunPodSandbox`` with
  the runtime's handler, ``CreateContainer`` and ``StartContainer``, timed to the
  started container: two create/start pairs of the runtime, the shim's and containerd's
  work. The calls are made in-process, with the message encoding of
  ``tests/e2e/cri.py``; stopping and removing the pod are not timed.

The statistics and the table come from ``bench/lifecycle.py`` (medians and 90th
percentiles, the corral/runc ratio). Stdlib only; run as root::

    python3 bench/clients.py [--runs N] [--corral PATH] [--runc PATH] [--json]

``--corral`` and ``--runc`` must be paths of executables (the shim runs them itself).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
# tests/e2e/cri.py: the CRI messages, for the pod row.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/tests")

from lifecycle import build_rows, median, ratio, render_table, summarize, table_headers

from e2e.cri import Cri, containerd_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from e2e.cri import Transport

STEPS = ("ctr-run", "exec", "pod")
IMAGE = "localhost/corral-bench/busybox:1"
PAUSE_IMAGE = "localhost/corral-bench/pause:1"
NAMESPACE = "corral-bench"
TIMEOUT_S = 60.0


class Containerd:
    """A private containerd for the benchmark, and ``ctr`` against it."""

    def __init__(self, base: str, runtimes: dict[str, str]) -> None:
        self.base = base
        self.address = os.path.join(base, "containerd.sock")
        config = os.path.join(base, "config.toml")
        with open(config, "w") as file:
            file.write(containerd_config(base, runtimes, PAUSE_IMAGE))
        self.log = open(os.path.join(base, "containerd.log"), "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                *("containerd", "--root", os.path.join(base, "root")),
                *("--state", os.path.join(base, "state"), "--address", self.address),
                *("--config", config),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while not os.path.exists(self.address):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"containerd did not start (see {base}/containerd.log)")
            time.sleep(0.05)

    def ctr(
        self, *args: str, check: bool = True, namespace: str = NAMESPACE
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["ctr", "--address", self.address, "--namespace", namespace, *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {result.stderr.strip()}")
        return result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        subprocess.run(
            ["umount", "-R", os.path.join(self.base, "state")], capture_output=True, check=False
        )


def build_image(workdir: str, reference: str = IMAGE, command: Sequence[str] = ("/bin/sh",)) -> str:
    """A busybox OCI archive (busybox + ``true`` and ``sleep``) whose default command
    is ``command``."""
    from corral.image.ociimage import build_oci_image

    rootfs = os.path.join(workdir, "rootfs.tar")
    with tarfile.open(rootfs, "w") as archive:
        for name in ("bin", "proc", "sys", "dev", "tmp"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        archive.add("/bin/busybox", arcname="bin/busybox")
        for applet in ("sh", "true", "sleep"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            archive.addfile(link)
    name, _, tag = reference.rpartition(":")
    output = os.path.join(workdir, f"{name.rpartition('/')[2]}.tar")
    build_oci_image(rootfs, output, name=name, tag=tag, arch="amd64", os="linux", command=command)
    return output


def grpc_transport() -> Transport | None:
    """An in-process transport for :class:`e2e.cri.Cri`, None without gRPC."""
    try:
        import grpc  # type: ignore[import-untyped]  # the system Python's, without stubs
    except ImportError:
        return None
    channels = {}

    def call(socket: str, method: str, request: bytes, timeout: float) -> bytes:
        if socket not in channels:
            channels[socket] = grpc.insecure_channel("unix://" + socket)
        response: bytes = channels[socket].unary_unary(method)(request, timeout=timeout)
        return response

    return call


def time_pod(cri: Cri, handler: str, name: str, workdir: str) -> float:
    """Seconds from RunPodSandbox to a started container, then the pod removed."""
    config = cri.sandbox_config(name, workdir)
    start = time.perf_counter()
    pod = cri.run_pod_sandbox(config, handler)
    try:
        container = cri.create_container(pod, config, "c", IMAGE, ["sleep", "100000"])
        cri.start_container(container)
        return time.perf_counter() - start
    finally:
        cri.stop_pod_sandbox(pod)
        cri.remove_pod_sandbox(pod)


def timed(function: object, *args: str) -> float:
    start = time.perf_counter()
    function(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def benchmark(
    containerd: Containerd, runtimes: dict[str, str], runs: int, warmup: int, cri: Cri | None
) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {
        label: {s: [] for s in STEPS} for label in runtimes
    }
    labels = list(runtimes)
    sleepers = {}
    for label, path in runtimes.items():
        sleepers[label] = f"bench-sleeper-{label}-{os.getpid()}"
        containerd.ctr(
            "run", "-d", "--runc-binary", path, IMAGE, sleepers[label], "sleep", "100000"
        )
    try:
        for n in range(warmup + runs):
            for label in labels if n % 2 == 0 else labels[::-1]:
                path = runtimes[label]
                name = f"bench-{label}-{os.getpid()}-{n}"
                run_s = timed(
                    containerd.ctr, "run", "--rm", "--runc-binary", path, IMAGE, name, "true"
                )
                exec_s = timed(
                    containerd.ctr, "task", "exec", "--exec-id", f"e{n}", sleepers[label], "true"
                )
                if n >= warmup:
                    results[label]["ctr-run"].append(run_s)
                    results[label]["exec"].append(exec_s)
                if cri is not None:
                    pod_s = time_pod(cri, label, name, containerd.base)
                    if n >= warmup:
                        results[label]["pod"].append(pod_s)
    finally:
        for name in sleepers.values():
            containerd.ctr("task", "kill", "-s", "SIGKILL", name, check=False)
            for _ in range(50):
                if containerd.ctr("task", "delete", name, check=False).returncode == 0:
                    break
                time.sleep(0.1)
            containerd.ctr("container", "delete", name, check=False)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ctr run --rm and exec: corral vs runc.")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--corral", default=shutil.which("corral") or "")
    parser.add_argument("--runc", default=shutil.which("runc") or "")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("clients.py: must run as root", file=sys.stderr)
        return 1
    runtimes = {
        label: path for label, path in (("corral", args.corral), ("runc", args.runc)) if path
    }
    for label, path in runtimes.items():
        if not os.access(path, os.X_OK) or not os.path.isabs(path):
            print(
                f"clients.py: {label}: {path!r} is not an executable's absolute path",
                file=sys.stderr,
            )
            return 1
    workdir = tempfile.mkdtemp(prefix="corral-bench-ctrd-", dir="/tmp")
    containerd = None
    try:
        image = build_image(workdir)
        containerd = Containerd(workdir, runtimes)
        containerd.ctr("images", "import", image)
        transport = grpc_transport()
        cri = None
        if transport is not None:
            pause = build_image(workdir, PAUSE_IMAGE, ["sleep", "2147483647"])
            for archive in (image, pause):
                containerd.ctr("images", "import", archive, namespace="k8s.io")
            cri = Cri(containerd.address, transport)
        else:
            print("clients.py: no grpc module here: no pod row", file=sys.stderr)
        results = benchmark(containerd, runtimes, args.runs, args.warmup, cri)
        steps = STEPS if cri is not None else STEPS[:2]
        labels = list(runtimes)
        if args.json:
            document: dict[str, object] = {}
            for step in steps:
                entry: dict[str, object] = {
                    label: summarize(results[label][step]) for label in labels
                }
                if len(labels) == 2:
                    entry["ratio"] = ratio(*(median(results[label][step]) for label in labels))
                document[step] = entry
            print(json.dumps({"runs": args.runs, "steps": document}, indent=2))
        else:
            print(render_table(table_headers(labels), build_rows(results, steps, labels)))
    except RuntimeError as error:
        print(f"clients.py: {error}", file=sys.stderr)
        return 1
    finally:
        if containerd is not None:
            containerd.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
