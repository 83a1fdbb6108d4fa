"""``pause``, ``resume`` and ``ps``: the commands that act through the container's cgroup.

``ps`` prints what runc's does: with ``--format json`` the JSON array of the pids in
the container's cgroup (as this process's pid namespace numbers them); as a table, the
output of the host's ``ps`` with the given options (``-ef`` by default), keeping its
header and the rows whose ``PID`` column is one of those pids.
"""

from __future__ import annotations

import sys

from corral.core.runtime import Runtime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.cli.args import Parsed


def cmd_pause(options: Parsed, parsed: Parsed) -> int:
    Runtime(options.text("root")).pause(parsed.args[0])
    return 0


def cmd_resume(options: Parsed, parsed: Parsed) -> int:
    Runtime(options.text("root")).resume(parsed.args[0])
    return 0


def cmd_ps(options: Parsed, parsed: Parsed) -> int:
    from corral.errors import UsageError

    fmt = parsed.text("format")
    if fmt not in ("table", "json"):
        raise UsageError(f'invalid format "{fmt}": table or json')
    pids = Runtime(options.text("root")).processes(parsed.args[0])
    if fmt == "json":
        from corral.core import jsonio

        # Compact, as Go's encoder writes it; "null" for none (a nil slice), as runc.
        sys.stdout.write((jsonio.dumps(pids).replace(", ", ",") if pids else "null") + "\n")
        return 0
    sys.stdout.write(ps_table(run_ps(parsed.args[1:] or ["-ef"]), pids))
    return 0


def run_ps(arguments: list[str]) -> str:
    """The output of the host's ``ps`` with ``arguments``."""
    import subprocess

    from corral.errors import CorralError

    try:
        result = subprocess.run(
            ["ps", *arguments],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
    except OSError as error:
        raise CorralError(f"ps: {error.strerror}") from None
    if result.returncode != 0:
        raise CorralError(
            f"ps {' '.join(arguments)} exited {result.returncode}: "
            + result.stdout.strip().replace("\n", " ")
        )
    return result.stdout


def ps_table(output: str, pids: list[int]) -> str:
    """``ps`` output cut down to its header and the rows of ``pids``."""
    from corral.errors import CorralError

    lines = output.split("\n")
    titles = lines[0].split()
    if "PID" not in titles:
        raise CorralError("couldn't find PID field in ps output (give ps a pid column)")
    column = titles.index("PID")
    wanted = set(pids)
    kept = [lines[0]]
    for line in lines[1:]:
        fields = line.split()
        if not fields:
            continue
        try:
            pid = int(fields[column])
        except (IndexError, ValueError):
            raise CorralError(f"unable to parse pid in ps output: {line!r}") from None
        if pid in wanted:
            kept.append(line)
    return "\n".join(kept) + "\n"
