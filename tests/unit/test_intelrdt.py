"""linux.intelRdt: validation, schemata comparison and groups in a fake resctrl dir."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any

import pytest

from corral.errors import ConfigError, CorralError, CreateError
from corral.linux import intelrdt
from corral.linux.intelrdt import (
    apply_intel_rdt,
    check_intel_rdt,
    check_resctrl_host,
    find_resctrl,
    group_path,
    parse_intel_rdt,
    parse_schemata,
    remove_intel_rdt,
    schemata_mismatch,
    update_schemata,
)
from corral.spec.default import default_spec
from corral.spec.model import Spec, parse_config

if TYPE_CHECKING:
    from pathlib import Path

MOUNTINFO = (
    "22 1 0:21 / / rw,relatime - ext4 /dev/sda1 rw\n"
    "40 22 0:35 / /sys/fs/resctrl rw,relatime shared:20 - resctrl resctrl rw\n"
)


def spec_with(rdt: Any) -> Spec:
    raw = default_spec(["true"])
    raw["linux"]["intelRdt"] = rdt
    return parse_config(raw)


def test_lines_follow_the_spec_order() -> None:
    rdt = parse_intel_rdt(
        spec_with({"schemata": ["L2:0=f"], "memBwSchema": "MB:0=20", "l3CacheSchema": "L3:0=7f0"})
    )
    assert rdt is not None
    assert rdt.lines == ["L3:0=7f0", "MB:0=20", "L2:0=f"]
    assert parse_intel_rdt(parse_config(default_spec(["true"]))) is None


@pytest.mark.parametrize(
    ("rdt", "path"),
    [
        ({"memBwSchema": "L3:0=1"}, "linux.intelRdt.memBwSchema"),
        ({"l3CacheSchema": "L3:0=1\nMB:0=2"}, "linux.intelRdt.l3CacheSchema"),
        ({"schemata": ["L3:0=f", "nonsense"]}, "linux.intelRdt.schemata[1]"),
        ({"closID": "../escape"}, "linux.intelRdt.closID"),
        ({"closID": 7}, "linux.intelRdt.closID"),
        ({"enableMonitoring": "yes"}, "linux.intelRdt.enableMonitoring"),
    ],
)
def test_invalid_values_name_their_field(rdt: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_intel_rdt(spec_with(rdt))
    assert caught.value.path == path


def test_find_resctrl(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert find_resctrl(str(info)) == "/sys/fs/resctrl"
    check_resctrl_host(spec_with({"closID": "g"}), str(info))
    info.write_text(MOUNTINFO.splitlines()[0] + "\n")
    assert find_resctrl(str(info)) == ""
    with pytest.raises(ConfigError) as caught:
        check_resctrl_host(spec_with({"closID": "g"}), str(info))
    assert caught.value.path == "linux.intelRdt"
    check_resctrl_host(parse_config(default_spec(["true"])), str(info))  # not asked: fine


def test_group_paths() -> None:
    rdt = parse_intel_rdt(spec_with({}))
    assert rdt is not None
    assert group_path("/r", rdt, "c1") == "/r/c1"
    rdt.clos_id = "gold"
    assert group_path("/r", rdt, "c1") == "/r/gold"
    rdt.clos_id = "/"
    assert group_path("/r", rdt, "c1") == "/r"


def test_schemata_are_compared_as_the_kernel_prints_them() -> None:
    current = "    L3:0=007f0;1=0001f\n    MB:0= 20;1= 70\n"
    assert parse_schemata(current)["L3"] == {"0": str(0x7F0), "1": str(0x1F)}
    assert schemata_mismatch(["L3:0=7f0;1=1f", "MB:0=20"], current) == ""
    assert schemata_mismatch(["L3:0=7f0;1=3f"], current) == "L3:1"
    assert schemata_mismatch(["L2:0=f"], current) == "L2:0"


def test_apply_creates_writes_and_removes(tmp_path: Path) -> None:
    spec = spec_with({"l3CacheSchema": "L3:0=f", "schemata": ["MB:0=50"], "enableMonitoring": True})
    (tmp_path / "c1" / "mon_groups").mkdir(parents=True)  # as the kernel would make it
    group, created = apply_intel_rdt(spec, "c1", 4242, resctrl=str(tmp_path))
    assert group == str(tmp_path / "c1")
    assert created == [str(tmp_path / "c1" / "mon_groups" / "c1")]  # c1 already existed
    assert (tmp_path / "c1" / "schemata").read_text() == "L3:0=f\nMB:0=50\n"
    assert (tmp_path / "c1" / "mon_groups" / "c1" / "tasks").read_text() == "4242"
    (tmp_path / "c1" / "mon_groups" / "c1" / "tasks").unlink()  # resctrl files are virtual
    remove_intel_rdt(created)
    assert not (tmp_path / "c1" / "mon_groups" / "c1").exists()
    assert (tmp_path / "c1").exists()


def test_apply_makes_a_missing_group(tmp_path: Path) -> None:
    group, created = apply_intel_rdt(
        spec_with({"schemata": ["L3:0=f"]}), "c2", 7, resctrl=str(tmp_path)
    )
    assert group == str(tmp_path / "c2")
    assert created == [str(tmp_path / "c2")]
    assert (tmp_path / "c2" / "tasks").read_text() == "7"


def test_an_existing_clos_group_must_match(tmp_path: Path) -> None:
    (tmp_path / "gold").mkdir()
    (tmp_path / "gold" / "schemata").write_text("    L3:0=00f\n")
    spec = spec_with({"closID": "gold", "l3CacheSchema": "L3:0=f"})
    assert apply_intel_rdt(spec, "c3", 9, resctrl=str(tmp_path)) == (str(tmp_path / "gold"), [])
    assert (tmp_path / "gold" / "tasks").read_text() == "9"
    assert (tmp_path / "gold" / "schemata").read_text() == "    L3:0=00f\n"  # not rewritten
    with pytest.raises(CreateError, match="L3:0"):
        apply_intel_rdt(spec_with({"closID": "gold", "l3CacheSchema": "L3:0=3"}), "c", 9,
                        resctrl=str(tmp_path))  # fmt: skip


def test_a_clos_id_without_schemata_must_exist(tmp_path: Path) -> None:
    with pytest.raises(CreateError, match="silver"):
        apply_intel_rdt(spec_with({"closID": "silver"}), "c4", 9, resctrl=str(tmp_path))
    assert not (tmp_path / "silver").exists()


# -- update --l3-cache-schema / --mem-bw-schema ----------------------------------------


def resctrl_with(tmp_path: Path, *resources: str) -> Path:
    for resource in resources:
        (tmp_path / "info" / resource).mkdir(parents=True)
    return tmp_path


def test_update_rewrites_the_schemata_of_the_container_group(tmp_path: Path) -> None:
    resctrl = resctrl_with(tmp_path, "L3", "MB")
    (resctrl / "gold").mkdir()
    lines = ["L3:0=3", "MB:0=40"]
    group, created = update_schemata(str(resctrl), str(resctrl / "gold"), "c1", [1], lines)
    assert (group, created) == (str(resctrl / "gold"), [])
    assert (resctrl / "gold" / "schemata").read_text() == "L3:0=3\nMB:0=40\n"
    assert not (resctrl / "gold" / "tasks").exists()  # its tasks are in it already


def test_update_without_a_group_makes_one_and_moves_every_thread_in(tmp_path: Path) -> None:
    resctrl = resctrl_with(tmp_path, "L3")
    moved: list[str] = []

    class TasksFile(io.StringIO):
        def close(self) -> None:
            moved.append(self.getvalue())  # resctrl takes one tid per write(2)
            super().close()

    real_open = open

    def fake_open(path: str, mode: str = "r") -> Any:
        if path.endswith("/tasks"):
            return TasksFile()
        return real_open(path, mode)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("builtins.open", fake_open)
        group, created = update_schemata(str(resctrl), "", "c9", [os.getpid()], ["L3:0=1"])
    assert group == str(resctrl / "c9") and created == [group]
    assert (resctrl / "c9" / "schemata").read_text() == "L3:0=1\n"
    assert sorted(moved) == sorted(os.listdir(f"/proc/{os.getpid()}/task"))


@pytest.mark.parametrize(
    ("line", "offered", "message"),
    [
        ("L3:0=1", ("MB",), "Intel RDT/CAT: l3 cache schema is not enabled"),
        ("MB:0=50", ("L3",), "Intel RDT/MBA: memory bandwidth schema is not enabled"),
    ],
)
def test_update_of_a_resource_the_host_lacks_is_runcs_error(
    tmp_path: Path, line: str, offered: tuple[str, ...], message: str
) -> None:
    resctrl = resctrl_with(tmp_path, *offered)
    with pytest.raises(CorralError, match=message):
        update_schemata(str(resctrl), "", "c1", [], [line])
    assert not (resctrl / "c1").exists()  # nothing made
    with pytest.raises(CorralError, match=message):
        update_schemata("", "", "c1", [], [line])  # no resctrl mounted at all


def test_a_failed_update_removes_the_group_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resctrl = resctrl_with(tmp_path, "L3")

    def refuse(path: str, data: str, error: type[CorralError] = CreateError) -> None:
        # as the kernel refuses a line the hardware cannot take
        raise error(f"linux.intelRdt: writing {path}: Invalid argument")

    monkeypatch.setattr(intelrdt, "_write", refuse)
    with pytest.raises(CorralError, match="schemata: Invalid argument"):
        update_schemata(str(resctrl), "", "c6", [], ["L3:0=zz"])
    assert not (resctrl / "c6").exists()
    (resctrl / "c7").mkdir()  # a group that was there before is not removed
    with pytest.raises(CorralError):
        update_schemata(str(resctrl), "", "c7", [], ["L3:0=zz"])
    assert (resctrl / "c7").exists()
