"""``hooks`` of ``config.json`` as typed records.

:func:`parse_hooks` reads the six POSIX hook lists of config.md ("POSIX-platform Hooks")
into a :class:`Hooks`. Each entry is checked where the spec says MUST: ``path`` is
absolute, ``timeout`` is greater than zero; ``env`` entries must be ``NAME=value``
because they become the hook's environ. Errors name the JSON path of the field
(``hooks.poststop[1].path: "rel/x" is not an absolute path``).

A hook kind this module does not know is ignored, as the spec's "Extensibility" section
requires of unknown properties.
"""

from __future__ import annotations

from corral.errors import ConfigError
from corral.spec.reader import Fields, describe, expect, join

# (name in config.json, attribute of Hooks), in the order the lifecycle calls them.
KINDS = (
    ("prestart", "prestart"),
    ("createRuntime", "create_runtime"),
    ("createContainer", "create_container"),
    ("startContainer", "start_container"),
    ("poststart", "poststart"),
    ("poststop", "poststop"),
)


class Hook:
    """One program to run: ``args`` is its argv (may be empty), ``timeout`` in seconds."""

    __slots__ = ("args", "env", "path", "timeout")

    def __init__(
        self, path: str, args: list[str], env: list[str], timeout: int | None = None
    ) -> None:
        self.path = path
        self.args = args
        self.env = env
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Hook({self.path!r}, {self.args!r}, {self.env!r}, {self.timeout!r})"


class Hooks:
    """The hook lists by lifecycle point; every list is empty when not configured."""

    __slots__ = (
        "create_container",
        "create_runtime",
        "poststart",
        "poststop",
        "prestart",
        "start_container",
    )

    def __init__(
        self,
        *,
        prestart: list[Hook] | None = None,
        create_runtime: list[Hook] | None = None,
        create_container: list[Hook] | None = None,
        start_container: list[Hook] | None = None,
        poststart: list[Hook] | None = None,
        poststop: list[Hook] | None = None,
    ) -> None:
        self.prestart = prestart or []
        self.create_runtime = create_runtime or []
        self.create_container = create_container or []
        self.start_container = start_container or []
        self.poststart = poststart or []
        self.poststop = poststop or []

    def of(self, kind: str) -> list[Hook]:
        """The list for a kind named as in config.json: ``of("createRuntime")``."""
        for name, attribute in KINDS:
            if name == kind:
                hooks: list[Hook] = getattr(self, attribute)
                return hooks
        raise KeyError(kind)

    def __bool__(self) -> bool:
        return any(getattr(self, attribute) for _, attribute in KINDS)


def parse_hooks(fields: Fields | None) -> Hooks:
    """Read the ``hooks`` object (None when absent) into :class:`Hooks`."""
    hooks = Hooks()
    if fields is None:
        return hooks
    for name, attribute in KINDS:
        path = fields.at(name)
        entries = fields.array(name)
        setattr(hooks, attribute, [_parse_hook(e, join(path, i)) for i, e in enumerate(entries)])
    return hooks


def _parse_hook(entry: object, path: str) -> Hook:
    fields = Fields(expect(entry, dict, path), path)
    executable = fields.string("path", required=True)
    if not executable.startswith("/"):
        raise ConfigError(fields.at("path"), f"{describe(executable)} is not an absolute path")
    env = fields.strings("env")
    for index, item in enumerate(env):
        # environ(7): NAME=value with a non-empty NAME; execve(2) would accept anything,
        # but an entry without "=" is no variable a hook could read.
        if item.find("=") <= 0:
            raise ConfigError(join(fields.at("env"), index), f"{describe(item)} is not NAME=value")
    timeout = fields.integer("timeout")
    if timeout is not None and timeout <= 0:
        raise ConfigError(fields.at("timeout"), f"{timeout} is not greater than zero")
    return Hook(executable, fields.strings("args"), env, timeout)
