"""From a parsed config to the parameters of jail_set(2) (pure: no system calls).

:func:`check_freebsd` rejects what cannot be applied on a FreeBSD host: sections of
other platforms, and combinations of ``freebsd.jail`` fields that contradict each other
or that the kernel would refuse with a bare ``EINVAL`` (each error names a field).
:func:`jail_params` then lists the parameters that create the container's jail, in a
fixed order: ``name``, ``path``, ``persist``, the host names, then every
``freebsd.jail`` field per the mapping table of config-freebsd.md.

Where the mapping is not one to one (all checked against sys/kern/kern_jail.c):

* ``name`` is the container id, or ``<parent>.<id>`` under ``freebsd.jail.parent``: a
  jail is made the child of another by its hierarchical name (jail(8), "Hierarchical
  Jails"); the kernel's own ``parent`` parameter is read-only.
* ``persist``: the jail must outlive its processes until ``delete`` removes it; a new
  jail without it (or JAIL_ATTACH) is refused.
* ``host``, ``ip4``, ``ip6``, ``vnet`` and ``sysv*`` are "jailsys" integers:
  disable 0, new 1, inherit 2.
* ``vnet: "inherit"`` is not passed. It is the default of a new jail, and kern_jail_set
  counts *any* ``vnet`` parameter as a vnet jail when it refuses IP restrictions
  ("vnet jails cannot have IP address restrictions"), so passing it would break the
  combination the spec recommends for sharing the host's stack (vnet inherit, ip4
  inherit).
* ``interface`` and ``vnetInterfaces`` are not kernel parameters (jail(8) does them
  with ifconfig(8), the kernel answers "unknown parameter"); the backend applies them.
* ``sysvmsg``, ``sysvsem``, ``sysvshm`` default to "new" as config-freebsd.md says;
  the kernel's default is none at all. A child jail (``parent``) keeps the kernel
  default: "new" there needs SysV IPC in the parent, and fails with EPERM otherwise.
* ``allow.set_hostname`` is on by default in the kernel, and with ``host: "inherit"``
  sethostname(3) in the jail renames the nearest ancestor that has its own host
  information - the host itself (kern_mib.c, sysctl_hostname). So ``host: "inherit"``
  turns it off unless the config says otherwise, and check_freebsd refuses
  ``setHostname: true`` with it.
* ``devfs_ruleset`` is passed only when the jail may mount devfs itself
  (``allow.mount`` lists "devfs"; config-freebsd.md: "only required for jails which
  create new devfs mounts"). It is the ``ruleset=N`` option of the config's devfs mount,
  else 4 as for corral's own devfs mounts; ruleset 0 is refused, since the jail's devfs
  would then show every device of the host.
"""

from __future__ import annotations

from corral.errors import ConfigError, InvalidIdError, UnsupportedError
from corral.spec.freebsd import Jail
from corral.spec.reader import describe, join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.spec.model import Spec

JailValue = bool | int | str | list[str]

# <sys/jail.h>
JAIL_SYS_DISABLE = 0
JAIL_SYS_NEW = 1
JAIL_SYS_INHERIT = 2
JAIL_SYS = {"disable": JAIL_SYS_DISABLE, "new": JAIL_SYS_NEW, "inherit": JAIL_SYS_INHERIT}

MAXHOSTNAMELEN = 256  # <sys/param.h>: host names and jail names, with their NUL
MAX_DEVFS_RULESET = 65535  # kern_jail.c: devfs_rsnum is a uint16_t
# jail(8) mount.devfs: ruleset 4 (devfsrules_jail) unless one is named; corral's devfs
# mounts (corral.freebsd.mounts) use the same default.
DEFAULT_DEVFS_RULESET = 4

# JailAllow attributes and their jail parameters (allow.mount is a list, done apart).
ALLOW_PARAMS = (
    ("set_hostname", "allow.set_hostname"),
    ("raw_sockets", "allow.raw_sockets"),
    ("chflags", "allow.chflags"),
    ("quotas", "allow.quotas"),
    ("socket_af", "allow.socket_af"),
    ("mlock", "allow.mlock"),
    ("reserved_ports", "allow.reserved_ports"),
    ("suser", "allow.suser"),
)

# config.md "Platform-specific configuration": none of these applies to a jail.
OTHER_PLATFORMS = {
    "linux": "Linux",
    "solaris": "Solaris",
    "windows": "Windows",
    "vm": "virtual-machine",
    "zos": "z/OS",
}
# config.md "Linux Process": process fields only Linux has. (noNewPrivileges is left to
# the backend: FreeBSD 14 has procctl(2) PROC_NO_NEW_PRIVS_CTL.)
LINUX_PROCESS_FIELDS = (
    "apparmorProfile",
    "capabilities",
    "execCPUAffinity",
    "ioPriority",
    "oomScoreAdj",
    "scheduler",
    "selinuxLabel",
)

