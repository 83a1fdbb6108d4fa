"""The Linux part of ``corral features`` (runtime-spec's features.md and features-linux.md).

The lists come from the tables the code itself applies, never from a copy here: mount
options from :mod:`corral.linux.mountopts`, namespaces from :mod:`corral.linux.check`,
capabilities from :mod:`corral.linux.capabilities`, memory policies from
:mod:`corral.linux.mempolicy`, seccomp actions, operators and flags from
:mod:`corral.linux.seccomp`. So a feature added to one of them shows here at once.

Like runc's output, it is meant to be independent of the host (features.md: "SHOULD
be determined on the compilation time"), with one runc-shaped exception: corral calls
libseccomp at run time, so the seccomp section says what the installed library knows
(``archs``, ``supportedFlags``: the flags it and the kernel accept), and
``enabled: false`` when it is not installed.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.linux.libseccomp import Libseccomp


def seccomp_library() -> Libseccomp | None:
    """The libseccomp binding, None if the library is not installed."""
    from corral.linux.libseccomp import open_library

    try:
        return open_library()
    except OSError:
        return None


def linux_features(common: dict[str, object], lib: Libseccomp | None) -> dict[str, object]:
    """``common`` completed for Linux; ``lib`` is the libseccomp binding, None if missing."""
    from corral.linux import mountopts

    options = {
        *mountopts.FLAG_OPTIONS,
        *mountopts.PROPAGATION_OPTIONS,
        *mountopts.RECURSIVE_OPTIONS,
        "tmpcopyup",  # an option of mountopts.parse_options, in no table
    } - set(mountopts.UNSUPPORTED_OPTIONS)
    document = dict(common)
    # Taken out and put back last: runc prints mountOptions and linux before it.
    annotations = document.pop("annotations")
    assert isinstance(annotations, dict)
    annotations = dict(annotations)
    if lib is not None:
        annotations["io.github.seccomp.libseccomp.version"] = ".".join(
            str(part) for part in lib.version()
        )
    document["mountOptions"] = sorted(options)
    document["linux"] = _linux_features(lib)
    document["annotations"] = annotations
    return document


def _linux_features(lib: Libseccomp | None) -> dict[str, object]:
    from corral.linux import mempolicy
    from corral.linux.capabilities import CAPABILITIES
    from corral.linux.check import SUPPORTED_NAMESPACES

    return {
        "namespaces": sorted(SUPPORTED_NAMESPACES),
        "capabilities": list(CAPABILITIES),
        "cgroup": {
            "v1": True,
            "v2": True,
            "systemd": True,
            "systemdUser": False,  # only the system bus is used (cgroups/systemd.py)
            "rdma": True,
        },
        "seccomp": seccomp_features(lib),
        "apparmor": {"enabled": True},
        "selinux": {"enabled": True},
        "intelRdt": {"enabled": True, "schemata": True, "monitoring": True},
        "memoryPolicy": {"modes": list(mempolicy.MODES), "flags": list(mempolicy.FLAGS)},
        "mountExtensions": {"idmap": {"enabled": True}},
        "netDevices": {"enabled": True},
    }


def seccomp_features(lib: Libseccomp | None) -> dict[str, object]:
    """features-linux.md "Seccomp" for the installed libseccomp (None: not installed)."""
    from corral.linux import seccomp

    if lib is None:
        return {"enabled": False}
    return {
        "enabled": True,
        "actions": sorted(seccomp.ACTIONS),
        "operators": sorted(seccomp.OPERATORS),
        "archs": sorted(seccomp.known_architectures(lib)),
        "knownFlags": list(seccomp.FLAGS),
        "supportedFlags": seccomp.supported_flags(lib),
    }
