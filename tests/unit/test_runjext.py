"""runj.ext.json merging, with runj's rules: modes replace, lists append."""

from __future__ import annotations

import pytest

from corral.errors import ConfigError
from corral.spec.runjext import merge_runj_extension


def test_modes_replace_and_lists_append() -> None:
    document = {"freebsd": {"jail": {"ip4": "inherit", "ip4Addr": ["10.0.0.1"]}}}
    extension = {
        "network": {
            "ipv4": {"mode": "new", "addr": ["10.0.0.2"]},
            "vnet": {"mode": "new", "interfaces": ["epair0b"]},
        }
    }
    merged = merge_runj_extension(document, extension)
    assert merged["freebsd"]["jail"] == {
        "ip4": "new",
        "ip4Addr": ["10.0.0.1", "10.0.0.2"],
        "vnet": "new",
        "vnetInterfaces": ["epair0b"],
    }


def test_creates_the_freebsd_section() -> None:
    merged = merge_runj_extension({}, {"network": {"vnet": {"mode": "new"}}})
    assert merged == {"freebsd": {"jail": {"vnet": "new"}}}


def test_empty_extension_changes_nothing() -> None:
    assert merge_runj_extension({"a": 1}, {}) == {"a": 1}


@pytest.mark.parametrize(
    ("extension", "message"),
    [
        ([], "runj.ext.json: expected an object"),
        ({"network": 1}, "runj.ext.json: network: expected an object"),
        ({"network": {"ipv4": {"addr": "10.0.0.1"}}}, "network.ipv4.addr: expected an array"),
        ({"network": {"vnet": {"mode": 3}}}, "runj.ext.json: network.vnet.mode: expected a string"),
    ],
)
def test_errors_name_the_file_and_field(extension: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        merge_runj_extension({}, extension)
    assert message in str(info.value)
