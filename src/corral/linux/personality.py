"""``linux.personality``: the execution domain, set with personality(2).

The spec knows two domains: ``LINUX`` (``PER_LINUX``, 0) and ``LINUX32``
(``PER_LINUX32``, 8), which makes uname(2) report a 32-bit machine (``i686`` on
x86_64). It defines no flags, so any entry of ``flags`` is refused rather than
ignored (runc logs a warning and drops them; corral never half-applies a config).

The whole persona is replaced, as runc does: flags the runtime itself inherited (say
``ADDR_NO_RANDOMIZE`` from ``setarch -R``) do not leak into the container.
The persona survives execve(2) (personality(2): only the ``PER_CLEAR_ON_SETID`` flags
are dropped for set-user-ID programs, and the spec's domains have none), so the
init can set it at any point before it execs; :func:`apply_personality` checks the
result with a query, as personality(2) does not fail for an unknown domain.
"""

from __future__ import annotations

from corral.errors import ConfigError, CreateError, UnsupportedError
from corral.spec.reader import Fields, describe, join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Spec

# <linux/personality.h>
DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}
PERSONALITY_QUERY = 0xFFFFFFFF


def personality_value(spec: Spec) -> int | None:
    """The persona ``linux.personality`` asks for, or None when it is absent."""
    linux = Fields(spec.raw, "").obj("linux")
    fields = None if linux is None else linux.obj("personality")
    if fields is None:
        return None
    domain = fields.string("domain", required=True)
    if domain not in DOMAINS:
        raise ConfigError(
            fields.at("domain"), f"unknown domain {describe(domain)} (LINUX or LINUX32)"
        )
    flags = fields.strings("flags")
    if flags:
        raise UnsupportedError(
            join(fields.at("flags"), 0), f"{describe(flags[0])}: the spec defines no flags"
        )
    return DOMAINS[domain]


def check_personality(spec: Spec) -> None:
    """Refuse an unknown domain or any flag (pure)."""
    personality_value(spec)


def apply_personality(sc: Syscalls, spec: Spec) -> None:
    """Set the persona; the init calls it once, before it execs."""
    value = personality_value(spec)
    if value is None:
        return
    try:
        sc.personality(value)
        now = sc.personality(PERSONALITY_QUERY)
    except OSError as error:
        raise CreateError(f"linux.personality: {error.strerror or error}") from error
    if now != value:
        raise CreateError(
            f"linux.personality: the kernel kept persona {now:#x} instead of {value:#x}"
        )
