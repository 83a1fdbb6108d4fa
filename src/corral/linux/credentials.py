"""The container process's user, groups, capabilities and working directory.

:func:`plan_credentials` turns ``process`` into the list of calls to make, in the order
the kernel's rules impose (capabilities(7), "Effect of user ID changes on capabilities"):

1. drop from the bounding set every capability not listed (and still in it, as read
   with PR_CAPBSET_READ): PR_CAPBSET_DROP needs
   CAP_SETPCAP in the effective set, which setuid to a non-zero uid clears;
2. PR_SET_KEEPCAPS=1, so the permitted set survives the uid change;
3. setgroups, then setresgid, then setresuid: each needs the capability (CAP_SETGID,
   CAP_SETUID) that a non-root uid no longer has;
4. PR_SET_KEEPCAPS=0, so the program cannot keep them through a later setuid;
5. capset(effective, permitted, inheritable): setuid cleared the effective set;
6. clear the ambient set, then raise the listed ambient capabilities; ambient is what a
   non-root program keeps through execve(2);
7. umask, then chdir to ``cwd`` as the new user, then PR_SET_NO_NEW_PRIVS.

:func:`apply_credentials` runs the plan through a :class:`Syscalls` object, so a test can
record the calls. No ``capabilities`` in the config means no capabilities at all, as for
runc: empty sets, an empty bounding set. A capability the init does not hold itself is
left out with a warning rather than failing ``create`` (the spec's "SHOULD NOT fail"),
see :class:`Granted`.

:func:`check_process` is the up-front check of the whole process section, called by
``create`` before anything is set up.
"""

from __future__ import annotations

import errno
import os

from corral.errors import CreateError
from corral.linux.capabilities import (
    CAPABILITIES,
    CAPABILITY_NAMES,
    capability_mask,
    check_capabilities,
    kernel_last_cap,
)
from corral.linux.syscalls import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAP_AMBIENT_RAISE,
    PR_CAPBSET_DROP,
    PR_CAPBSET_READ,
    PR_SET_KEEPCAPS,
    PR_SET_NO_NEW_PRIVS,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from corral.linux.syscalls import Syscalls
    from corral.spec.model import Capabilities, Process, Spec


SETGROUPS_FILE = "/proc/self/setgroups"


class Step:
    """One call to make: ``Syscalls.<call>(*args)``; ``what`` starts its error line."""

    __slots__ = ("args", "call", "what")

    def __init__(self, call: str, args: tuple[object, ...], what: str) -> None:
        self.call = call
        self.args = args
        self.what = what

    def __repr__(self) -> str:
        return f"Step({self.call}{self.args!r})"


def check_process(spec: Spec) -> None:
    """Check capability names and sets, rlimit types and sysctls; raise ConfigError."""
    from corral.linux.rlimits import check_rlimits
    from corral.linux.sysctl import check_sysctl

    process = spec.process
    if process is not None:
        if process.capabilities is not None:
            check_capabilities(process.capabilities, "process.capabilities")
        check_rlimits(process.rlimits)
    check_sysctl(spec)


ALL_CAPABILITIES = (1 << 64) - 1


class Granted:
    """The capability masks to set: what the config asks for that can be granted."""

    __slots__ = (
        "_warned",
        "ambient",
        "bounding",
        "effective",
        "inheritable",
        "permitted",
        "warnings",
    )

    def __init__(
        self,
        caps: Capabilities | None,
        held: int = ALL_CAPABILITIES,
        held_inheritable: int = 0,
        held_bounding: int = ALL_CAPABILITIES,
    ) -> None:
        """``held*``: the init's own permitted, inheritable and bounding sets.

        The spec says a capability that cannot be granted is a warning, not a failure.
        A bounding set can only shrink; capset(2) refuses a permitted capability the
        caller lacks, and an inheritable one outside the caller's inheritable and
        bounding sets; an ambient one must end up both permitted and inheritable
        (PR_CAP_AMBIENT_RAISE).
        """
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        if caps is None:
            self.bounding = self.effective = self.permitted = self.inheritable = 0
            self.ambient: list[int] = []
            return
        self.bounding = self._keep(
            caps.bounding, held_bounding, "bounding", "the runtime's bounding set lacks it"
        )
        self.permitted = self._keep(caps.permitted, held, "permitted", "the runtime lacks it")
        self.effective = self._keep(caps.effective, self.permitted, "effective", "not permitted")
        self.inheritable = self._keep(
            caps.inheritable,
            self.bounding | held_inheritable,
            "inheritable",
            "not in the bounding set",
        )
        ambient = self._keep(
            caps.ambient,
            self.permitted & self.inheritable,
            "ambient",
            "not both permitted and inheritable",
        )
        # Raised one by one, once each, in the config's order.
        self.ambient = [
            CAPABILITIES[name]
            for name in dict.fromkeys(caps.ambient)
            if ambient & (1 << CAPABILITIES[name])
        ]

    def _keep(self, names: list[str], allowed: int, set_name: str, why: str) -> int:
        """The mask of ``names`` within ``allowed``; a warning for each one outside.

        One warning per capability: once left out of one set, it is left out of the
        sets that depend on it (effective on permitted...) for the same reason.
        """
        for name in dict.fromkeys(names):
            if not allowed & (1 << CAPABILITIES[name]) and name not in self._warned:
                self._warned.add(name)
                self.warnings.append(
                    f"process.capabilities.{set_name}: {name} cannot be granted ({why})"
                )
        return capability_mask(names) & allowed


