"""Resource limits for a jail, as rctl(8) rules, from ``org.corral.freebsd.rctl.*`` annotations.

The OCI spec has no FreeBSD resources section, and ``linux.resources`` is refused on
FreeBSD with the rest of the ``linux`` section. So corral reads limits from
annotations, a corral extension:

    "annotations": {
        "org.corral.freebsd.rctl.memoryuse": "512m",
        "org.corral.freebsd.rctl.maxproc": "100",
        "org.corral.freebsd.rctl.pcpu": "50",
        "org.corral.freebsd.rctl.readbps": "throttle=10m"
    }

Each ``org.corral.freebsd.rctl.<resource>`` annotation becomes one rule on the jail,
``jail:<jail name>:<resource>:<action>=<amount>``, added with rctl_add_rule(2) at
``create`` and removed at ``delete``. The value is ``<amount>``, or ``<action>=<amount>``
to choose the action. Resources, as rctl(8) names them, with their unit and the action
used when the value names none:

    resource         unit                               default action
    cputime          CPU time, seconds                  sigkill
    datasize         data size, bytes                   deny
    stacksize        stack size, bytes                  deny
    coredumpsize     core dump size, bytes              deny
    memoryuse        resident set size, bytes           deny
    memorylocked     locked memory, bytes               deny
    maxproc          number of processes                deny
    openfiles        file descriptor table size         deny
    vmemoryuse       address space, bytes               deny
    pseudoterminals  number of PTYs                     deny
    swapuse          swap reserved or used, bytes       deny
    nthr             number of threads                  deny
    msgqqueued       queued SysV messages               deny
    msgqsize         SysV message queue size, bytes     deny
    nmsgq            number of SysV message queues      deny
    nsem             number of SysV semaphores          deny
    nsemop           SysV semaphores per semop(2) call  deny
    nshm             number of SysV shared memory segs  deny
    shmsize          SysV shared memory size, bytes     deny
    wallclock        wall clock time, seconds           sigkill
    pcpu             %CPU, percent of one CPU           deny
    readbps          file system reads, bytes/s         throttle
    writebps         file system writes, bytes/s        throttle
    readiops         file system reads, operations/s    throttle
    writeiops        file system writes, operations/s   throttle

Amounts are non-negative decimal integers. Byte amounts (and bytes per second) may end
in ``k``, ``m``, ``g``, ``t``, ``p`` or ``e`` (powers of 1024, either case), as
rctl(8) reads them with expand_number(3); the system call takes plain numbers, so
corral expands them. ``pcpu`` is at most 100 times the number of CPUs.

Actions are ``deny``, ``log``, ``devctl``, ``throttle`` or a signal (``sigterm``,
``sigkill``, ... every ``sig<name>`` of signal(3)). The kernel refuses some pairs
(kern_rctl.c, rctl_rule_add) and so does corral, before anything is created: ``deny``
for ``cputime``, ``wallclock`` and the four I/O rates (the kernel only counts them),
``throttle`` for anything but the I/O rates. Hence the defaults: ``sigkill`` once the
jail has used up its CPU or wall clock time, ``throttle`` for the I/O rates.

A wrong annotation is an error of ``create`` naming it
(``annotations["org.corral.freebsd.rctl.maxproc"]``). Other annotations are ignored.
The kernel must have RACCT turned on (``kern.racct.enable=1`` in /boot/loader.conf; a
kernel built with ``RACCT_DEFAULT_TO_DISABLED``, as GENERIC is, has it off), or ``create``
fails saying so.

Rules name the jail, not its id: rctl finds the jail's accounting by name, so a rule
may be added before the jail exists and keeps no jail alive.
"""

from __future__ import annotations

import errno
import os

from corral.errors import ConfigError, CreateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from corral.spec.model import Spec

    class RctlSyscalls(Protocol):
        """The part of :class:`corral.freebsd.syscalls.FreeBSDSyscalls` used here."""

        def rctl_add_rule(self, rule: str) -> None: ...

        def rctl_remove_rule(self, filter: str) -> None: ...


