"""``corral exec [flags] <id> [command [args...]]``: a new process in a container.

Flags end at the container id (runc's rule, set in :mod:`corral.cli.main`), so the
command keeps its own flags. As with runc, every failure before the program runs is
printed as ``exec failed: <reason>`` and exits with status 255, which clients tell
apart from the program's own statuses; once it runs, the status is the program's.
"""

from __future__ import annotations

from corral.errors import CorralError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.cli.args import Parsed


class ExecFailedError(CorralError):
    """``exec`` could not start the process (runc's exit status for it)."""

    exit_code = 255


def cmd_exec(options: Parsed, parsed: Parsed) -> int:
    from corral.core.exec_container import exec_in_container
    from corral.core.exec_request import ExecOptions
    from corral.core.runtime import Runtime

    try:
        request = ExecOptions(
            args=parsed.args[1:],
            process_file=parsed.text("process"),
            env=parsed.texts("env"),
            cwd=parsed.text("cwd"),
            user=parsed.text("user"),
            additional_gids=parsed.texts("additional_gids"),
            caps=parsed.texts("cap"),
            tty=parsed.flag("tty"),
            no_new_privs=parsed.flag("no_new_privs") if parsed.given("no_new_privs") else None,
            apparmor=parsed.text("apparmor"),
            process_label=parsed.text("process_label"),
            detach=parsed.flag("detach"),
            pid_file=parsed.text("pid_file"),
            console_socket=parsed.text("console_socket"),
            preserve_fds=parsed.number("preserve_fds"),
            cgroups=parsed.texts("cgroup"),
            ignore_paused=parsed.flag("ignore_paused"),
        )
        return exec_in_container(Runtime(options.text("root")), parsed.args[0], request)
    except CorralError as error:
        raise ExecFailedError(f"exec failed: {error}") from error
    except OSError as error:
        reason = error.strerror or str(error)
        if error.filename:
            reason = f"{error.filename}: {reason}"
        raise ExecFailedError(f"exec failed: {reason}") from error
