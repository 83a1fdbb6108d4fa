"""Capability names, their bit numbers, and the checks on ``process.capabilities``.

The table is ``<linux/capability.h>`` as a plain dict (CAP_CHOWN = 0 ... CAP_CHECKPOINT_RESTORE
= 40): the spec names capabilities as strings and the kernel takes 64-bit masks, so
:func:`capability_mask` turns a list of names into the mask ``capset(2)`` wants.

A name can be in the table yet unknown to the running kernel (CAP_BPF needs Linux 5.8,
CAP_CHECKPOINT_RESTORE 5.9); the kernel's highest number is in
``/proc/sys/kernel/cap_last_cap`` (capabilities(7)). :func:`kernel_last_cap` reads it once
per process: ``create`` reads it while checking the config, and the container's init, a
fork of ``create``, inherits the cached value even after it has pivoted into a root that
may have no ``/proc``.
"""

from __future__ import annotations

from corral.errors import ConfigError
from corral.spec.reader import describe, join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Capabilities

CAPABILITIES = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}
CAPABILITY_NAMES = {number: name for name, number in CAPABILITIES.items()}
LAST_KNOWN_CAP = max(CAPABILITIES.values())

# The order in which the sets are checked, so the first error reported is stable.
_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")

_last_cap: int | None = None


def capability_mask(names: Iterable[str]) -> int:
    """The 64-bit mask with the bit of each named capability set (names must be valid)."""
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITIES[name]
    return mask


def kernel_last_cap(sc: Syscalls | None = None) -> int:
    """The running kernel's highest capability number, read once per process.

    When ``/proc`` cannot be read, ask the kernel through ``sc`` (:func:`probe_last_cap`),
    or without one assume the highest number corral knows: a check then does not reject
    a name the kernel may know, and the init, which has ``sc``, gets the exact value.
    """
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
                _last_cap = int(f.read().strip())
        except (OSError, ValueError):
            if sc is None:
                return LAST_KNOWN_CAP
            _last_cap = probe_last_cap(sc)
    return _last_cap


def probe_last_cap(sc: Syscalls) -> int:
    """Ask the kernel for its highest capability: PR_CAPBSET_READ fails with EINVAL past it."""
    from corral.linux.syscalls import PR_CAPBSET_READ

    last = -1
    while last < 63:
        try:
            sc.prctl(PR_CAPBSET_READ, last + 1)
        except OSError:
            break
        last += 1
    return last


def check_capabilities(caps: Capabilities, where: str) -> None:
    """Reject names that are no capability at all, and sets ``capset(2)`` would refuse.

    ``where`` is the JSON path of the capabilities object (``process.capabilities``).
    """
    for set_name in _SETS:
        for index, name in enumerate(getattr(caps, set_name)):
            path = join(join(where, set_name), index)
            number = CAPABILITIES.get(name)
            if number is None:
                raise ConfigError(path, f"unknown capability {describe(name)}")
            # A name this kernel lacks is not an error: config.md says a capability that
            # cannot be granted "MUST be logged as a warning" and runtimes "SHOULD NOT
            # fail"; the init leaves it out with that warning (credentials.Granted).
    # capset(2) fails with EPERM when the new effective set is not a subset of the new
    # permitted set: say so now, naming the capability, rather than after the fork.
    permitted = set(caps.permitted)
    for index, name in enumerate(caps.effective):
        if name not in permitted:
            raise ConfigError(
                join(join(where, "effective"), index),
                f"{name} is effective but not permitted (effective must be a subset of permitted)",
            )
    # An ambient capability that is not both permitted and inheritable is no error here:
    # PR_CAP_AMBIENT_RAISE would fail with EPERM (capabilities(7), "Ambient capability
    # set"), so the init leaves it out with a warning, as the spec asks of a capability
    # that cannot be granted. `runc spec` writes such a config (ambient, no inheritable)
    # and runc runs it, ignoring the failed raise without a word.
