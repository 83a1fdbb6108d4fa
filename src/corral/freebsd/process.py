"""The jailed process's attributes on FreeBSD: rlimits, user, groups, cwd, umask.

FreeBSD has no capabilities, oom scores or LSM labels: a config asking for them is
refused by :func:`corral.freebsd.params.check_freebsd`, naming the field.
``noNewPrivileges`` maps to ``procctl(PROC_NO_NEW_PRIVS_CTL)`` (FreeBSD 14.0 and
later). The rlimit names are FreeBSD's (getrlimit(2)): ``RLIMIT_NPTS``,
``RLIMIT_SWAP``, ``RLIMIT_KQUEUES`` and ``RLIMIT_UMTXP`` exist here and not on Linux,
and the numbers differ.
"""

from __future__ import annotations

import os

from corral.errors import ConfigError, CreateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from corral.spec.model import Process, Spec

    class ProcessCalls(Protocol):
        """What :func:`apply_process` needs: the FreeBSD syscall layer has it."""

        def setrlimit(self, resource: int, soft: int, hard: int) -> None: ...

        def procctl(self, idtype: int, ident: int, command: int, value: int) -> None: ...


# sys/resource.h
RLIMITS = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_MEMLOCK": 6,
    "RLIMIT_NPROC": 7,
    "RLIMIT_NOFILE": 8,
    "RLIMIT_SBSIZE": 9,
    "RLIMIT_VMEM": 10,
    "RLIMIT_AS": 10,
    "RLIMIT_NPTS": 11,
    "RLIMIT_SWAP": 12,
    "RLIMIT_KQUEUES": 13,
    "RLIMIT_UMTXP": 14,
}
# sys/procctl.h
P_PID = 0
PROC_PDEATHSIG_CTL = 11
PROC_NO_NEW_PRIVS_CTL = 19
PROC_NO_NEW_PRIVS_ENABLE = 1


def check_process(spec: Spec) -> None:
    """Refuse what a jailed process cannot be given, before anything is created."""
    process = spec.process
    if process is None:
        raise ConfigError("process", "required field is missing")
    # The Linux-only fields (capabilities, oomScoreAdj...) are refused by
    # corral.freebsd.params.check_freebsd with the other platforms' sections.
    for index, limit in enumerate(process.rlimits):
        if limit.type not in RLIMITS:
            raise ConfigError(
                f"process.rlimits[{index}].type",
                f'unknown resource limit "{limit.type}" (FreeBSD has {", ".join(sorted(RLIMITS))})',
            )


def apply_process(sc: ProcessCalls, process: Process) -> None:
    """Inside the jail, as root still: rlimits, cwd, groups, gid, uid, umask, no_new_privs.

    The order is the Linux init's: limits while root may still raise hard ones,
    ``setgroups`` before ``setgid`` before ``setuid``, ``chdir`` as the user.
    """
    for limit in process.rlimits:
        sc.setrlimit(RLIMITS[limit.type], limit.soft, limit.hard)
    if not os.path.isdir(process.cwd):
        # As runc does on Linux: an image's WORKDIR may exist in no layer. jail_attach(2)
        # has chrooted us, so the path cannot lead out of the jail's root.
        try:
            os.makedirs(process.cwd, 0o755, exist_ok=True)
        except OSError as error:
            raise CreateError(f'process.cwd "{process.cwd}": {error.strerror}') from None
    user = process.user
    try:
        if (os.getuid(), os.getgid(), sorted(os.getgroups())) != (
            user.uid,
            user.gid,
            sorted(user.additional_gids),
        ):  # already the user (an unprivileged test run): setgroups(2) would need root
            os.setgroups(user.additional_gids)
            os.setgid(user.gid)
            os.setuid(user.uid)
    except OSError as error:
        raise CreateError(
            f"process.user: cannot become uid {user.uid} gid {user.gid}: {error.strerror}"
        ) from None
    try:
        os.chdir(process.cwd)
    except OSError as error:
        raise CreateError(f'process.cwd "{process.cwd}": {error.strerror}') from None
    if user.umask is not None:
        os.umask(user.umask)
    if process.no_new_privileges:
        try:
            sc.procctl(P_PID, 0, PROC_NO_NEW_PRIVS_CTL, PROC_NO_NEW_PRIVS_ENABLE)
        except OSError as error:
            raise CreateError(
                f"process.noNewPrivileges: procctl(PROC_NO_NEW_PRIVS_CTL) needs FreeBSD 14: "
                f"{error.strerror}"
            ) from None