def plan_credentials(
    process: Process,
    last_cap: int,
    *,
    held: int = ALL_CAPABILITIES,
    held_inheritable: int = 0,
    held_bounding: int = ALL_CAPABILITIES,
) -> list[Step]:
    """The calls that give the init the config's identity, in order (see the module doc).

    ``held*`` are the init's own sets (see :class:`Granted`); a capability already out
    of the bounding set is not dropped again.
    """
    user = process.user
    granted = Granted(process.capabilities, held, held_inheritable, held_bounding)
    steps = [
        Step("prctl", (PR_CAPBSET_DROP, number), f"process.capabilities.bounding: dropping {name}")
        for number, name in _numbered(last_cap)
        if held_bounding & ~granted.bounding & (1 << number)
    ]
    steps += [
        Step("prctl", (PR_SET_KEEPCAPS, 1), "keeping capabilities across setuid"),
        Step(
            "setgroups",
            (list(user.additional_gids),),
            f"process.user.additionalGids {user.additional_gids}",
        ),
        Step("setresgid", (user.gid,) * 3, f"process.user.gid {user.gid}"),
        Step("setresuid", (user.uid,) * 3, f"process.user.uid {user.uid}"),
        Step("prctl", (PR_SET_KEEPCAPS, 0), "resetting keep-capabilities"),
        Step(
            "capset",
            (granted.effective, granted.permitted, granted.inheritable),
            "process.capabilities",
        ),
        Step("prctl", (PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL), "clearing the ambient set"),
    ]
    steps += [
        Step(
            "prctl",
            (PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, number),
            f"process.capabilities.ambient: raising {CAPABILITY_NAMES[number]}",
        )
        for number in granted.ambient
    ]
    if user.umask is not None:
        steps.append(Step("umask", (user.umask,), f"process.user.umask {user.umask:#o}"))
    steps.append(Step("chdir", (process.cwd,), f'process.cwd "{process.cwd}"'))
    if process.no_new_privileges:
        steps.append(Step("prctl", (PR_SET_NO_NEW_PRIVS, 1), "process.noNewPrivileges"))
    return steps


def _numbered(last_cap: int) -> list[tuple[int, str]]:
    return [(n, CAPABILITY_NAMES.get(n, f"capability {n}")) for n in range(last_cap + 1)]


def apply_credentials(
    sc: Syscalls, process: Process, *, warn: Callable[[str], None] | None = None
) -> None:
    """Run :func:`plan_credentials` on the calling process; raise CreateError on failure.

    Capabilities the init does not hold itself are left out with a warning (the spec's
    "SHOULD NOT fail"); ``warn`` receives each line, by default written to stderr.
    """
    _, held, held_inheritable = sc.capget()
    last_cap = kernel_last_cap(sc)
    held_bounding = 0
    for number in range(last_cap + 1):
        if sc.prctl(PR_CAPBSET_READ, number) == 1:
            held_bounding |= 1 << number
    granted = Granted(process.capabilities, held, held_inheritable, held_bounding)
    for line in granted.warnings:
        (warn or _warn_on_stderr)(line)
    steps = plan_credentials(
        process,
        last_cap,
        held=held,
        held_inheritable=held_inheritable,
        held_bounding=held_bounding,
    )
    for step in steps:
        try:
            getattr(sc, step.call)(*step.args)
        except OSError as error:
            if step.call == "setgroups" and _setgroups_not_needed(error, step.args[0]):
                continue
            raise CreateError(f"{step.what}: {_reason(step, error)}") from error
        if step.call == "chdir":
            _check_cwd_inside_root(step.what)


def _warn_on_stderr(line: str) -> None:
    from corral.core.fastos import tell

    tell(f"corral: warning: {line}\n")


def _reason(step: Step, error: OSError) -> str:
    reason = os.strerror(error.errno) if error.errno else str(error)
    if step.call in ("setresuid", "setresgid") and error.errno == errno.EINVAL:
        reason += " (not mapped in the container's user namespace)"
    return reason


def _setgroups_not_needed(error: OSError, gids: object) -> bool:
    """Whether a failed setgroups([]) can be ignored: the user namespace forbids it.

    In a user namespace whose ``/proc/self/setgroups`` is "deny" (user_namespaces(7)), as
    rootless set-ups write it, setgroups always fails with EPERM; with no additional
    gids requested there is nothing to set, and the groups cannot be changed anyway.
    """
    if error.errno != errno.EPERM or gids:
        return False
    try:
        with open(SETGROUPS_FILE, "rb") as f:
            return f.read().strip() == b"deny"
    except OSError:
        return False


def _check_cwd_inside_root(what: str) -> None:
    """Refuse a working directory outside the container's root.

    CVE-2024-21626: a cwd reached through a leaked host directory fd (``/proc/self/fd/N``)
    is outside the pivoted root; getcwd(3) then fails with ENOENT (the kernel answers
    "(unreachable)/..."). The program must never start there.
    """
    try:
        cwd = os.getcwd()
    except OSError as error:
        raise CreateError(f"{what}: is not inside the container's root") from error
    if not cwd.startswith("/"):
        raise CreateError(f"{what}: is not inside the container's root")
