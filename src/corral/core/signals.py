"""Signal names and numbers, without importing :mod:`signal` (1.6-4 ms on every ``kill``).

``kill`` accepts ``KILL``, ``SIGKILL``, ``kill``, ``9`` and ``RTMIN+3`` like runc. The
numbers differ between Linux and FreeBSD, so each platform has its table
(signal(7); FreeBSD's <sys/signal.h>).
"""

from __future__ import annotations

import sys

from corral.errors import UsageError

_COMMON = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6,
    "FPE": 8, "KILL": 9, "SEGV": 11, "PIPE": 13, "ALRM": 14, "TERM": 15,
}  # fmt: skip
LINUX = {
    **_COMMON,
    "BUS": 7, "USR1": 10, "USR2": 12, "STKFLT": 16, "CHLD": 17, "CLD": 17, "CONT": 18,
    "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25,
    "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}  # fmt: skip
FREEBSD = {
    **_COMMON,
    "EMT": 7, "BUS": 10, "SYS": 12, "URG": 16, "STOP": 17, "TSTP": 18, "CONT": 19,
    "CHLD": 20, "TTIN": 21, "TTOU": 22, "IO": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26,
    "PROF": 27, "WINCH": 28, "INFO": 29, "USR1": 30, "USR2": 31, "THR": 32, "LIBRT": 33,
}  # fmt: skip
# First and last real-time signal as applications see them (glibc keeps 32 and 33).
_REALTIME = {"linux": (34, 64), "freebsd": (65, 126)}


def _platform() -> str:
    return "freebsd" if sys.platform.startswith("freebsd") else "linux"


def parse_signal(text: str, platform: str | None = None) -> int:
    """Turn a signal name or number into its number, or raise a usage error naming it."""
    platform = platform or _platform()
    table = FREEBSD if platform == "freebsd" else LINUX
    low, high = _REALTIME[platform]
    if text.isdigit() and text.isascii():
        number = int(text)
        if 0 < number <= high:
            return number
        raise UsageError(f'unknown signal "{text}"')
    name = text.upper()
    name = name.removeprefix("SIG")
    if name in table:
        return table[name]
    for base, origin, sign in (("RTMIN", low, 1), ("RTMAX", high, -1)):
        if name == base:
            return origin
        if name.startswith(base + ("+" if sign > 0 else "-")):
            offset = name[len(base) + 1 :]
            if offset.isdigit() and offset.isascii():
                number = origin + sign * int(offset)
                if low <= number <= high:
                    return number
    raise UsageError(f'unknown signal "{text}"')


def signal_name(number: int, platform: str | None = None) -> str:
    """``9 -> "SIGKILL"``; used in messages about how a container died."""
    table = FREEBSD if (platform or _platform()) == "freebsd" else LINUX
    for name, value in table.items():
        if value == number:
            return "SIG" + name
    return f"signal {number}"
