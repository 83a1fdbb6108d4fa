"""``corral features``: the structure, built from corral's own tables."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from corral.cli import features_cmd
from corral.cli.features_cmd import common_features
from corral.linux import features as linux_features_module
from corral.linux import mempolicy, mountopts, seccomp
from corral.linux.capabilities import CAPABILITIES
from corral.linux.check import SUPPORTED_NAMESPACES
from corral.linux.features import linux_features, seccomp_features


class FakeLib:
    """Enough of the libseccomp binding: version, architectures, flag attributes."""

    def version(self) -> tuple[int, int, int]:
        return (2, 5, 4)

    def arch_resolve_name(self, name: str) -> int:
        return 1 if name in ("x86_64", "x86", "aarch64") else 0

    def init(self, default_action: int) -> int:
        return 1

    def release(self, ctx: int) -> None:
        pass

    def attr_set(self, ctx: int, attribute: int, value: int) -> None:
        if attribute == seccomp.FLAGS["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]:
            raise OSError(22, "seccomp_attr_set")


def built(lib: Any = None) -> dict[str, Any]:
    return linux_features(common_features(), lib or FakeLib())  # type: ignore[arg-type]


def test_versions_and_hooks() -> None:
    from corral import OCI_VERSION

    result = built()
    assert result["ociVersionMin"] == "1.0.0"
    assert result["ociVersionMax"] == OCI_VERSION
    assert result["hooks"] == [
        "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop",
    ]  # fmt: skip


def test_mount_options_are_the_ones_mountopts_applies() -> None:
    options = built()["mountOptions"]
    assert options == sorted(options)
    for table in (
        mountopts.FLAG_OPTIONS,
        mountopts.PROPAGATION_OPTIONS,
        mountopts.RECURSIVE_OPTIONS,
    ):
        assert set(table) - set(mountopts.UNSUPPORTED_OPTIONS) <= set(options)
    assert "tmpcopyup" in options
    assert {"ro", "rbind", "rprivate", "rro", "nosymfollow"} <= set(options)


def test_linux_lists_come_from_the_code() -> None:
    linux = built()["linux"]
    assert linux["namespaces"] == sorted(SUPPORTED_NAMESPACES)
    assert linux["capabilities"] == list(CAPABILITIES)
    assert linux["memoryPolicy"] == {"modes": list(mempolicy.MODES), "flags": list(mempolicy.FLAGS)}
    assert linux["mountExtensions"] == {"idmap": {"enabled": True}}
    assert set(linux["cgroup"]) == {"v1", "v2", "systemd", "systemdUser", "rdma"}


def test_seccomp_section_with_the_library() -> None:
    section: dict[str, Any] = seccomp_features(FakeLib())  # type: ignore[arg-type]
    assert section["enabled"] is True
    assert len(section["actions"]) == 9 and "SCMP_ACT_NOTIFY" in section["actions"]
    assert section["operators"] == sorted(seccomp.OPERATORS)
    assert section["archs"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"]
    assert section["knownFlags"] == list(seccomp.FLAGS)
    assert section["supportedFlags"] == [
        "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    ]  # fmt: skip


def test_without_libseccomp() -> None:
    result: dict[str, Any] = linux_features(common_features(), None)
    assert result["linux"]["seccomp"] == {"enabled": False}
    assert "io.github.seccomp.libseccomp.version" not in result["annotations"]


def test_annotations_name_the_library_version() -> None:
    assert built()["annotations"]["io.github.seccomp.libseccomp.version"] == "2.5.4"


def test_command_prints_json(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr(linux_features_module, "seccomp_library", FakeLib)
    assert features_cmd.cmd_features(None, None) == 0  # type: ignore[arg-type]
    document = json.loads(out.getvalue())
    assert document["linux"]["seccomp"]["enabled"] is True
    assert document["ociVersionMin"] == "1.0.0"


def test_every_known_flag_is_one_corral_applies() -> None:
    # knownFlags must be recognised in config.json: parse_profile accepts each of them.
    for flag in built()["linux"]["seccomp"]["knownFlags"]:
        seccomp.parse_profile({"defaultAction": "SCMP_ACT_ALLOW", "flags": [flag]})
