"""Shared fixtures: how tests run the ``corral`` command and build busybox bundles."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import Any


def corral_command() -> list[str]:
    """The installed launcher beside this interpreter, else ``python -m corral``."""
    launcher = os.path.join(os.path.dirname(sys.executable), "corral")
    if os.access(launcher, os.X_OK):
        return [launcher]
    return [sys.executable, "-m", "corral"]


def can_run_containers() -> str | None:
    """None if this host can create containers, else the reason it cannot."""
    if not sys.platform.startswith("linux"):
        return "Linux containers need a Linux host"
    if os.geteuid() != 0:
        return "creating containers needs root"
    if shutil.which("busybox") is None and not os.path.exists("/bin/busybox"):
        return "busybox-static is not installed"
    return None


requires_root = pytest.mark.skipif(
    can_run_containers() is not None, reason=can_run_containers() or ""
)


class Corral:
    """Runs ``corral --root <private root> ...`` and remembers containers to clean up."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.created: list[str] = []

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 30, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("capture_output", True)
        result = subprocess.run(
            [*corral_command(), "--root", self.root, *args],
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"corral {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def state(self, container_id: str) -> dict[str, Any]:
        import json

        data: dict[str, Any] = json.loads(self("state", container_id).stdout)
        return data

    def cleanup(self) -> None:
        for container_id in os.listdir(self.root) if os.path.isdir(self.root) else []:
            self("delete", "--force", container_id, check=False)


@pytest.fixture
def corral(tmp_path: Path) -> Iterator[Corral]:
    runner = Corral(tmp_path / "state")
    yield runner
    runner.cleanup()


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One busybox root filesystem for the session (bundles point at it read-only)."""
    from corral.cli.demo import build_bundle

    bundle = tmp_path_factory.mktemp("busybox")
    build_bundle(str(bundle), ["true"])
    return bundle / "rootfs"


@pytest.fixture
def make_bundle(tmp_path: Path, busybox_rootfs: Path) -> Callable[..., Path]:
    """``make_bundle(args, **overrides)``: a bundle dir whose config runs ``args``.

    ``overrides`` is a dict merged into the default config (a value of None deletes the key);
    ``process`` and ``linux`` are merged one level deep.
    """

    def make(
        args: list[str] | None = None, edit: Callable[[dict[str, Any]], None] | None = None
    ) -> Path:
        import json

        from corral.spec.default import default_spec

        bundle = tmp_path / f"bundle-{uuid.uuid4().hex[:8]}"
        bundle.mkdir()
        spec = default_spec(args or ["true"])
        spec["root"]["path"] = str(busybox_rootfs)
        if edit is not None:
            edit(spec)
        (bundle / "config.json").write_text(json.dumps(spec, indent=2))
        return bundle

    return make


@pytest.fixture
def container_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


# -- helpers for the integration tests (tests/integration/) -------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; its last answer."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def create_detached(
    corral: Corral, bundle: Path, container_id: str, *flags: str, command: str = "create"
) -> Path:
    """``corral create`` (or ``run --detach``) with stdio in files; the stdout file's path.

    The init keeps the caller's stdio, so with pipes ``subprocess.run`` would wait for an
    EOF that comes only when the container exits. stderr goes to ``<stdout file>.err``.
    """
    out = bundle / f"{container_id}.out"
    err = bundle / f"{container_id}.out.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        result = corral(
            command,
            *flags,
            "--bundle",
            str(bundle),
            container_id,
            check=False,
            capture_output=False,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    if result.returncode != 0:
        raise AssertionError(
            f"corral {command} {container_id} exited {result.returncode}: {err.read_text()}"
        )
    return out


def wait_for_status(corral: Corral, container_id: str, status: str, timeout: float = 5.0) -> None:
    """Wait until ``corral state`` reports ``status``; fail with the last state otherwise."""
    if not wait_until(lambda: corral.state(container_id)["status"] == status, timeout):
        raise AssertionError(f"{container_id} not {status}: {corral.state(container_id)}")


@pytest.fixture
def run_inside(
    corral: Corral, make_bundle: Callable[..., Path]
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_inside(script, edit=None, flags=(), check=True)``: ``corral run`` of
    ``sh -c script`` in a fresh container; the CompletedProcess (the container's output).
    """

    def run(
        script: str,
        edit: Callable[[dict[str, Any]], None] | None = None,
        flags: tuple[str, ...] = (),
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        bundle = make_bundle(["sh", "-c", script], edit=edit)
        container_id = f"t-{uuid.uuid4().hex[:12]}"
        return corral(
            "run",
            *flags,
            "--bundle",
            str(bundle),
            container_id,
            check=check,
            stdin=subprocess.DEVNULL,
        )

    return run
