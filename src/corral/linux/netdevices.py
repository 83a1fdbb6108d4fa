"""``linux.netDevices``: host network interfaces moved into the container's netns.

config-linux.md ("Network Devices"). :func:`check_net_devices` validates the config
(pure) and :func:`check_host_devices` that each interface exists on the host, both
before the fork. Once the init has created its network namespace it sends the
:data:`REQUEST` handshake request and waits; the parent then runs
:func:`apply_net_devices` with the init's pid, in the host's namespaces, where the
interfaces are. For each one, with iproute2's ``ip``:

1. its permanent global addresses are read (``ip -json addr show``): moving an
   interface to another namespace drops every address (the kernel unregisters it
   from the old namespace), and the spec requires the permanent ones to be kept;
2. ``ip link set dev HOST netns PID`` moves it (rtnetlink, ``IFLA_NET_NS_PID``);
3. in the container's namespace (``setns(2)`` in the child before ``ip`` runs): the
   rename to ``name``, the addresses again, and ``up``.

A name already taken in the container's namespace is refused before anything moves
(read from ``/proc/PID/net/dev``, which shows the namespace of PID), unless ``name``
ends in ``%d``: then the kernel picks a free number. Nothing is moved back: when the
namespace dies the kernel returns physical devices to the initial namespace and
destroys virtual ones (network_namespaces(7)), and the spec forbids the runtime to
move them out itself.
"""

from __future__ import annotations

import os

from corral.core import handshake
from corral.errors import ConfigError, CreateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.spec.model import Spec

REQUEST = handshake.NET_DEVICES  # the request the init sends once its netns exists
IFNAMSIZ = 16  # <linux/if.h>, with the terminating NUL
_FIELD = "linux.netDevices"


def net_devices(spec: Spec) -> dict[str, str]:
    """Host interface name -> name in the container (the host's when not given)."""
    linux = spec.raw.get("linux")
    devices = linux.get("netDevices") if isinstance(linux, dict) else None
    if not isinstance(devices, dict):
        return {}
    result = {}
    for host_name, entry in devices.items():
        name = entry.get("name") if isinstance(entry, dict) else None
        result[host_name] = name if isinstance(name, str) and name else host_name
    return result


def valid_interface_name(name: str) -> bool:
    """What the kernel's dev_valid_name() accepts: 1..15 bytes, no "/", ":" or space."""
    if not name or name in (".", "..") or len(name.encode()) >= IFNAMSIZ:
        return False
    return not any(c in "/:" or c.isspace() for c in name)


def check_net_devices(spec: Spec) -> None:
    """Refuse what cannot be applied: types, names, and a missing network namespace."""
    linux = spec.raw.get("linux")
    devices = linux.get("netDevices") if isinstance(linux, dict) else None
    if devices is None or devices == {}:
        return
    if not isinstance(devices, dict):
        raise ConfigError(_FIELD, "must be an object")
    targets: dict[str, str] = {}
    for host_name, entry in devices.items():
        where = f"{_FIELD}.{host_name}"
        if not isinstance(entry, dict):
            raise ConfigError(where, "must be an object")
        if not valid_interface_name(host_name):
            raise ConfigError(where, f'"{host_name}" is not a valid interface name')
        name = entry.get("name", host_name)
        if not isinstance(name, str):
            raise ConfigError(f"{where}.name", "must be a string")
        name = name or host_name
        # "%d" is the kernel's template for "the first free number" (dev_alloc_name).
        if not valid_interface_name(name) or name.count("%") > (1 if "%d" in name else 0):
            raise ConfigError(f"{where}.name", f'"{name}" is not a valid interface name')
        if name in targets and "%d" not in name:
            raise ConfigError(f"{where}.name", f'"{name}" is also the name of {targets[name]}')
        targets[name] = host_name
    network = spec.linux.namespace("network") if spec.linux else None
    if network is None or network.path:
        raise ConfigError(_FIELD, "moving network devices needs a new network namespace")


def check_host_devices(spec: Spec, sys_class_net: str = "/sys/class/net") -> None:
    """Each interface must exist in the runtime's network namespace."""
    for host_name in net_devices(spec):
        if not os.path.exists(os.path.join(sys_class_net, host_name)):
            raise ConfigError(
                f"{_FIELD}.{host_name}", f'no network interface "{host_name}" on the host'
            )


def interfaces_of(pid: int | str) -> set[str]:
    """Interface names in the network namespace of process ``pid`` (proc(5), net/dev)."""
    with open(f"/proc/{pid}/net/dev") as f:
        lines = f.read().splitlines()[2:]  # two header lines
    return {line.split(":", 1)[0].strip() for line in lines if ":" in line}


def permanent_addresses(ip_json: list[dict[str, object]]) -> list[str]:
    """The ``ADDRESS/PREFIX`` of each permanent, global-scope address in ``ip -json
    addr show`` output (``dynamic`` marks those without IFA_F_PERMANENT)."""
    found = []
    for link in ip_json:
        infos = link.get("addr_info")
        for info in infos if isinstance(infos, list) else []:
            if not isinstance(info, dict) or info.get("scope") != "global":
                continue
            if info.get("dynamic") or "local" not in info:
                continue
            found.append(f"{info['local']}/{info['prefixlen']}")
    return found


def apply_net_devices(spec: Spec, pid: int) -> None:
    """Parent: move each configured interface into the netns of the init ``pid``."""
    devices = net_devices(spec)
    if not devices:
        return
    taken = interfaces_of(pid)
    for host_name, name in devices.items():
        if name in taken and "%d" not in name:
            raise CreateError(
                f'{_FIELD}.{host_name}: "{name}" already exists in the container\'s namespace'
            )
    from corral.core import jsonio

    for host_name, wanted in devices.items():
        name = wanted
        listing = jsonio.loads(_ip(["-json", "addr", "show", "dev", host_name]))
        addresses = permanent_addresses(listing if isinstance(listing, list) else [])
        _ip(["link", "set", "dev", host_name, "netns", str(pid)])
        if name != host_name:
            _ip(["link", "set", "dev", host_name, "name", name], netns_pid=pid)
            if "%d" in name:
                name = _renamed(pid, taken)
        for address in addresses:
            _ip(["addr", "add", address, "dev", name], netns_pid=pid)
        _ip(["link", "set", "dev", name, "up"], netns_pid=pid)
        taken.add(name)


def _renamed(pid: int, before: set[str]) -> str:
    """The name the kernel gave a ``%d`` template: the one that is new in the netns."""
    new = interfaces_of(pid) - before
    if len(new) != 1:
        raise CreateError(f"{_FIELD}: cannot tell which interface was renamed ({sorted(new)})")
    return new.pop()


def _ip(args: list[str], netns_pid: int | None = None) -> str:
    """Run ``ip ARGS`` (in the network namespace of ``netns_pid`` if given); its stdout."""
    import subprocess

    def enter() -> None:
        from corral.linux.syscalls import CLONE_NEWNET, Syscalls

        path = f"/proc/{netns_pid}/ns/net"
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        Syscalls().setns(fd, CLONE_NEWNET, path)
        os.close(fd)

    try:
        result = subprocess.run(
            ["ip", *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            preexec_fn=enter if netns_pid is not None else None,
            check=False,
        )
    except FileNotFoundError:
        raise CreateError(f"{_FIELD}: the ip command (iproute2) is not installed") from None
    if result.returncode != 0:
        detail = result.stderr.strip() or f"exit status {result.returncode}"
        raise CreateError(f"{_FIELD}: ip {' '.join(args)}: {detail}")
    return result.stdout
