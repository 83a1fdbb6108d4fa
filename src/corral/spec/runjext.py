"""runj's extension file, ``runj.ext.json``, read beside ``config.json`` as runj does.

runj lets tools that know nothing of FreeBSD write a plain ``config.json`` and put the
jail's networking in a second file in the bundle::

    {"network": {"ipv4": {"mode": "new", "addr": ["10.0.0.5"]},
                 "vnet": {"mode": "new", "interfaces": ["epair0b"]}}}

:func:`merge_runj_extension` folds it into the document's ``freebsd.jail``: a ``mode``
replaces ``ip4`` / ``vnet``, and ``addr`` / ``interfaces`` are appended to ``ip4Addr``
/ ``vnetInterfaces``, which is runj's rule. Errors name the file and the field.
"""

from __future__ import annotations

from corral.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EXTENSION_FILE = "runj.ext.json"

# (section in runj.ext.json, its mode -> jail key, its list key -> jail key)
_SECTIONS = (
    ("ipv4", "ip4", "addr", "ip4Addr"),
    ("vnet", "vnet", "interfaces", "vnetInterfaces"),
)


def merge_runj_extension(document: dict[str, Any], extension: object) -> dict[str, Any]:
    """Return ``document`` with the extension's settings merged into ``freebsd.jail``."""
    if not isinstance(extension, dict):
        raise ConfigError("", "expected an object", source=EXTENSION_FILE)
    network = extension.get("network")
    if network is None:
        return document
    if not isinstance(network, dict):
        raise ConfigError("network", "expected an object", source=EXTENSION_FILE)
    freebsd = document.setdefault("freebsd", {})
    if not isinstance(freebsd, dict):
        raise ConfigError("freebsd", "expected an object")
    jail = freebsd.setdefault("jail", {})
    if not isinstance(jail, dict):
        raise ConfigError("freebsd.jail", "expected an object")
    for section, mode_key, list_name, list_key in _SECTIONS:
        settings = network.get(section)
        if settings is None:
            continue
        where = f"network.{section}"
        if not isinstance(settings, dict):
            raise ConfigError(where, "expected an object", source=EXTENSION_FILE)
        mode = settings.get("mode")
        if mode not in (None, ""):
            if not isinstance(mode, str):
                raise ConfigError(f"{where}.mode", "expected a string", source=EXTENSION_FILE)
            jail[mode_key] = mode
        items = settings.get(list_name) or []
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(
                f"{where}.{list_name}", "expected an array of strings", source=EXTENSION_FILE
            )
        if items:
            existing = jail.get(list_key) or []
            if not isinstance(existing, list):
                raise ConfigError(f"freebsd.jail.{list_key}", "expected an array")
            jail[list_key] = [*existing, *items]
    return document
