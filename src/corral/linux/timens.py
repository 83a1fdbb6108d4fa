"""The ``time`` namespace and ``linux.timeOffsets`` (time_namespaces(7)).

A time namespace gives ``CLOCK_MONOTONIC`` and ``CLOCK_BOOTTIME`` (and their
``_COARSE``/``_RAW``/``_ALARM`` variants) an offset; the wall clock is shared.
Three kernel rules set the order:

1. ``unshare(CLONE_NEWTIME)`` does not move the caller: like a pid namespace, the new
   namespace is for its *children* (``/proc/self/ns/time_for_children``).
2. Its offsets are written to ``/proc/<pid>/timens_offsets`` of a process whose
   ``time_for_children`` it is, with ``CAP_SYS_TIME`` in the user namespace that owns it.
3. They are frozen when the first process enters the namespace; a later write fails
   with ``EACCES``.

corral's init is already running when it sets up namespaces and must itself be in the
container's time namespace, so :func:`enter_time_namespace` does it from the inside:
it unshares ``CLONE_NEWTIME`` (unless the init's batched unshare already did),
writes the offsets to ``/proc/self/timens_offsets``, and then joins its own
``time_for_children`` with setns(2), which does move the caller (and fails with
``EUSERS`` if it has threads). The init is the first member, so the offsets are
frozen exactly as written, and every process it forks afterwards inherits the
namespace. In a user namespace the init cannot open its own ``timens_offsets`` (it
is non-dumpable, so its ``/proc`` files belong to the host's root), so the caller
passes ``write_offsets``, which has the runtime's parent write
``/proc/<init pid>/timens_offsets`` between the unshare and the setns.

A namespace joined by ``path`` needs none of this: setns(2) moves the init at once,
so it goes with the other joined namespaces; its offsets are already frozen, so
``timeOffsets`` is refused with a ``path`` (as runc does).

The offsets must not take a clock below zero or past ``KTIME_SEC_MAX / 2``
(``ERANGE``), which depends on the host's uptime; the error says the current value.
"""

from __future__ import annotations

import errno
import os

from corral.errors import ConfigError, CreateError
from corral.linux.syscalls import CLONE_NEWTIME
from corral.spec.reader import Fields, describe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Spec

CLOCKS = ("monotonic", "boottime")
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_NSEC_PER_SEC = 1_000_000_000


def time_offsets(spec: Spec) -> dict[str, tuple[int, int]]:
    """``linux.timeOffsets`` as ``{clock: (secs, nanosecs)}`` (pure; empty if absent)."""
    linux = Fields(spec.raw, "").obj("linux")
    fields = None if linux is None else linux.obj("timeOffsets")
    if fields is None:
        return {}
    offsets: dict[str, tuple[int, int]] = {}
    for clock in fields.data:
        if clock not in CLOCKS:
            raise ConfigError(
                fields.at(clock), f"unknown clock {describe(clock)} (monotonic or boottime)"
            )
        entry = fields.obj(clock)
        if entry is None:
            continue
        secs = entry.integer("secs", minimum=_INT64_MIN, maximum=_INT64_MAX) or 0
        nanosecs = entry.integer("nanosecs", minimum=0, maximum=_NSEC_PER_SEC - 1) or 0
        offsets[clock] = (secs, nanosecs)
    return offsets


def check_time_namespace(spec: Spec) -> None:
    """Offsets are valid and go with a *new* time namespace (pure)."""
    offsets = time_offsets(spec)
    if not offsets:
        return
    namespace = spec.linux.namespace("time") if spec.linux else None
    if namespace is None:
        raise ConfigError(
            "linux.timeOffsets", 'needs a time namespace: add {"type": "time"} to linux.namespaces'
        )
    if namespace.path:
        raise ConfigError(
            "linux.timeOffsets",
            "cannot change a time namespace joined by path (its offsets are frozen)",
        )


def offsets_text(offsets: dict[str, tuple[int, int]]) -> str:
    """The lines written to ``timens_offsets``: ``<clock> <secs> <nanosecs>``."""
    return "".join(f"{clock} {secs} {nsecs}\n" for clock, (secs, nsecs) in offsets.items())


