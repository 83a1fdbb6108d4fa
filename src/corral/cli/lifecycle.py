"""The lifecycle subcommands: create, start, state, kill, delete, run, list.

Each is a thin shell over :class:`corral.core.runtime.Runtime`: parse, call, print.
"""

from __future__ import annotations

import sys

from corral.core.runtime import Runtime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.cli.args import Parsed


def _bundle(parsed: Parsed) -> str:
    from corral.core import fastos

    return parsed.text("bundle") or fastos.getcwd()


def cmd_create(options: Parsed, parsed: Parsed) -> int:
    root = options.text("root")
    Runtime(root).create(
        parsed.args[0],
        _bundle(parsed),
        pid_file=parsed.text("pid_file") or None,
        console_socket=parsed.text("console_socket") or None,
        no_pivot=parsed.flag("no_pivot"),
        no_new_keyring=parsed.flag("no_new_keyring"),
        preserve_fds=_preserve(parsed),
        systemd_cgroup=options.flag("systemd_cgroup"),
    )
    return 0


def _preserve(parsed: Parsed) -> int:
    from corral.errors import UsageError

    count = parsed.number("preserve_fds")
    if count < 0:
        raise UsageError(f"--preserve-fds: {count} is negative")
    return count


def cmd_start(options: Parsed, parsed: Parsed) -> int:
    root = options.text("root")
    Runtime(root).start(parsed.args[0])
    return 0


def cmd_state(options: Parsed, parsed: Parsed) -> int:
    root = options.text("root")
    from corral.core import jsonio

    sys.stdout.write(jsonio.dumps(Runtime(root).state(parsed.args[0]), indent=2) + "\n")
    return 0


def cmd_kill(options: Parsed, parsed: Parsed) -> int:
    root = options.text("root")
    number = kill_signal(parsed.args[1] if len(parsed.args) > 1 else "TERM")
    Runtime(root).kill(parsed.args[0], number, all=parsed.flag("all"))
    return 0


def kill_signal(text: str) -> int:
    """The signal ``kill`` sends: a name (``KILL``, ``sigkill``) or a number.

    A number is read as runc reads it (Go's ``strconv.Atoi``: an optional ``+``), and
    0 is allowed: kill(2) then only checks that the init still exists.
    """
    from corral.core.signals import parse_signal

    digits = text.removeprefix("+")
    if digits.isdigit() and digits.isascii():
        number = int(digits)
        return 0 if number == 0 else parse_signal(str(number))
    return parse_signal(text)


def cmd_delete(options: Parsed, parsed: Parsed) -> int:
    root = options.text("root")
    from corral.errors import ContainerNotFoundError

    try:
        Runtime(root).delete(parsed.args[0], force=parsed.flag("force"))
    except ContainerNotFoundError:
        if not parsed.flag("force"):
            raise
        # runc: --force on a missing container is not an error (containerd relies on it).
    return 0


def cmd_run(options: Parsed, parsed: Parsed) -> int:
    root = options.text("root")
    from corral.core.run import run_container

    return run_container(
        Runtime(root),
        parsed.args[0],
        _bundle(parsed),
        detach=parsed.flag("detach"),
        pid_file=parsed.text("pid_file") or None,
        console_socket=parsed.text("console_socket") or None,
        no_pivot=parsed.flag("no_pivot"),
        no_new_keyring=parsed.flag("no_new_keyring"),
        preserve_fds=_preserve(parsed),
        systemd_cgroup=options.flag("systemd_cgroup"),
    )


def cmd_list(options: Parsed, parsed: Parsed) -> int:
    root = options.text("root")
    from corral.errors import UsageError

    states = Runtime(root).list()
    fmt = parsed.text("format")
    if parsed.flag("quiet"):
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif fmt == "json":
        from corral.core import jsonio

        # runc prints compact JSON, and "null" for no containers (Go's nil slice).
        sys.stdout.write((jsonio.dumps(states) if states else "null") + "\n")
    elif fmt == "table":
        sys.stdout.write(format_table(states))
    else:
        raise UsageError(f'invalid format "{fmt}": table or json')
    return 0


def format_table(states: list[dict[str, object]]) -> str:
    """Columns padded like Go's tabwriter with runc's settings (min width 12, padding 3)."""
    header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    keys = ["id", "pid", "status", "bundle", "created", "owner"]
    rows = [header] + [[str(s.get(k, "")) for k in keys] for s in states]
    widths = [max(12, *(len(row[i]) + 3 for row in rows)) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("".join(cells) + row[-1])
    return "\n".join(lines) + "\n"
