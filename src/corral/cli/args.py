"""A small command-line parser with the rules runc's (Go ``flag``-style) parser has.

``argparse`` costs 5-8 ms to import, more than runc takes for a whole ``state``, so
corral parses its few flags itself: ``-f``, ``--flag`` and ``-flag`` are the same
flag; values come as ``--flag value`` or ``--flag=value``; booleans take no value
(``--force`` or ``--force=false``); flags may come before or after the positional
arguments; ``--`` ends the flags. Its error texts are the Go ``flag`` package's
(``flag provided but not defined: -x``, ``flag needs an argument: -x``), one dash
whatever was typed, as runc prints them.
"""

from __future__ import annotations

from corral.errors import UsageError


class Flag:
    __slots__ = ("default", "dest", "help", "names", "repeat", "takes_value")

    def __init__(
        self,
        names: str,
        *,
        value: bool = False,
        default: object = None,
        help: str = "",
        repeat: bool = False,
    ) -> None:
        self.names = tuple(names.split(","))
        self.dest = self.names[0].replace("-", "_")
        # A repeatable flag (``--env A=1 --env B=2``) collects its values in a list.
        self.repeat = repeat
        self.takes_value = value or repeat
        self.default = default if default is not None else ("" if self.takes_value else False)
        self.help = help


class Command:
    """One subcommand: its flags, positional arguments and handler's name."""

    __slots__ = ("flags", "help", "max_args", "min_args", "name", "usage")

    def __init__(
        self,
        name: str,
        usage: str,
        help: str,
        flags: list[Flag],
        min_args: int,
        max_args: int | None,
    ) -> None:
        self.name = name
        self.usage = usage
        self.help = help
        self.flags = flags
        self.min_args = min_args
        self.max_args = max_args


class Parsed:
    """Parsed flags (``values``) and positional arguments (``args``)."""

    __slots__ = ("args", "seen", "values")

    def __init__(
        self, values: dict[str, object], args: list[str], seen: set[str] | None = None
    ) -> None:
        self.values = values
        self.args = args
        self.seen = seen if seen is not None else set()

    def text(self, name: str) -> str:
        return str(self.values[name])

    def flag(self, name: str) -> bool:
        return bool(self.values[name])

    def number(self, name: str) -> int:
        value = self.values[name]
        return value if isinstance(value, int) else int(str(value))

    def texts(self, name: str) -> list[str]:
        """Every value of a repeatable flag, in the order given."""
        value = self.values[name]
        return [str(item) for item in value] if isinstance(value, list) else []

    def given(self, name: str) -> bool:
        """Whether the flag was on the command line (not just its default)."""
        return name in self.seen


def parse(argv: list[str], flags: list[Flag], *, stop_at_first_arg: bool = False) -> Parsed:
    """Parse ``argv`` against ``flags``.

    With ``stop_at_first_arg`` (the global flags), parsing stops at the subcommand.
    """
    by_name = {name: flag for flag in flags for name in flag.names}
    values: dict[str, object] = {flag.dest: [] if flag.repeat else flag.default for flag in flags}
    seen: set[str] = set()
    args: list[str] = []
    index = 0
    while index < len(argv):
        item = argv[index]
        index += 1
        if item == "--":
            args.extend(argv[index:])
            break
        if not item.startswith("-") or item == "-":
            args.append(item)
            if stop_at_first_arg:
                args.extend(argv[index:])
                break
            continue
        name, has_value, value = item.lstrip("-").partition("=")
        flag = by_name.get(name)
        if flag is None:
            # Go's flag package words it so, with one dash whatever was typed; clients
            # that probe a runtime for a flag look for this text.
            raise UsageError(f"flag provided but not defined: -{name}")
        seen.add(flag.dest)
        if (flag.repeat or flag.takes_value) and not has_value:
            # "-name value": the value is the next argument, whatever it looks like.
            if index >= len(argv):
                raise UsageError(f"flag needs an argument: -{name}")
            value = argv[index]
            index += 1
        if flag.repeat:
            collected = values[flag.dest]
            assert isinstance(collected, list)
            collected.append(value)
        elif flag.takes_value:
            values[flag.dest] = _convert(flag, value, name)
        elif has_value:
            if value.lower() not in ("true", "false", "1", "0", "t", "f"):
                raise UsageError(f'invalid boolean value "{value}" for -{name}: parse error')
            values[flag.dest] = value.lower() in ("true", "1", "t")
        else:
            values[flag.dest] = True
    return Parsed(values, args, seen)


def _convert(flag: Flag, value: str, name: str) -> object:
    if isinstance(flag.default, int) and not isinstance(flag.default, bool):
        try:
            return int(value)
        except ValueError:
            raise UsageError(f'invalid value "{value}" for flag -{name}: parse error') from None
    return value


def check_arity(command: Command, parsed: Parsed) -> None:
    count = len(parsed.args)
    if count < command.min_args or (command.max_args is not None and count > command.max_args):
        if command.min_args == command.max_args == 1 and count == 0:
            raise UsageError(f'"{command.name}" requires a container id (usage: {command.usage})')
        raise UsageError(f'"{command.name}": wrong number of arguments (usage: {command.usage})')