ANNOTATION_PREFIX = "org.corral.freebsd.rctl."

_BYTES, _COUNT, _SECONDS, _PERCENT = "bytes", "count", "seconds", "percent"
# rctl(8) RESOURCES, in its order: resource -> (unit, default action).
RESOURCES: dict[str, tuple[str, str]] = {
    "cputime": (_SECONDS, "sigkill"),
    "datasize": (_BYTES, "deny"),
    "stacksize": (_BYTES, "deny"),
    "coredumpsize": (_BYTES, "deny"),
    "memoryuse": (_BYTES, "deny"),
    "memorylocked": (_BYTES, "deny"),
    "maxproc": (_COUNT, "deny"),
    "openfiles": (_COUNT, "deny"),
    "vmemoryuse": (_BYTES, "deny"),
    "pseudoterminals": (_COUNT, "deny"),
    "swapuse": (_BYTES, "deny"),
    "nthr": (_COUNT, "deny"),
    "msgqqueued": (_COUNT, "deny"),
    "msgqsize": (_BYTES, "deny"),
    "nmsgq": (_COUNT, "deny"),
    "nsem": (_COUNT, "deny"),
    "nsemop": (_COUNT, "deny"),
    "nshm": (_COUNT, "deny"),
    "shmsize": (_BYTES, "deny"),
    "wallclock": (_SECONDS, "sigkill"),
    "pcpu": (_PERCENT, "deny"),
    "readbps": (_BYTES, "throttle"),
    "writebps": (_BYTES, "throttle"),
    "readiops": (_COUNT, "throttle"),
    "writeiops": (_COUNT, "throttle"),
}
# kern_racct.c: the "decaying" resources, the only ones rctl throttles (pcpu aside).
THROTTLED = frozenset(("readbps", "writebps", "readiops", "writeiops"))
# Neither deniable in racct_types nor one of the two exceptions (memoryuse, pcpu).
NOT_DENIABLE = THROTTLED | {"cputime", "wallclock"}
# RACCT_IN_MILLIONS: the kernel multiplies these amounts by 10^6 and refuses overflow.
IN_MILLIONS = frozenset(("cputime", "wallclock", "pcpu"))
SIGNAL_ACTIONS = (
    "sighup", "sigint", "sigquit", "sigill", "sigtrap", "sigabrt", "sigemt", "sigfpe",
    "sigkill", "sigbus", "sigsegv", "sigsys", "sigpipe", "sigalrm", "sigterm", "sigurg",
    "sigstop", "sigtstp", "sigchld", "sigttin", "sigttou", "sigio", "sigxcpu", "sigxfsz",
    "sigvtalrm", "sigprof", "sigwinch", "siginfo", "sigusr1", "sigusr2", "sigthr",
)  # fmt: skip
ACTIONS = frozenset(("deny", "log", "devctl", "throttle", *SIGNAL_ACTIONS))
INT64_MAX = 2**63 - 1
_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}


def rctl_rules(
    annotations: dict[str, str], jail_name: str, *, ncpu: int | None = None
) -> list[str]:
    """The rctl rules the ``org.corral.freebsd.rctl.*`` annotations ask for, by resource.

    ``ncpu`` bounds ``pcpu`` (default: this host's CPU count). Raises
    :class:`ConfigError` naming the annotation for a bad one.
    """
    _check_jail_name(jail_name)
    rules: list[str] = []
    for key in sorted(annotations):
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        where = f'annotations["{key}"]'
        resource = key[len(ANNOTATION_PREFIX) :]
        if resource not in RESOURCES:
            raise ConfigError(
                where,
                f'unknown rctl resource "{resource}" (rctl(8) has {", ".join(RESOURCES)})',
            )
        action, amount = parse_limit(resource, annotations[key], where, ncpu=ncpu)
        rules.append(f"jail:{jail_name}:{resource}:{action}={amount}")
    return rules


def check_rctl(spec: Spec) -> None:
    """Reject bad rctl annotations before anything is created."""
    rctl_rules(spec.annotations, "check")