def wants_new_time_namespace(spec: Spec) -> bool:
    namespace = spec.linux.namespace("time") if spec.linux else None
    return namespace is not None and not namespace.path


def enter_time_namespace(
    sc: Syscalls,
    spec: Spec,
    *,
    write_offsets: Callable[[], None] | None = None,
    proc: str = "/proc",
) -> None:
    """Create the container's time namespace, set its offsets, and move the caller in.

    Called by the init (single-threaded, still privileged) once, after the other
    namespaces and before it forks anything. Does nothing without a new ``time``
    namespace in the config. ``write_offsets`` is called between the unshare and the
    setns when there are offsets; by default the caller writes its own file, which
    works outside a user namespace only (see :func:`write_time_offsets`).
    """
    if not wants_new_time_namespace(spec):
        return
    self_dir = f"{proc}/self"
    try:
        current = os.stat(f"{self_dir}/ns/time")
        for_children = os.stat(f"{self_dir}/ns/time_for_children")
    except FileNotFoundError:
        raise CreateError(
            "linux.namespaces: this kernel has no time namespaces (Linux 5.6, CONFIG_TIME_NS)"
        ) from None
    if (current.st_dev, current.st_ino) == (for_children.st_dev, for_children.st_ino):
        try:
            sc.unshare(CLONE_NEWTIME)
        except OSError as error:
            raise CreateError(f"time namespace: {error.strerror or error}") from error
    if time_offsets(spec):
        if write_offsets is None:
            write_time_offsets(spec, "self", proc=proc)
        else:
            write_offsets()
    try:
        fd = os.open(f"{self_dir}/ns/time_for_children", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise CreateError(f"time namespace: {error.strerror or error}") from error
    try:
        sc.setns(fd, CLONE_NEWTIME, "time_for_children")
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno == errno.EUSERS:
            reason += " (the init must be single-threaded to change its time namespace)"
        raise CreateError(f"time namespace: entering it: {reason}") from error
    finally:
        os.close(fd)


def write_time_offsets(spec: Spec, pid: int | str = "self", *, proc: str = "/proc") -> None:
    """Write ``linux.timeOffsets`` to ``<proc>/<pid>/timens_offsets``, if there are any.

    ``pid`` must have unshared ``CLONE_NEWTIME``, and no process may have entered the
    namespace yet. In a user namespace the init cannot open its own file: it is
    non-dumpable (CVE-2019-5736), so its ``/proc`` files belong to the host's root,
    which the namespace does not map. The runtime's parent process, root on the host,
    then writes it with the init's pid, as runc's parent does.
    """
    offsets = time_offsets(spec)
    if not offsets:
        return
    text = offsets_text(offsets)
    path = f"{proc}/{pid}/timens_offsets"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        if error.errno == errno.EACCES:
            reason += " (a non-dumpable process in a user namespace: the parent must write it)"
        raise CreateError(f"linux.timeOffsets: opening {path}: {reason}") from error
    try:
        os.write(fd, text.encode())
    except OSError as error:
        raise CreateError(f"linux.timeOffsets: writing {path}: {_explain(error)}") from error
    finally:
        os.close(fd)


def _explain(error: OSError) -> str:
    reason = os.strerror(error.errno) if error.errno else str(error)
    if error.errno == errno.ERANGE:
        import time

        now = ", ".join(
            f"{name} is at {int(time.clock_gettime(clock))} s"
            for name, clock in (("monotonic", time.CLOCK_MONOTONIC),
                                ("boottime", time.CLOCK_BOOTTIME))
        )  # fmt: skip
        return f"{reason}: an offset would take a clock below 0 or too far ({now})"
    if error.errno == errno.EACCES:
        return f"{reason}: a process already entered the time namespace (offsets are frozen)"
    if error.errno == errno.EPERM:
        return f"{reason}: writing offsets needs CAP_SYS_TIME"
    return reason
