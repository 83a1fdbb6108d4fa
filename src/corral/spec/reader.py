"""Typed, path-aware access to a decoded JSON document.

Every accessor takes the JSON path of the value it reads, so a wrong type or a missing
field becomes a :class:`~corral.errors.ConfigError` naming exactly that field
(``process.user.uid: expected an integer, got "0"``). Booleans are not integers here,
although Python says they are: ``"uid": true`` is a mistake worth reporting.
"""

from __future__ import annotations

from corral.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

JSONObject = dict[str, "Any"]

_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    bool: "a boolean",
}


def describe(value: object) -> str:
    """Render a value the way it appeared in JSON, shortened for an error line."""
    if value is None:
        text = "null"
    elif value is True:
        text = "true"
    elif value is False:
        text = "false"
    elif isinstance(value, str):
        text = '"' + value + '"'
    elif isinstance(value, dict):
        text = "an object"
    elif isinstance(value, list):
        text = "an array"
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def expect(value: object, kind: type, path: str) -> Any:
    """Return ``value`` if it is of JSON type ``kind``, else raise naming ``path``."""
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise ConfigError(path, f"expected {_TYPE_NAMES[kind]}, got {describe(value)}")
    return value


def join(path: str, key: str | int) -> str:
    """Extend a JSON path: ``join("linux", "namespaces")``, ``join("mounts", 2)``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Fields:
    """An object in the document, read field by field under its path."""

    __slots__ = ("data", "path")

    def __init__(self, data: object, path: str) -> None:
        self.data: JSONObject = expect(data, dict, path) if path else expect(data, dict, "(top)")
        self.path = path

    def at(self, key: str) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def _get(self, key: str, kind: type, required: bool) -> Any:
        if key not in self.data or self.data[key] is None:
            if required:
                raise ConfigError(self.at(key), "required field is missing")
            return None
        return expect(self.data[key], kind, self.at(key))

    def string(self, key: str, default: str = "", *, required: bool = False) -> str:
        value = self._get(key, str, required)
        return default if value is None else str(value)

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self._get(key, bool, False)
        return default if value is None else bool(value)

    def integer(
        self,
        key: str,
        *,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = self._get(key, int, required)
        if value is None:
            return None
        check_range(value, self.at(key), minimum, maximum)
        return int(value)

    def obj(self, key: str) -> Fields | None:
        if not self.has(key):
            return None
        return Fields(self.data[key], self.at(key))

    def array(self, key: str) -> list[Any]:
        value = self._get(key, list, False)
        return [] if value is None else list(value)

    def strings(self, key: str) -> list[str]:
        items = self.array(key)
        for index, item in enumerate(items):
            expect(item, str, join(self.at(key), index))
        return items

    def string_map(self, key: str) -> dict[str, str]:
        value = self._get(key, dict, False)
        if value is None:
            return {}
        for name, item in value.items():
            expect(item, str, join(self.at(key), name))
        return dict(value)


def check_range(value: int, path: str, minimum: int | None, maximum: int | None) -> None:
    if minimum is not None and value < minimum:
        raise ConfigError(path, f"{value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(path, f"{value} is above the maximum {maximum}")


UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
