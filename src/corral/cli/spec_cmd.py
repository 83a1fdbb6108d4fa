"""``corral spec``: write a default ``config.json`` into the bundle directory."""

from __future__ import annotations

import os

from corral.errors import CorralError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.cli.args import Parsed


def cmd_spec(parsed: Parsed) -> int:
    from corral.core import jsonio
    from corral.spec.default import default_spec

    bundle = parsed.text("bundle") or os.getcwd()
    path = os.path.join(bundle, "config.json")
    text = jsonio.dumps(default_spec(rootless=parsed.flag("rootless")), indent=2) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        raise CorralError(f"{path} exists; remove it first") from None
    except OSError as error:
        raise CorralError(f"{path}: {error.strerror}") from None
    with os.fdopen(fd, "w") as file:
        file.write(text)
    return 0