def parse_limit(
    resource: str, value: str, where: str, *, ncpu: int | None = None
) -> tuple[str, int]:
    """``(action, amount)`` of one annotation value for ``resource``; see the module doc."""
    unit, action = RESOURCES[resource]
    text = value
    if "=" in value:
        action, _, text = value.partition("=")
        if action not in ACTIONS:
            raise ConfigError(
                where,
                f'unknown rctl action "{action}" (deny, log, devctl, throttle or a signal '
                "such as sigterm)",
            )
        if action == "deny" and resource in NOT_DENIABLE:
            hint = "throttle" if resource in THROTTLED else "a signal such as sigkill"
            raise ConfigError(
                where, f"rctl cannot deny {resource}, it only counts it: use {hint}, log or devctl"
            )
        if action == "throttle" and resource not in THROTTLED:
            raise ConfigError(
                where, "rctl throttles only readbps, writebps, readiops and writeiops"
            )
    amount = _amount(text, unit, where)
    limit = INT64_MAX // 1_000_000 if resource in IN_MILLIONS else INT64_MAX
    if unit == _PERCENT:
        cpus = ncpu if ncpu is not None else (os.cpu_count() or 1)
        limit = 100 * cpus
    if amount > limit:
        raise ConfigError(where, f"{amount} is above the maximum {limit} for {resource}")
    return action, amount


def _amount(text: str, unit: str, where: str) -> int:
    digits, scale = text, 1
    if unit == _BYTES and text and text[-1].lower() in _SUFFIXES:
        digits, scale = text[:-1], _SUFFIXES[text[-1].lower()]
    if not (digits and digits.isascii() and digits.isdigit()):
        expected = (
            "a number of bytes, with an optional k, m, g, t, p or e suffix"
            if unit == _BYTES
            else f"a non-negative integer ({unit})"
        )
        raise ConfigError(where, f'"{text}": expected {expected}')
    return int(digits) * scale


def _check_jail_name(jail_name: str) -> None:
    # ":" separates the fields of a rule and "," the rules rctl_get_rules(2) returns.
    if not jail_name or any(c in jail_name for c in ":,/=\0"):
        raise CreateError(f'jail name "{jail_name}" cannot be the subject of an rctl rule')


def apply_rctl(sc: RctlSyscalls, rules: list[str]) -> None:
    """Add ``rules``; if one fails, remove the ones added and raise :class:`CreateError`."""
    added: list[str] = []
    for rule in rules:
        try:
            sc.rctl_add_rule(rule)
        except OSError as error:
            for done in reversed(added):
                try:
                    # The whole rule is also a filter that matches just it.
                    sc.rctl_remove_rule(done)
                except OSError:
                    pass  # nothing better to do: the rule stays until delete's filter
            raise CreateError(f'rctl rule "{rule}": {_explain(error)}') from None
        added.append(rule)


def remove_rctl(sc: RctlSyscalls, jail_name: str) -> list[str]:
    """Remove every rctl rule of jail ``jail_name``; return what failed (at most one line).

    No rule left (ESRCH) is not an error, nor is RACCT being off (ENOSYS): then no rule
    can have been added.
    """
    try:
        sc.rctl_remove_rule(f"jail:{jail_name}")
    except OSError as error:
        if error.errno in (errno.ESRCH, errno.ENOSYS):
            return []
        return [f"rctl rules of jail {jail_name}: {_explain(error)}"]
    return []


def _explain(error: OSError) -> str:
    if error.errno == errno.ENOSYS:
        return (
            "resource limits are off in this kernel (set kern.racct.enable=1 in "
            "/boot/loader.conf and reboot)"
        )
    if error.errno == errno.EOPNOTSUPP:
        return "the kernel does not support this action for this resource"
    if error.errno == errno.EPERM:
        return "not permitted (rctl rules need root on the host, not in a jail)"
    if error.strerror:
        return error.strerror
    return os.strerror(error.errno) if error.errno else str(error)
