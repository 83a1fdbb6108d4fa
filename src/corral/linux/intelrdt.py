"""``linux.intelRdt``: the container's CLOS group in the resctrl filesystem.

config-linux.md ("IntelRdt") and the kernel's Documentation/arch/x86/resctrl.rst.
:func:`check_intel_rdt` validates the config (pure); :func:`find_resctrl` is the
mounted ``resctrl`` filesystem in the runtime's mount namespace (mountinfo(5)), whose
absence is an error when the field is set. The parent calls :func:`apply_intel_rdt`
with the init's pid once the init is ready:

- the group is ``closID`` (``/`` is the root group) or the container id;
- with schemata (``l3CacheSchema``, then ``memBwSchema``, then ``schemata``, in the
  spec's order) a missing group is created and they are written to its ``schemata``
  file; an existing group must already hold them (compared per resource and domain,
  as the kernel prints values its own way);
- with no schemata the group must already exist;
- ``enableMonitoring`` adds ``mon_groups/<container id>``;
- the pid goes into ``tasks`` of the MON group if any, else of the group.

:func:`remove_intel_rdt` undoes what ``apply`` created (it returns the list), on delete.

``update --l3-cache-schema/--mem-bw-schema`` (:func:`update_schemata`) writes new lines
to the group's ``schemata``, as runc does: a resource the host's resctrl does not offer
(no ``info/L3``, ``info/MB``) is an error, and a container created without
``intelRdt`` first gets a group named by its id, with its threads moved into it.
"""

from __future__ import annotations

import os

from corral.errors import ConfigError, CreateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.errors import CorralError
    from corral.spec.model import Spec

_FIELD = "linux.intelRdt"


class IntelRdt:
    """The parsed ``linux.intelRdt`` object."""

    __slots__ = ("clos_id", "lines", "monitoring")

    def __init__(self, clos_id: str, lines: list[str], monitoring: bool) -> None:
        self.clos_id = clos_id
        self.lines = lines  # what goes into the schemata file, in order
        self.monitoring = monitoring


def parse_intel_rdt(spec: Spec) -> IntelRdt | None:
    """``linux.intelRdt`` checked and parsed; None when absent. Raises ConfigError."""
    linux = spec.raw.get("linux")
    raw = linux.get("intelRdt") if isinstance(linux, dict) else None
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(_FIELD, "must be an object")
    clos_id = raw.get("closID", "")
    if not isinstance(clos_id, str):
        raise ConfigError(f"{_FIELD}.closID", "must be a string")
    if clos_id not in ("", "/") and ("/" in clos_id or clos_id in (".", "..") or "\n" in clos_id):
        raise ConfigError(f"{_FIELD}.closID", f'"{clos_id}" is not a resctrl group name')
    lines = []
    for key, prefix in (("l3CacheSchema", "L3"), ("memBwSchema", "MB:")):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or "\n" in value or not value.startswith(prefix):
            raise ConfigError(f"{_FIELD}.{key}", f'must be one line starting with "{prefix}"')
        lines.append(value)
    schemata = raw.get("schemata", [])
    if not isinstance(schemata, list):
        raise ConfigError(f"{_FIELD}.schemata", "must be an array of strings")
    for index, line in enumerate(schemata):
        if not isinstance(line, str) or "\n" in line or ":" not in line:
            raise ConfigError(
                f"{_FIELD}.schemata[{index}]", 'must be one line "RESOURCE:id=value;..."'
            )
        lines.append(line)
    monitoring = raw.get("enableMonitoring", False)
    if not isinstance(monitoring, bool):
        raise ConfigError(f"{_FIELD}.enableMonitoring", "must be a boolean")
    return IntelRdt(clos_id, lines, monitoring)


def check_intel_rdt(spec: Spec) -> None:
    parse_intel_rdt(spec)


def find_resctrl(mountinfo: str = "/proc/self/mountinfo") -> str:
    """Where resctrl is mounted in this mount namespace; "" if it is not."""
    from corral.linux import mountinfo as table

    for mount_point, _root, fstype, _options in table.read(mountinfo):
        if fstype == "resctrl":
            return mount_point
    return ""


def check_resctrl_host(spec: Spec, mountinfo: str = "/proc/self/mountinfo") -> None:
    """config-linux.md: no mounted resctrl while intelRdt is set is an error."""
    if parse_intel_rdt(spec) is not None and not find_resctrl(mountinfo):
        raise ConfigError(
            _FIELD, "no resctrl filesystem is mounted (mount -t resctrl resctrl /sys/fs/resctrl)"
        )


def group_path(resctrl: str, rdt: IntelRdt, container_id: str) -> str:
    """The CTRL_MON group's directory: closID, the root for "/", or the container id."""
    if rdt.clos_id == "/":
        return resctrl
    return os.path.join(resctrl, rdt.clos_id or container_id)


