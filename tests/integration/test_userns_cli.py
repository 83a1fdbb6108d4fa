"""User namespaces through the CLI: root in the container is an unprivileged uid outside."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid

import pytest

from conftest import create_detached, requires_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any

    from conftest import Corral

pytestmark = requires_root

HOST_BASE = 100000


@pytest.fixture
def open_bundle() -> Iterator[Path]:
    """A bundle in a directory every uid can search: the container's root is uid 100000
    on the host, and must reach its rootfs (as with runc)."""
    from pathlib import Path

    from corral.cli.demo import build_bundle
    from corral.spec.default import default_spec

    directory = Path(tempfile.mkdtemp(prefix="corral-userns-", dir="/tmp"))
    directory.chmod(0o755)
    build_bundle(str(directory), ["true"])
    spec = default_spec(["true"])
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": HOST_BASE, "size": 65536}]
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": HOST_BASE, "size": 65536}]
    (directory / "config.json").write_text(json.dumps(spec))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def set_args(bundle: Path, args: list[str], edit: Any = None) -> None:
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["args"] = args
    if edit is not None:
        edit(spec)
    (bundle / "config.json").write_text(json.dumps(spec))


def test_root_inside_is_mapped_outside(corral: Corral, open_bundle: Path) -> None:
    set_args(open_bundle, ["sh", "-c", "id -u; cat /proc/self/uid_map; readlink /proc/1/ns/user"])
    out = corral("run", "--bundle", str(open_bundle), f"u-{uuid.uuid4().hex[:8]}").stdout
    lines = out.split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(HOST_BASE), "65536"]
    assert lines[2] != os.readlink("/proc/self/ns/user")  # a user namespace of its own


def test_the_init_runs_as_the_mapped_uid_on_the_host(corral: Corral, open_bundle: Path) -> None:
    set_args(open_bundle, ["sleep", "100"])
    name = f"u-{uuid.uuid4().hex[:8]}"
    create_detached(corral, open_bundle, name)
    pid = corral.state(name)["pid"]
    with open(f"/proc/{pid}/status") as status:
        uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
    assert uids == [str(HOST_BASE)] * 4
    corral("delete", "--force", name)


def test_unmapped_process_user_is_refused(corral: Corral, open_bundle: Path) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["user"] = {"uid": 70000, "gid": 0}

    set_args(open_bundle, ["true"], edit)
    result = corral("run", "--bundle", str(open_bundle), "u-bad", check=False)
    assert result.returncode != 0
    assert result.stderr.startswith("corral: config.json: ")
    assert "70000" in result.stderr
    assert result.stderr.count("\n") == 1