_JAIL = "freebsd.jail"


def _jail_of(spec: Spec) -> Jail:
    """``freebsd.jail``, or a Jail of defaults when the config has none."""
    section = spec.freebsd
    return section.jail if section is not None and section.jail is not None else Jail()


def jail_name(container_id: str, parent: str | None = None) -> str:
    """The jail's full name: the container id, under ``parent`` if there is one."""
    # jail(8): a name may not contain "." (it separates the levels of the hierarchy),
    # and kern_jail.c refuses a numeric name unless it is the jail's own jid.
    if "." in container_id:
        raise InvalidIdError(
            f'container id "{container_id}" cannot name a jail: "." separates a jail '
            "from its parent in jail names"
        )
    if container_id.isdigit():
        raise InvalidIdError(
            f'container id "{container_id}" cannot name a jail: the kernel reads a '
            "numeric jail name as a jail id"
        )
    name = container_id if parent is None else f"{parent}.{container_id}"
    if len(name.encode()) >= MAXHOSTNAMELEN:
        raise InvalidIdError(
            f"jail name {describe(name)} is longer than {MAXHOSTNAMELEN - 1} bytes"
        )
    return name


def devfs_ruleset(spec: Spec) -> int | None:
    """The ``ruleset=N`` option of the config's devfs mounts (the one on /dev first);
    None when none names a ruleset."""
    found: int | None = None
    for index, mount in enumerate(spec.mounts):
        if mount.type != "devfs":
            continue
        for option_index, option in enumerate(mount.options):
            if not option.startswith("ruleset="):
                continue
            text = option[len("ruleset=") :]
            if not (text.isascii() and text.isdigit()) or int(text) > MAX_DEVFS_RULESET:
                where = join(join(join("mounts", index), "options"), option_index)
                raise ConfigError(
                    where, f"{describe(option)}: a devfs ruleset is 0 to {MAX_DEVFS_RULESET}"
                )
            if mount.destination == "/dev":
                return int(text)
            if found is None:
                found = int(text)
    return found


def _is_set(value: object) -> bool:
    """Capabilities given as ``{"bounding": []}`` ask for nothing either."""
    if isinstance(value, dict):
        return any(_is_set(item) for item in value.values())
    return value not in (None, False, "", 0, [], {})


def check_freebsd(spec: Spec) -> None:
    """Refuse what a FreeBSD jail cannot apply; every error names the field at fault."""
    # An empty value asks for nothing (as on Linux, corral.linux.check): a generator
    # that always writes "linux": {} or "oomScoreAdj": 0 is not refused for it.
    for key, label in OTHER_PLATFORMS.items():
        if _is_set(spec.raw.get(key)):
            raise ConfigError(key, f"a {label} section on a FreeBSD host")
    process = spec.raw.get("process")
    if isinstance(process, dict):
        for key in LINUX_PROCESS_FIELDS:
            if _is_set(process.get(key)):
                raise ConfigError(f"process.{key}", "a Linux process setting on a FreeBSD host")
        for key, why in (("commandLine", "a Windows field"),):
            if _is_set(process.get(key)):
                raise UnsupportedError(f"process.{key}", why)
        user = process.get("user")
        if isinstance(user, dict) and _is_set(user.get("username")):
            raise UnsupportedError("process.user.username", "a Windows field")
    for index, mount in enumerate(spec.raw.get("mounts") or []):
        for key in ("uidMappings", "gidMappings"):
            if isinstance(mount, dict) and _is_set(mount.get(key)):
                raise UnsupportedError(f"mounts[{index}].{key}", "FreeBSD has no idmapped mounts")
    for key, value in (("hostname", spec.hostname), ("domainname", spec.domainname)):
        if "\0" in value:
            raise ConfigError(key, "must not contain a NUL byte")
        if len(value.encode()) >= MAXHOSTNAMELEN:
            raise ConfigError(key, f"is longer than {MAXHOSTNAMELEN - 1} bytes")
    jail = _jail_of(spec)
    _check_host(spec, jail)
    _check_network(jail)
    _check_mounts(spec, jail)


def _check_host(spec: Spec, jail: Jail) -> None:
    if jail.host != "inherit":
        return
    # kern_jail.c: host.hostname or host.domainname turn "host" into "new", silently.
    for key, value in (("hostname", spec.hostname), ("domainname", spec.domainname)):
        if value:
            raise ConfigError(
                key, f'cannot be set with {_JAIL}.host "inherit" (the jail uses the host\'s)'
            )
    if jail.allow.set_hostname:
        raise ConfigError(
            f"{_JAIL}.allow.setHostname",
            f'cannot be true with {_JAIL}.host "inherit": the jail would rename the host',
        )


