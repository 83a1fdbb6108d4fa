"""The ``corral`` command line itself: version, help, spec, demo, usage errors, state JSON.

These pin what clients read: ``--version``'s two lines, ``spec``'s refusal to overwrite,
one ``corral: `` line for a usage error, and the OCI state's required fields
(runtime-spec ``runtime.md`` "State": ociVersion, id, status, bundle; pid while the
container runs).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import create_detached, requires_root, wait_for_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import Corral

    MakeBundle = Callable[..., Path]

pytestmark = requires_root


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The message of a failed call, after checking it is one ``corral: `` line."""
    assert result.returncode != 0
    assert result.stderr.startswith("corral: "), result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.removeprefix("corral: ").removesuffix("\n")


def test_version(corral: Corral) -> None:
    from corral import OCI_VERSION, __version__

    result = corral("--version")
    assert result.stdout == f"corral version {__version__}\nspec: {OCI_VERSION}\n"
    assert corral("-v").stdout == result.stdout


def test_help_lists_every_command(corral: Corral) -> None:
    out = corral("--help").stdout
    for command in ("create", "start", "state", "kill", "delete", "run", "list", "spec"):
        assert f"\n  {command} " in out, command
    assert corral("create", "--help").stdout.startswith("usage: corral create")


def test_spec_writes_a_config_that_create_accepts(
    corral: Corral, tmp_path: Path, busybox_rootfs: Path, container_id: str
) -> None:
    from corral import OCI_VERSION

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    corral("spec", "--bundle", str(bundle))
    config = json.loads((bundle / "config.json").read_text())
    assert config["ociVersion"] == OCI_VERSION
    assert config["root"]["path"] == "rootfs"
    (bundle / "rootfs").symlink_to(busybox_rootfs)

    create_detached(corral, bundle, container_id)
    state = corral.state(container_id)
    assert state["status"] == "created"
    assert state["rootfs"] == str(busybox_rootfs)
    corral("delete", container_id)


def test_spec_writes_into_the_current_directory(corral: Corral, tmp_path: Path) -> None:
    corral("spec", cwd=tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["process"]["args"] == ["sh"]


def test_spec_refuses_to_overwrite(corral: Corral, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("mine\n")
    message = assert_one_error_line(corral("spec", "--bundle", str(tmp_path), check=False))
    assert "exists" in message
    assert (tmp_path / "config.json").read_text() == "mine\n"


def test_demo_runs_a_container(corral: Corral) -> None:
    result = corral("demo", stdin=subprocess.DEVNULL)
    assert result.stdout.startswith("Hello from a corral container.\n")
    assert "hostname: corral   pid: 1   uid: 0" in result.stdout
    assert not os.path.isdir(corral.root) or os.listdir(corral.root) == []


def test_demo_runs_a_given_command_and_returns_its_status(corral: Corral) -> None:
    result = corral("demo", "--", "sh", "-c", "echo hi; exit 5", check=False)
    assert (result.returncode, result.stdout) == (5, "hi\n")


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        ["--no-such-flag", "list"],
        ["list", "--no-such-flag"],
        ["create", "--bundle"],
        ["create"],
        ["state", "a", "b"],
        ["--log-format", "xml", "list"],
        ["list", "--format", "yaml"],
        ["create", "--preserve-fds", "many", "x"],
    ],
    ids=" ".join,
)
def test_usage_errors_are_one_line(corral: Corral, args: list[str]) -> None:
    assert_one_error_line(corral(*args, check=False))


def test_state_has_the_oci_required_fields(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    from corral import OCI_VERSION

    bundle = make_bundle(["sleep", "30"])
    create_detached(corral, bundle, container_id)
    created = corral.state(container_id)
    assert created["ociVersion"] == OCI_VERSION
    assert created["id"] == container_id
    assert created["status"] == "created"
    assert created["bundle"] == str(bundle)
    assert isinstance(created["pid"], int) and created["pid"] > 0
    assert os.path.exists(f"/proc/{created['pid']}")
    assert created["created"].endswith("Z")

    corral("start", container_id)
    assert corral.state(container_id)["status"] == "running"
    corral("kill", container_id, "KILL")
    wait_for_status(corral, container_id, "stopped")
    stopped = corral.state(container_id)
    assert {k: stopped[k] for k in ("ociVersion", "id", "bundle")} == {
        k: created[k] for k in ("ociVersion", "id", "bundle")
    }
    assert stopped["pid"] == 0