def parse_schemata(text: str) -> dict[str, dict[str, str]]:
    """``RESOURCE:id=value;id=value`` lines -> {resource: {id: normalized value}}.

    The kernel pads and prints values its own way (``L3:0=007f0``, spaces before
    names), so values are compared as numbers: hex bitmasks for caches, decimal for
    ``MB``.
    """
    result: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        name, sep, rest = line.strip().partition(":")
        if not sep:
            continue
        domains = result.setdefault(name.strip(), {})
        for item in rest.split(";"):
            domain, eq, value = item.strip().partition("=")
            if eq:
                domains[domain.strip()] = _normalize(name.strip(), value.strip())
    return result


def _normalize(resource: str, value: str) -> str:
    try:
        return str(int(value, 10 if resource.startswith("MB") else 16))
    except ValueError:
        return value.lower()


def schemata_mismatch(wanted: list[str], current: str) -> str:
    """The first wanted ``RESOURCE:id`` the group's schemata file disagrees with, or ""."""
    have = parse_schemata(current)
    for resource, domains in parse_schemata("\n".join(wanted)).items():
        for domain, value in domains.items():
            if have.get(resource, {}).get(domain) != value:
                return f"{resource}:{domain}"
    return ""


def apply_intel_rdt(
    spec: Spec, container_id: str, pid: int, resctrl: str = ""
) -> tuple[str, list[str]]:
    """Put ``pid`` in its resctrl group (see the module doc); the group's directory ("" if
    ``intelRdt`` is not set) and the directories it created."""
    rdt = parse_intel_rdt(spec)
    if rdt is None:
        return "", []
    resctrl = resctrl or find_resctrl()
    if not resctrl:
        raise CreateError(f"{_FIELD}: no resctrl filesystem is mounted")
    group = group_path(resctrl, rdt, container_id)
    created: list[str] = []
    try:
        if rdt.lines:
            if os.path.isdir(group) and rdt.clos_id:
                # A configured group that exists must already hold these schemata.
                with open(os.path.join(group, "schemata")) as f:
                    wrong = schemata_mismatch(rdt.lines, f.read())
                if wrong:
                    raise CreateError(f"{_FIELD}: group {rdt.clos_id} has other schemata ({wrong})")
            else:
                if not os.path.isdir(group):
                    os.mkdir(group)
                    created.append(group)
                _write(os.path.join(group, "schemata"), "\n".join(rdt.lines) + "\n")
        elif not os.path.isdir(group):
            if rdt.clos_id:
                raise CreateError(f'{_FIELD}.closID: no resctrl group "{rdt.clos_id}"')
            os.mkdir(group)
            created.append(group)
        tasks_dir = group
        if rdt.monitoring:
            tasks_dir = os.path.join(group, "mon_groups", container_id)
            os.mkdir(tasks_dir)
            created.append(tasks_dir)
        _write(os.path.join(tasks_dir, "tasks"), str(pid))
    except BaseException:
        remove_intel_rdt(created)
        raise
    return group, created


# The resctrl resource (``info/<name>``) each update flag's lines need, and runc's
# words when the host lacks it. L3CODE and L3DATA lines need L3 too.
_UPDATE_RESOURCES = {
    "L3": "Intel RDT/CAT: l3 cache schema is not enabled",
    "MB": "Intel RDT/MBA: memory bandwidth schema is not enabled",
}


def update_schemata(
    resctrl: str, group: str, container_id: str, pids: list[int], lines: list[str]
) -> tuple[str, list[str]]:
    """Write ``lines`` to the container's group's ``schemata`` (``group``; "" if it was
    created without ``intelRdt``: then ``<resctrl>/<container id>`` is made and every
    thread of ``pids`` moved in). The group and the directories made."""
    from corral.errors import CorralError

    for line in lines:
        resource = line.partition(":")[0].strip()[:2]
        message = _UPDATE_RESOURCES.get(resource, "")
        if not resctrl or (message and not os.path.isdir(os.path.join(resctrl, "info", resource))):
            raise CorralError(message or "Intel RDT: no resctrl filesystem is mounted")
    created: list[str] = []
    if not group:
        group = os.path.join(resctrl, container_id)
        try:
            os.mkdir(group)
            created.append(group)
        except FileExistsError:
            pass
    try:
        _write(os.path.join(group, "schemata"), "\n".join(lines) + "\n", error=CorralError)
        if created:
            for pid in pids:
                for tid in _threads(pid):
                    _write(os.path.join(group, "tasks"), tid, error=CorralError)
    except BaseException:
        remove_intel_rdt(created)
        raise
    return group, created


def _threads(pid: int) -> list[str]:
    """The thread ids of ``pid`` (resctrl's ``tasks`` file moves one thread per write)."""
    try:
        return os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []  # it exited since it was listed


def remove_intel_rdt(created: list[str]) -> None:
    """Remove the groups :func:`apply_intel_rdt` created, innermost first.

    rmdir(2) of a resctrl group moves its tasks back to the parent group.
    """
    for path in reversed(created):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass


def _write(path: str, data: str, error: type[CorralError] = CreateError) -> None:
    try:
        with open(path, "w") as f:
            f.write(data)
    except OSError as failure:
        raise error(f"{_FIELD}: writing {path}: {failure.strerror or failure}") from None
