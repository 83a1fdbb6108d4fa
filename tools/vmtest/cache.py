"""Where the VM's artifacts live, and whether one is still valid.

The cache directory is ``$CORRAL_VMTEST_CACHE``, else ``/var/cache/corral-vmtest``. Each
artifact ``X`` has a stamp ``X.inputs``: the JSON of what it was built from (package file
name, module list, a hash of the builder's source...). An artifact is rebuilt when its stamp
differs from the current inputs, so a kernel security update, another module or an edit of
the guest's init script each rebuild exactly what depends on them. Files are written to a
temporary name and renamed, so a run killed half-way or two runs at once never leave a
truncated artifact behind a valid stamp.
"""

from __future__ import annotations

import hashlib
import json
import os

DEFAULT_CACHE = "/var/cache/corral-vmtest"
HERE = os.path.dirname(os.path.abspath(__file__))

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def cache_dir() -> str:
    """The cache directory, made if missing; ``~/.cache/corral-vmtest`` for non-root users."""
    path = os.environ.get("CORRAL_VMTEST_CACHE")
    if not path:
        path = DEFAULT_CACHE
        if os.geteuid() != 0 and not os.access(path, os.W_OK):
            path = os.path.join(os.path.expanduser("~"), ".cache", "corral-vmtest")
    os.makedirs(path, exist_ok=True)
    return path


def is_current(artifact: str, inputs: dict[str, Any]) -> bool:
    """True if ``artifact`` exists and was built from exactly ``inputs``."""
    try:
        with open(artifact + ".inputs") as file:
            recorded = json.load(file)
    except (OSError, ValueError):
        return False
    return bool(recorded == inputs) and os.path.exists(artifact)


def write_atomically(path: str, data: bytes, mode: int = 0o644) -> None:
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "wb") as file:
        file.write(data)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def record_inputs(artifact: str, inputs: dict[str, Any]) -> None:
    """Stamp ``artifact`` (already in place) as built from ``inputs``."""
    write_atomically(artifact + ".inputs", json.dumps(inputs, sort_keys=True).encode())


def file_digest(path: str) -> str:
    """sha256 of a file's bytes (the stamp of an input file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_digest(*names: str) -> str:
    """sha256 of this package's own files ``names``: a builder edit invalidates its output."""
    digest = hashlib.sha256()
    for name in names:
        with open(os.path.join(HERE, name), "rb") as file:
            digest.update(file.read())
    return digest.hexdigest()[:16]
