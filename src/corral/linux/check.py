"""What the Linux backend refuses before it creates anything.

The spec model parses every field it knows; this module turns the ones the Linux
backend cannot apply (other platforms' sections and fields) into
:class:`~corral.errors.UnsupportedError` naming the field, so a config is never
half-applied, and checks the rules that span several fields. Unknown fields are not
here: the spec requires runtimes to ignore them.
"""

from __future__ import annotations

from corral.errors import ConfigError, UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.backend import CreateRequest
    from corral.spec.model import Spec

# JSON path -> why it is refused.
REFUSED_ON_LINUX = {
    "process.user.username": "a Windows field",
    "process.commandLine": "a Windows field",
    "solaris": "a Solaris section on a Linux host",
    "windows": "a Windows section on a Linux host",
    "vm": "virtual-machine containers are not supported",
    "zos": "a z/OS section on a Linux host",
    "freebsd": "a FreeBSD section on a Linux host",
}
# process.consoleSize is not listed: config.md says runtimes MUST ignore it when
# process.terminal is false.
# Namespaces the Linux backend can create or join today.
SUPPORTED_NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "cgroup", "user", "time")


def _is_set(value: object) -> bool:
    """Absent, null, false, "" and empty containers ask for nothing."""
    return value not in (None, False, "", 0, [], {})


def _lookup(document: dict[str, object], path: str) -> object:
    value: object = document
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def check_unsupported(spec: Spec) -> None:
    for path, why in REFUSED_ON_LINUX.items():
        if _is_set(_lookup(spec.raw, path)):
            raise UnsupportedError(path, why)


def check_namespaces(spec: Spec) -> None:
    linux = spec.linux
    namespaces = linux.namespaces if linux else []
    for index, ns in enumerate(namespaces):
        if ns.type not in SUPPORTED_NAMESPACES:
            raise UnsupportedError(
                f"linux.namespaces[{index}].type",
                f'"{ns.type}" namespaces are not supported on this host',
            )
    types = {ns.type: ns for ns in namespaces}
    if spec.hostname and (types.get("uts") is None or types["uts"].path):
        raise ConfigError("hostname", "setting a hostname needs a new uts namespace")
    if spec.domainname and (types.get("uts") is None or types["uts"].path):
        raise ConfigError("domainname", "setting a domainname needs a new uts namespace")
    mount = types.get("mount")
    if mount is None or mount.path:
        # runc refuses too: mounting the rootfs in the host's namespace would leak mounts.
        raise ConfigError("linux.namespaces", "a new mount namespace is required")


def check_config(request: CreateRequest) -> None:
    """Everything the Linux backend verifies before it forks."""
    from corral.linux.credentials import check_process
    from corral.linux.mountopts import check_mounts

    spec = request.spec
    if spec.linux is None:
        raise ConfigError("linux", "required on a Linux host")
    if spec.process is None:
        raise ConfigError("process", "required field is missing")
    check_unsupported(spec)
    check_namespaces(spec)
    if _wanted(spec, "linux.cgroupsPath", "linux.resources") or request.systemd_cgroup:
        from corral.linux.cgroups.manager import check_cgroup_config

        # Every limit through the planners now: a bad value fails before anything exists.
        check_cgroup_config(spec, request.container_id, systemd=request.systemd_cgroup)
    check_mounts(spec, request.bundle)
    _check_optional_features(request)
    check_process(spec)
    if _wanted(spec, "process.terminal") or request.console_socket:
        from corral.linux.terminal import check_terminal

        # `create` always detaches; `run` checks its foreground rules itself (core.run).
        check_terminal(spec, request.console_socket, True)


def _wanted(spec: Spec, *paths: str) -> bool:
    return any(_is_set(_lookup(spec.raw, path)) for path in paths)


def _check_optional_features(request: CreateRequest) -> None:
    """The checks of the less common fields, each imported only when the config uses it:
    every module imported here is paid for by every ``create`` (docs/performance.md)."""
    spec = request.spec
    assert spec.linux is not None
    types = {ns.type for ns in spec.linux.namespaces}
    if "user" in types or _wanted(spec, "linux.uidMappings", "linux.gidMappings"):
        from corral.linux.userns import check_user_namespace

        check_user_namespace(spec)
    if any(
        isinstance(m, dict) and (m.get("uidMappings") or m.get("gidMappings"))
        for m in spec.raw.get("mounts") or []
    ) or any({"idmap", "ridmap"} & set(m.options) for m in spec.mounts):
        from corral.linux.idmap import check_idmapped_mounts

        check_idmapped_mounts(spec)
    if _wanted(spec, "linux.netDevices"):
        from corral.linux import netdevices

        netdevices.check_net_devices(spec)
        netdevices.check_host_devices(spec)
    if _wanted(spec, "linux.intelRdt"):
        from corral.linux import intelrdt

        intelrdt.check_intel_rdt(spec)
        intelrdt.check_resctrl_host(spec)
    if _wanted(spec, "linux.devices"):
        from corral.linux import devices

        devices.check_devices(spec)
    if (spec.raw.get("linux") or {}).get("seccomp") is not None:
        from corral.linux import seccomp

        # Also: libseccomp installed, flags this kernel has; the program compiled, or read
        # from the cache in the state root.
        seccomp.check_seccomp(spec, cache_dir=request.state_dir.rpartition("/")[0])
    if _wanted(spec, "linux.personality"):
        from corral.linux import personality

        personality.check_personality(spec)
    if _wanted(spec, "process.scheduler", "process.ioPriority", "process.execCPUAffinity"):
        from corral.linux import scheduling

        scheduling.check_scheduling(spec)
    if _wanted(spec, "linux.memoryPolicy"):
        from corral.linux import mempolicy

        mempolicy.check_memory_policy(spec)
    if "time" in types or _wanted(spec, "linux.timeOffsets"):
        from corral.linux import timens

        timens.check_time_namespace(spec)
    if _wanted(spec, "process.apparmorProfile", "process.selinuxLabel", "linux.mountLabel"):
        from corral.linux import lsm

        lsm.check_lsm(spec)
        lsm.check_lsm_host(spec)
