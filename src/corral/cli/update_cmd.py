"""``corral update``: change a live container's resource limits, as ``runc update``.

Two ways to say what changes, as with runc:

- ``--resources FILE`` (``-`` for stdin): a ``linux.resources`` JSON document; the
  other resource flags are then ignored.
- flags: :func:`update_resources_from_flags` turns the given ones into the same kind
  of document. Only the flags on the command line appear in it, so only those
  fields change. Memory sizes take runc's formats (docker/go-units' ``RAMInBytes``:
  ``1048576``, ``512k``, ``10m``, ``1.5g``, ``1GiB``, powers of 1024) and ``-1``.

Either document is checked before the container is touched
(:func:`corral.linux.cgroups.convert.check_resources`), so a bad value is one line
naming the flag or the field. ``--l3-cache-schema``/``--mem-bw-schema`` are not
cgroup resources: :func:`intel_rdt_from_flags` makes them a ``linux.intelRdt``
fragment, which the runtime cannot apply yet, so they are refused.

The runtime (``Runtime.update``) merges the document into the container's current
resources and writes the cgroup files.
"""

from __future__ import annotations

import sys

from corral.errors import ConfigError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.cli.args import Parsed

_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1

# flag dest → (section, key, kind); kinds: "uint" and "int" as Go's strconv parses
# them, "size" for memory (RAMInBytes or -1), "text" for CPU lists.
FLAGS = {
    "blkio_weight": ("blockIO", "weight", "int"),
    "cpu_period": ("cpu", "period", "uint"),
    "cpu_quota": ("cpu", "quota", "int"),
    "cpu_burst": ("cpu", "burst", "uint"),
    "cpu_idle": ("cpu", "idle", "int"),
    "cpu_share": ("cpu", "shares", "uint"),
    "cpu_rt_period": ("cpu", "realtimePeriod", "uint"),
    "cpu_rt_runtime": ("cpu", "realtimeRuntime", "int"),
    "cpuset_cpus": ("cpu", "cpus", "text"),
    "cpuset_mems": ("cpu", "mems", "text"),
    "memory": ("memory", "limit", "size"),
    "memory_reservation": ("memory", "reservation", "size"),
    "memory_swap": ("memory", "swap", "size"),
    "pids_limit": ("pids", "limit", "int"),
}


def _flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def ram_in_bytes(text: str) -> int:
    """docker/go-units' ``RAMInBytes``: ``<number>[ ][kmgtp][i][b]``, powers of 1024.

    The number may have a fraction (``1.5g``); the result is truncated to an integer
    like Go's ``int64(float)``. Raises ValueError.
    """
    rest = text
    if rest[-1:] in ("b", "B"):
        rest = rest[:-1]
    if rest[-1:] in ("i", "I"):
        rest = rest[:-1]
    shift = 0
    if rest[-1:] and rest[-1].lower() in "kmgtp":
        shift = 10 * ("kmgtp".index(rest[-1].lower()) + 1)
        rest = rest[:-1]
    if rest.endswith(" "):
        rest = rest[:-1]
    whole, _dot, fraction = rest.partition(".")
    if not _digits(whole) or (_dot and not _digits(fraction)):
        raise ValueError(f"invalid size: '{text}'")
    value = int(float(rest) * (1 << shift)) if _dot else int(whole) << shift
    if value > _INT64_MAX:
        raise ValueError(f"'{text}' is too large")
    return value


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _parse(kind: str, text: str) -> int | str:
    """One flag value, or ValueError with Go's wording."""
    if kind == "text":
        return text
    if kind == "size":
        return -1 if text == "-1" else ram_in_bytes(text)
    negative = kind == "int" and text.startswith("-")
    digits = text[1:] if negative else text
    if not _digits(digits):
        raise ValueError(f'parsing "{text}": invalid syntax')
    value = -int(digits) if negative else int(digits)
    high = _UINT64_MAX if kind == "uint" else _INT64_MAX
    if value > high or value < -_INT64_MAX - 1:
        raise ValueError(f'parsing "{text}": value out of range')
    return value


def update_resources_from_flags(parsed: Parsed) -> dict[str, Any]:
    """The ``linux.resources`` document the update flags ask for (given flags only).

    runc's rules: an empty value (``--memory ""``) and ``--blkio-weight 0`` change
    nothing; ``--pids-limit`` counts whenever it is given (0 is a limit). Values are
    checked as config.json's are; errors name the flag.
    """
    resources: dict[str, Any] = {}
    paths = {}
    for dest, (section, key, kind) in FLAGS.items():
        if not parsed.given(dest):
            continue
        text = parsed.text(dest)
        if text == "" and dest != "pids_limit":
            continue
        try:
            value = _parse(kind, text)
        except ValueError as error:
            raise UsageError(f"invalid value for {_flag_name(dest)}: {error}") from None
        if dest == "blkio_weight" and value == 0:
            continue
        resources.setdefault(section, {})[key] = value
        paths[f"{section}.{key}"] = dest
    try:
        _check_resources(resources, "update")
    except ConfigError as error:
        flag = paths.get(error.path)
        if flag is None:  # pragma: no cover - every rule names a flag's field
            raise
        raise UsageError(f"invalid value for {_flag_name(flag)}: {error.message}") from None
    return resources


def _check_resources(document: object, source: str) -> None:
    """Linux's rules for ``linux.resources``; elsewhere the backend refuses ``update``."""
    if sys.platform.startswith("linux"):
        from corral.linux.cgroups.convert import check_resources

        check_resources(document, where="", source=source)


_RDT_FLAGS = {"l3CacheSchema": "--l3-cache-schema", "memBwSchema": "--mem-bw-schema"}


def intel_rdt_from_flags(parsed: Parsed) -> dict[str, str]:
    """``--l3-cache-schema``/``--mem-bw-schema`` as ``linux.intelRdt`` keys ({} if neither)."""
    out = {}
    for dest, key, prefix in (
        ("l3_cache_schema", "l3CacheSchema", "L3"),
        ("mem_bw_schema", "memBwSchema", "MB:"),
    ):
        value = parsed.text(dest)
        if not value:
            continue
        # The resctrl schemata line format (Documentation/arch/x86/resctrl.rst).
        if "\n" in value or not value.startswith(prefix):
            raise UsageError(
                f"invalid value for {_flag_name(dest)}: must be one line starting with {prefix}"
            )
        out[key] = value
    return out


def read_resources_document(name: str) -> dict[str, Any]:
    """``--resources``: the JSON in file ``name``, or stdin for ``-``, checked."""
    from corral.core import jsonio

    source = "stdin" if name == "-" else name
    try:
        if name == "-":
            text = sys.stdin.buffer.read()
        else:
            with open(name, "rb") as f:
                text = f.read()
    except OSError as error:
        raise UsageError(f"--resources: {name}: {error.strerror}") from None
    try:
        document = jsonio.loads(text)
    except (jsonio.JSONError, ValueError, UnicodeDecodeError) as error:
        raise ConfigError("", f"not a JSON document: {error}", source=source) from None
    _check_resources(document, source)
    assert isinstance(document, dict)
    return document


def cmd_update(options: Parsed, parsed: Parsed) -> int:
    from corral.core.runtime import Runtime

    if parsed.text("resources"):
        resources = read_resources_document(parsed.text("resources"))
    else:
        resources = update_resources_from_flags(parsed)
    intel_rdt = intel_rdt_from_flags(parsed)
    Runtime(options.text("root")).update(
        parsed.args[0],
        resources,
        intel_rdt=[intel_rdt[key] for key in _RDT_FLAGS if key in intel_rdt],
    )
    return 0
