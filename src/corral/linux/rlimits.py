"""Resource limits: ``process.rlimits``.

The rlimit numbers are those of ``<asm-generic/resource.h>``, which x86_64 and aarch64
use (the only machines :class:`~corral.linux.syscalls.Syscalls` knows); the names are the
``RLIMIT_*`` of getrlimit(2). Limits are set with prlimit(2) on the init itself and are
inherited through execve(2). They are applied while the init still has
CAP_SYS_RESOURCE, i.e. before :func:`~corral.linux.credentials.apply_credentials`:
raising a hard limit needs it.
"""

from __future__ import annotations

import os

from corral.errors import ConfigError, CreateError
from corral.spec.reader import describe, join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Rlimit

RLIMITS = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}


def check_rlimits(rlimits: list[Rlimit], where: str = "process.rlimits") -> None:
    """Reject ``type`` values getrlimit(2) does not define (the spec's MUST)."""
    for index, limit in enumerate(rlimits):
        if limit.type not in RLIMITS:
            raise ConfigError(
                join(join(where, index), "type"), f"unknown rlimit {describe(limit.type)}"
            )


def apply_rlimits(sc: Syscalls, rlimits: list[Rlimit]) -> None:
    """Set each limit on the calling process, in the order of the config."""
    for index, limit in enumerate(rlimits):
        try:
            sc.prlimit(RLIMITS[limit.type], limit.soft, limit.hard)
        except (OSError, ValueError, OverflowError) as error:
            errno = error.errno if isinstance(error, OSError) else None
            reason = os.strerror(errno) if errno else str(error)
            raise CreateError(
                f"process.rlimits[{index}]: setting {limit.type} to soft {limit.soft}, "
                f"hard {limit.hard}: {reason}"
            ) from error
