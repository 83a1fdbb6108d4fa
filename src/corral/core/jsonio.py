"""JSON in and out without importing :mod:`json`.

``import json`` pulls in ``re`` and costs 2-10 ms; ``state``, ``start``, ``kill`` and
``delete`` each read a state file and ``state`` prints one, so they use the C
accelerator ``_json`` that :mod:`json` itself is built on: its scanner decodes, its
string encoder escapes, and a few lines here lay the result out the way runc does
(two-space indentation, like Go's ``json.MarshalIndent``).
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar


class JSONError(ValueError):
    """Text that is not one JSON document."""


class _Context:
    # The attributes _json.make_scanner reads from json.JSONDecoder.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: ClassVar[dict[str, Any]] = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        raise JSONError(f"{name} is not valid JSON")


# typeshed types the argument as a JSONDecoder; _json only reads the attributes above.
_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
_WHITESPACE = " \t\n\r"


def loads(text: str | bytes) -> Any:
    """Decode one JSON document; raise :class:`JSONError` saying where it is malformed."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    index = _skip(text, 0)
    try:
        value, end = _scan(text, index)
    except JSONError:
        raise
    except (StopIteration, ValueError, SystemError):
        # _json formats its messages with json.decoder.JSONDecodeError, which it only finds
        # if json is already imported (else CPython 3.11 raises SystemError). Errors are
        # rare: let json itself say where the document is wrong.
        _explain(text)
        raise JSONError(f"invalid JSON at offset {index}") from None
    finally:
        _Context.memo.clear()
    end = _skip(text, end)
    if end != len(text):
        raise JSONError(f"extra data at offset {end}")
    return value


def _explain(text: str) -> None:
    import json

    try:
        json.loads(text, parse_constant=_Context.parse_constant)
    except json.JSONDecodeError as error:
        raise JSONError(str(error)) from None


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def dumps(value: object, indent: int | None = None) -> str:
    """Encode ``value`` (dicts, lists, str, int, float, bool, None) as JSON."""
    parts: list[str] = []
    _encode(value, parts, indent, 0)
    return "".join(parts)


def _encode(value: object, out: list[str], indent: int | None, depth: int) -> None:
    if isinstance(value, str):
        out.append(_json.encode_basestring(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int | float):
        out.append(repr(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner, outer = _newlines(indent, depth)
        out.append("{")
        for position, (key, item) in enumerate(value.items()):
            out.append(("," if position else "") + inner)
            out.append(_json.encode_basestring(str(key)))
            out.append(": " if indent is not None else ":")
            _encode(item, out, indent, depth + 1)
        out.append(outer + "}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        inner, outer = _newlines(indent, depth)
        out.append("[")
        for position, item in enumerate(value):
            out.append(("," if position else "") + inner)
            _encode(item, out, indent, depth + 1)
        out.append(outer + "]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _newlines(indent: int | None, depth: int) -> tuple[str, str]:
    if indent is None:
        return "", ""
    return "\n" + " " * (indent * (depth + 1)), "\n" + " " * (indent * depth)
