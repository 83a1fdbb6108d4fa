"""Thin drivers of the real clients (ctr, podman) for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import time

IMAGE = "localhost/corral-e2e/busybox:1"
PAUSE_IMAGE = "localhost/corral-e2e/pause:1"


def host_memory_limit(pid: int) -> int:
    """The memory limit of ``pid``'s cgroup, read on the host (v1 or v2)."""
    with open(f"/proc/{pid}/cgroup") as table:
        lines = [line.rstrip("\n").split(":", 2) for line in table]
    for _, controllers, path in lines:
        if "memory" in controllers.split(","):
            with open(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes") as limit:
                return int(limit.read())
    path = next(path for hid, _, path in lines if hid == "0")
    with open(f"/sys/fs/cgroup{path}/memory.max") as limit:
        return int(limit.read())


class Ctr:
    """``ctr`` against the private containerd, in namespace ``corral-e2e`` (the CRI
    plugin's is ``k8s.io``)."""

    def __init__(self, address: str, namespace: str = "corral-e2e") -> None:
        self.address = address
        self.namespace = namespace

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 60, **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        result: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
            ["ctr", "--address", self.address, "--namespace", self.namespace, *args],
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"ctr {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def cleanup(self, container: str) -> None:
        self("task", "kill", "--signal", "SIGKILL", container, check=False)
        for _ in range(50):
            if self("task", "delete", container, check=False).returncode != 0:
                listed = self("task", "ls", "-q", check=False).stdout.split()
                if container not in listed:
                    break
                time.sleep(0.1)
            else:
                break
        self("container", "delete", container, check=False)


class Podman:
    """``podman`` with private storage and configuration, and the runtime under test."""

    def __init__(self, base: str, runtime: str) -> None:
        self.base = base
        self.runtime = runtime

    def command(self, *args: str) -> list[str]:
        return [
            "podman",
            "--root",
            f"{self.base}/root",
            "--runroot",
            f"{self.base}/runroot",
            "--tmpdir",
            f"{self.base}/tmp",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--runtime",
            self.runtime,
            *args,
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": f"{self.base}/containers.conf"}

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 90, **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        result: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
            self.command(*args), text=True, timeout=timeout, check=False, env=self.env(), **kwargs
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result


def run_in_pty(
    command: list[str], env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal as its stdio; its exit status and output."""
    import pty
    import select

    master, slave = pty.openpty()
    process = subprocess.Popen(
        command, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    else:
        process.kill()
    status = process.wait(10)
    os.close(master)
    return status, b"".join(chunks).decode(errors="replace")
