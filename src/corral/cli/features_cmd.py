"""``corral features``: what this corral implements, as runtime-spec's features.md JSON.

The platform-neutral part (versions, hooks, corral's annotation) is built here; on
Linux, :mod:`corral.linux.features` adds ``mountOptions``, the ``linux`` section and
the libseccomp annotation. On FreeBSD, where features.md defines no platform section,
only the common fields are reported (no ``mountOptions``: features.md leaves it out
when unknown).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.cli.args import Parsed

OCI_VERSION_MIN = "1.0.0"


def cmd_features(options: Parsed, parsed: Parsed) -> int:
    from corral.core import jsonio

    document = common_features()
    # An explicit platform block: the FreeBSD type check must not follow Linux modules.
    if sys.platform.startswith("linux"):
        from corral.linux.features import linux_features, seccomp_library

        document = linux_features(document, seccomp_library())
    sys.stdout.write(jsonio.dumps(document, indent=4) + "\n")
    return 0


def common_features() -> dict[str, object]:
    """The platform-neutral part: the versions, the hooks and corral's annotation."""
    from corral import OCI_VERSION, __version__
    from corral.spec.hooks import KINDS

    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION,
        "hooks": [name for name, _ in KINDS],
        "annotations": {"io.github.corral.version": __version__},
    }
