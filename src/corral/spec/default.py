"""The configuration ``corral spec`` writes: a safe starting point for a busybox rootfs.

It follows what runc writes, less what corral does not apply yet (no
``linux.resources``, no terminal, no cgroup mount; see docs/spec-coverage.md), so a
config fresh from ``corral spec`` always runs.
"""

from __future__ import annotations

from corral import OCI_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CAPABILITIES = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _process(args: list[str] | None) -> dict[str, Any]:
    """The process part both platforms share."""
    return {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": args or ["sh"],
        "env": [DEFAULT_PATH, "TERM=xterm"],
        "cwd": "/",
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    }


def default_spec(args: list[str] | None = None, *, rootless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            **_process(args),
            "capabilities": {
                name: list(DEFAULT_CAPABILITIES) for name in ("bounding", "effective", "permitted")
            },
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "corral",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
        ],
        "linux": {
            "namespaces": [
                {"type": name} for name in ("pid", "network", "ipc", "uts", "mount", "cgroup")
            ],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/sys/devices/virtual/powercap",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }
    if rootless:
        # Written as runc does; corral rejects user namespaces until issue 4 lands.
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    return spec


def default_freebsd_spec(args: list[str] | None = None) -> dict[str, Any]:
    """A jail: the host's devfs ruleset 4 (jail(8)'s usual one) on /dev, its own
    hostname, and the host's network addresses (``ip4``/``ip6`` inherit), which needs
    no interface set-up; use ``vnet: "new"`` and ``vnetInterfaces`` for a network
    stack of its own."""
    return {
        "ociVersion": OCI_VERSION,
        "process": _process(args),
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "corral",
        "mounts": [
            {"destination": "/dev", "type": "devfs", "source": "devfs", "options": ["ruleset=4"]},
        ],
        "freebsd": {"jail": {"host": "new", "ip4": "inherit", "ip6": "inherit"}},
    }
