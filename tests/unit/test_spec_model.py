"""config.json parsing: every error names the JSON path of the field at fault."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from corral.errors import ConfigError, UnsupportedError
from corral.linux.check import REFUSED_ON_LINUX, check_namespaces, check_unsupported
from corral.spec.default import default_spec
from corral.spec.model import parse_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SPEC_DIR = Path(__file__).resolve().parents[3] / "shared" / "oci-runtime-spec"


def base() -> dict[str, Any]:
    return copy.deepcopy(default_spec(["sh"]))


def test_default_spec_parses() -> None:
    spec = parse_config(base())
    assert spec.process is not None
    assert spec.process.args == ["sh"]
    assert spec.linux is not None
    assert spec.linux.namespaces[0].type == "pid"
    assert spec.mounts[0].destination == "/proc"
    check_unsupported(spec)
    check_namespaces(spec)


def _set(document: dict[str, Any], path: str, value: object) -> None:
    keys: list[str | int] = []
    for part in path.replace("]", "").split("."):
        name, _, index = part.partition("[")
        keys.append(name)
        if index:
            keys.append(int(index))
    target: Any = document
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("linux.namespaces[2].type", "pidx", 'linux.namespaces[2].type: unknown namespace "pidx"'),
        ("linux.namespaces[1].type", "pid", 'namespaces[1].type: namespace "pid" is given twice'),
        ("ociVersion", "one", 'ociVersion: "one" is not a SemVer'),
        ("process.user.uid", "0", 'process.user.uid: expected an integer, got "0"'),
        ("process.user.uid", True, "process.user.uid: expected an integer, got true"),
        ("process.user.uid", -1, "process.user.uid: -1 is below the minimum 0"),
        ("process.args", [], "process.args: must name the program"),
        ("process.cwd", "tmp", 'process.cwd: "tmp" is not an absolute path'),
        ("process.env", ["PATH"], 'process.env[0]: "PATH" is not of the form NAME=value'),
        ("process.oomScoreAdj", 1001, "process.oomScoreAdj: 1001 is above the maximum 1000"),
        ("process.rlimits[0].soft", 2048, "process.rlimits[0].soft: soft limit 2048 is above"),
        ("mounts[2].destination", "", "mounts[2].destination: must not be empty"),
        ("mounts[1].options", "ro", "mounts[1].options: expected an array"),
        ("linux.rootfsPropagation", "sideways", "rootfsPropagation: unknown propagation"),
        ("linux.maskedPaths[0]", "proc/kcore", 'linux.maskedPaths[0]: "proc/kcore" is not'),
        ("root", {"readonly": True}, "root.path: required field is missing"),
        ("linux.sysctl", {"a": 1}, "linux.sysctl.a: expected a string, got 1"),
        ("process.user.additionalGids", [1, "2"], 'additionalGids[1]: "2" is not a group id'),
    ],
)
def test_errors_name_the_field(path: str, value: object, message: str) -> None:
    document = base()
    _set(document, path, value)
    with pytest.raises(ConfigError) as info:
        parse_config(document)
    assert str(info.value).startswith("config.json: ")
    assert message in str(info.value)


def test_relative_mount_destination_is_read_from_root() -> None:
    document = base()
    document["mounts"][0]["destination"] = "proc/../proc"
    assert parse_config(document).mounts[0].destination == "/proc"


def test_unknown_properties_are_ignored() -> None:
    # config.md, "Extensibility": runtimes MUST ignore unknown properties.
    document = base()
    document["org.example.future"] = {"x": 1}
    document["process"]["somethingNew"] = True
    parse_config(document)


@pytest.mark.parametrize("path", sorted(REFUSED_ON_LINUX))
def test_known_but_unimplemented_fields_are_rejected(path: str) -> None:
    document = base()
    node = document
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = {"anything": 1}
    spec_document = copy.deepcopy(document)
    try:
        spec = parse_config(spec_document)
    except ConfigError:
        return  # the model itself refused the shape: also an error naming the field
    with pytest.raises(UnsupportedError) as info:
        check_unsupported(spec)
    assert path in str(info.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["linux"].update(namespaces=[{"type": "mount"}]),
            "hostname: setting a hostname needs a new uts namespace",
        ),
        (
            lambda d: d["linux"].update(namespaces=[{"type": "uts"}]),
            "a new mount namespace is required",
        ),
    ],
)
def test_namespace_checks(edit: Any, message: str) -> None:
    document = base()
    edit(document)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        check_namespaces(parse_config(document))


@pytest.mark.skipif(not SPEC_DIR.is_dir(), reason="the OCI spec copy is not beside the checkout")
def test_spec_example_from_config_md_parses() -> None:
    # The big Linux example in config.md must parse, and since cgroups (issue 5) and
    # seccomp no field of it is refused as not supported.
    text = (SPEC_DIR / "config.md").read_text()
    start = text.index("```json", text.index("## Configuration Schema Example"))
    document = json.loads(text[start + 7 : text.index("```", start + 7)])
    spec = parse_config(document)
    assert spec.raw["linux"]["resources"] and spec.raw["linux"]["cgroupsPath"]
    check_unsupported(spec)
