"""corral: an OCI container runtime.

The package root stays import-free so that ``corral state`` pays for nothing it does
not use; :class:`Runtime` and the errors load on first access (PEP 562).

    >>> from corral import Runtime
    >>> rt = Runtime(root="/run/corral")
    >>> rt.create("web", bundle="/srv/bundles/web")   # doctest: +SKIP
    >>> rt.start("web")                                # doctest: +SKIP
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.core.runtime import Runtime
    from corral.errors import (
        ConfigError,
        ContainerExistsError,
        ContainerNotFoundError,
        CorralError,
        IllegalStateError,
    )

__version__ = "0.1.0"
OCI_VERSION = "1.3.0"

__all__ = [
    "OCI_VERSION",
    "ConfigError",
    "ContainerExistsError",
    "ContainerNotFoundError",
    "CorralError",
    "IllegalStateError",
    "Runtime",
    "__version__",
]


def __getattr__(name: str) -> object:
    if name == "Runtime":
        from corral.core.runtime import Runtime

        return Runtime
    if name in __all__:
        from corral import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'corral' has no attribute {name!r}")