def _check_network(jail: Jail) -> None:
    for family, mode, addresses in (
        ("ip4", jail.ip4, jail.ip4_addr),
        ("ip6", jail.ip6, jail.ip6_addr),
    ):
        if addresses and mode in ("inherit", "disable"):
            raise ConfigError(
                f"{_JAIL}.{family}Addr",
                f'restricting the jail to addresses needs {family} "new", not "{mode}"',
            )
        if jail.vnet == "new" and (addresses or mode is not None):
            # kern_jail.c: "vnet jails cannot have IP address restrictions".
            field = f"{family}Addr" if addresses else family
            raise ConfigError(
                f"{_JAIL}.{field}",
                'cannot be set with vnet "new": a jail with its own network stack '
                "configures its addresses inside it",
            )
    if jail.vnet_interfaces and jail.vnet != "new":
        raise ConfigError(
            f"{_JAIL}.vnetInterfaces", 'interfaces can only be moved into a vnet "new" jail'
        )
    if jail.interface is not None:
        if jail.vnet == "new":
            raise ConfigError(
                f"{_JAIL}.interface",
                'cannot be set with vnet "new": use vnetInterfaces to give the jail an interface',
            )
        if not jail.ip4_addr and not jail.ip6_addr:
            raise ConfigError(
                f"{_JAIL}.interface", "has no addresses to add: set ip4Addr or ip6Addr"
            )


def _check_mounts(spec: Spec, jail: Jail) -> None:
    fstypes = jail.allow.mount
    if not fstypes:
        return
    # jail(8): allow.mount (and every allow.mount.*) is effective only with
    # enforce_statfs below 2, and 2 is the default.
    if jail.enforce_statfs is None or jail.enforce_statfs >= 2:
        shown = "unset (2)" if jail.enforce_statfs is None else str(jail.enforce_statfs)
        raise ConfigError(
            f"{_JAIL}.allow.mount",
            f"mounting inside a jail needs enforceStatfs 0 or 1, and it is {shown}",
        )
    if "devfs" in fstypes and devfs_ruleset(spec) == 0:
        raise ConfigError(
            join(f"{_JAIL}.allow.mount", fstypes.index("devfs")),
            "a jail that mounts devfs needs a devfs ruleset, and the devfs mount says "
            "ruleset=0: the jail's own devfs would show every device of the host",
        )


def jail_params(spec: Spec, container_id: str, rootfs: str) -> list[tuple[str, JailValue]]:
    """The jail_set(2) parameters that create the container's jail, in order.

    Booleans are flag parameters (``True`` is the name alone, ``False`` its "no" form,
    see :func:`corral.freebsd.syscalls.encode_params`); modes are jailsys integers.
    Calls :func:`check_freebsd` first.
    """
    check_freebsd(spec)
    jail = _jail_of(spec)
    params: list[tuple[str, JailValue]] = [
        ("name", jail_name(container_id, jail.parent)),
        ("path", rootfs),
        ("persist", True),
    ]
    if spec.hostname:
        params.append(("host.hostname", spec.hostname))
    if spec.domainname:
        params.append(("host.domainname", spec.domainname))
    if jail.host is not None:
        params.append(("host", JAIL_SYS[jail.host]))
    if jail.ip4 is not None:
        params.append(("ip4", JAIL_SYS[jail.ip4]))
    if jail.ip4_addr:
        params.append(("ip4.addr", list(jail.ip4_addr)))
    if jail.ip6 is not None:
        params.append(("ip6", JAIL_SYS[jail.ip6]))
    if jail.ip6_addr:
        params.append(("ip6.addr", list(jail.ip6_addr)))
    if jail.vnet == "new":
        params.append(("vnet", JAIL_SYS_NEW))
    for key in ("sysvmsg", "sysvsem", "sysvshm"):
        mode: str | None = getattr(jail, key)
        if mode is None and jail.parent is None:
            mode = "new"
        if mode is not None:
            params.append((key, JAIL_SYS[mode]))
    if jail.enforce_statfs is not None:
        params.append(("enforce_statfs", jail.enforce_statfs))
    if "devfs" in jail.allow.mount:
        ruleset = devfs_ruleset(spec)
        params.append(("devfs_ruleset", DEFAULT_DEVFS_RULESET if ruleset is None else ruleset))
    for attribute, name in ALLOW_PARAMS:
        flag: bool | None = getattr(jail.allow, attribute)
        if flag is None and attribute == "set_hostname" and jail.host == "inherit":
            flag = False
        if flag is not None:
            params.append((name, flag))
    if jail.allow.mount:
        params.append(("allow.mount", True))
        params.extend((f"allow.mount.{fstype}", True) for fstype in jail.allow.mount)
    return params
