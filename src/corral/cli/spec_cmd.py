"""``corral spec``: write a default ``config.json`` into the bundle directory."""

from __future__ import annotations

import os

from corral.errors import CorralError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.cli.args import Parsed


def cmd_spec(parsed: Parsed) -> int:
    import sys

    from corral.core import jsonio
    from corral.errors import UsageError
    from corral.spec.default import default_freebsd_spec, default_spec

    host = "freebsd" if sys.platform.startswith("freebsd") else "linux"
    platform = parsed.text("platform") or host
    if platform == "linux":
        document = default_spec(rootless=parsed.flag("rootless"))
    elif platform == "freebsd":
        if parsed.flag("rootless"):
            raise UsageError("--rootless: FreeBSD jails are created by root")
        document = default_freebsd_spec()
    else:
        raise UsageError(f'--platform "{platform}": linux or freebsd')
    bundle = parsed.text("bundle") or os.getcwd()
    path = os.path.join(bundle, "config.json")
    text = jsonio.dumps(document, indent=2) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        raise CorralError(f"{path} exists; remove it first") from None
    except OSError as error:
        raise CorralError(f"{path}: {error.strerror}") from None
    with os.fdopen(fd, "w") as file:
        file.write(text)
    return 0
