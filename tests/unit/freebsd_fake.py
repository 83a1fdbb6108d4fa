"""A recording stand-in for :class:`corral.freebsd.syscalls.FreeBSDSyscalls`.

It keeps a small model of the kernel's jails (name -> jid, jids counting up from
``first_jid``) so create/lookup/remove sequences behave as on FreeBSD: creating a name
twice is EEXIST, looking up or removing a missing jail is ENOENT / EINVAL. Every call is
recorded in ``calls`` as a tuple ``(method, *arguments)``; jail parameters are also
run through :func:`encode_params`, so a value the real call could not encode fails
here too. ``fail[(method, key)] = errno`` makes the call with that key (the jail name,
jid, mount point, rule...) raise, once; ``key = "*"`` matches any call of the method.
"""

from __future__ import annotations

import errno
import os

from corral.freebsd.syscalls import (
    JAIL_CREATE,
    JAIL_UPDATE,
    FreeBSDSyscalls,
    encode_mount_options,
    encode_params,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.freebsd.params import JailValue

Call = tuple["Any", ...]


class RecordingFreeBSDSyscalls(FreeBSDSyscalls):
    def __init__(self, first_jid: int = 1, fail: dict[tuple[str, object], int] | None = None):
        super().__init__()
        self.calls: list[Call] = []
        self.next_jid = first_jid
        self.jails: dict[str, int] = {}  # live jails: full name -> jid
        self.fail: dict[tuple[str, object], int] = fail or {}

    # -- helpers -------------------------------------------------------------------

    def _maybe_fail(self, method: str, key: object, what: str) -> None:
        for candidate in ((method, key), (method, "*")):
            err = self.fail.pop(candidate, None)
            if err is not None:
                raise OSError(err, f"{what}: {os.strerror(err)}")

    def methods(self) -> list[str]:
        """The names of the methods called, in order."""
        return [call[0] for call in self.calls]

    def jid_of(self, name: str) -> int:
        return self.jails[name]

    # -- jails ---------------------------------------------------------------------

    def jail_set(self, params: list[tuple[str, JailValue]], flags: int) -> int:
        encode_params(params)
        self.calls.append(("jail_set", list(params), flags))
        values = dict(params)
        name = str(values.get("name", ""))
        self._maybe_fail("jail_set", name, f'jail_set "{name}"')
        if name in self.jails:
            if not flags & JAIL_UPDATE:
                raise OSError(errno.EEXIST, f'jail_set "{name}": jail "{name}" already exists')
            return self.jails[name]
        if not flags & JAIL_CREATE:
            raise OSError(errno.ENOENT, f'jail_set "{name}": jail "{name}" not found')
        jid = self.next_jid
        self.next_jid += 1
        self.jails[name or str(jid)] = jid
        return jid

    def jail_get(self, params: list[tuple[str, JailValue]], flags: int = 0) -> tuple[int, str]:
        encode_params(params)
        self.calls.append(("jail_get", list(params), flags))
        values = dict(params)
        if "name" in values:
            name = str(values["name"])
            self._maybe_fail("jail_get", name, f'jail_get "{name}"')
            if name in self.jails:
                return self.jails[name], name
            raise OSError(errno.ENOENT, f'jail_get "{name}": jail "{name}" not found')
        jid = values.get("jid")
        self._maybe_fail("jail_get", jid, f"jail_get jid {jid}")
        for name, known in self.jails.items():
            if known == jid:
                return known, name
        raise OSError(errno.ENOENT, f"jail_get jid {jid}: jail {jid} not found")

    def jail_attach(self, jid: int) -> None:
        self.calls.append(("jail_attach", jid))
        self._maybe_fail("jail_attach", jid, f"jail_attach {jid}")
        if jid not in self.jails.values():
            raise OSError(errno.EINVAL, f"jail_attach {jid}: {os.strerror(errno.EINVAL)}")

    def jail_remove(self, jid: int) -> None:
        self.calls.append(("jail_remove", jid))
        self._maybe_fail("jail_remove", jid, f"jail_remove {jid}")
        names = [name for name, known in self.jails.items() if known == jid]
        if not names:
            raise OSError(errno.EINVAL, f"jail_remove {jid}: {os.strerror(errno.EINVAL)}")
        # jail(2): removing a jail removes its children, whose names extend its own.
        for name in list(self.jails):
            if name == names[0] or name.startswith(names[0] + "."):
                del self.jails[name]

    # -- mounts --------------------------------------------------------------------

    def nmount(
        self, fstype: str, target: str, options: list[tuple[str, str | None]], flags: int = 0
    ) -> None:
        encode_mount_options(fstype, target, options)
        self.calls.append(("nmount", fstype, target, list(options), flags))
        self._maybe_fail("nmount", target, f"nmount {fstype} on {target}")

    def unmount(self, path: str, flags: int = 0) -> None:
        self.calls.append(("unmount", path, flags))
        self._maybe_fail("unmount", path, f"unmount {path}")

    # -- resource limits -------------------------------------------------------------

    def rctl_add_rule(self, rule: str) -> None:
        self.calls.append(("rctl_add_rule", rule))
        self._maybe_fail("rctl_add_rule", rule, f"rctl_add_rule {rule}")

    def rctl_remove_rule(self, filter: str) -> None:
        self.calls.append(("rctl_remove_rule", filter))
        self._maybe_fail("rctl_remove_rule", filter, f"rctl_remove_rule {filter}")

    def setrlimit(self, resource: int, soft: int, hard: int) -> None:
        self.calls.append(("setrlimit", resource, soft, hard))
        self._maybe_fail("setrlimit", resource, f"setrlimit {resource}")

    # -- process control -------------------------------------------------------------

    def procctl(self, idtype: int, ident: int, command: int, value: int) -> None:
        self.calls.append(("procctl", idtype, ident, command, value))
        self._maybe_fail("procctl", command, f"procctl {command}")
