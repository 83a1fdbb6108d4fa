"""Entry point: global flags, the subcommand table, and errors to exit codes.

Only this module and the subcommand's own module are imported for a call; each
handler imports what it needs when it runs. A :class:`~corral.errors.CorralError`
becomes one line on stderr (and in ``--log``) and exit status 1; with ``--debug`` the
traceback follows. Anything else is a bug and is reported as such.
"""

from __future__ import annotations

import sys

from corral.cli.args import Command, Flag, Parsed, check_arity, parse
from corral.errors import CorralError, UsageError

GLOBAL_FLAGS = [
    Flag("root", value=True, default="/run/corral", help="state directory"),
    Flag("log", value=True, help="append errors (and --debug lines) to this file"),
    Flag("log-format", value=True, default="text", help="text or json"),
    Flag("debug", help="debug output, tracebacks on errors"),
    Flag("systemd-cgroup", help="use systemd for cgroups (not supported yet)"),
    Flag(
        "rootless", value=True, default="auto", help="ignored: rootless mode is not supported yet"
    ),
    Flag("criu", value=True, help="ignored (checkpointing is not supported)"),
    Flag("version,v", help="print the version"),
    Flag("help,h", help="show help"),
]

# name -> (module, usage, help, flags, min args, max args)
COMMANDS: dict[str, Command] = {}


def _command(
    name: str, usage: str, help: str, flags: list[Flag], min_args: int, max_args: int | None
) -> None:
    COMMANDS[name] = Command(name, usage, help, [*flags, Flag("help,h")], min_args, max_args)


_BUNDLE = Flag("bundle,b", value=True, help="bundle directory (default: current directory)")
_PID_FILE = Flag("pid-file", value=True, help="write the init's pid to this file")
_CONSOLE = Flag("console-socket", value=True, help="unix socket to send the pty master to")
_NO_PIVOT = Flag("no-pivot", help="use MS_MOVE+chroot instead of pivot_root (ramdisk roots)")
_NO_KEYRING = Flag("no-new-keyring", help="keep the caller's session keyring")
_PRESERVE = Flag("preserve-fds", value=True, default=0, help="pass N extra fds (from 3)")
_CREATE_FLAGS = [_BUNDLE, _PID_FILE, _CONSOLE, _NO_PIVOT, _NO_KEYRING, _PRESERVE]

_command("create", "corral create [flags] <id>", "create a container", _CREATE_FLAGS, 1, 1)
_command("start", "corral start <id>", "run the created container's program", [], 1, 1)
_command("state", "corral state <id>", "print the container's state as JSON", [], 1, 1)
_command(
    "kill",
    "corral kill [--all] <id> [signal]",
    "signal the container (default SIGTERM)",
    [Flag("all,a", help="signal every process of the container")],
    1,
    2,
)
_command(
    "delete",
    "corral delete [--force] <id>",
    "delete a container",
    [Flag("force,f", help="kill it first if it runs")],
    1,
    1,
)
_command(
    "run",
    "corral run [flags] <id>",
    "create and start a container, wait for it, delete it",
    [*_CREATE_FLAGS, Flag("detach,d", help="return once started")],
    1,
    1,
)
_command(
    "list",
    "corral list [--format table|json] [-q]",
    "list containers",
    [Flag("format,f", value=True, default="table"), Flag("quiet,q", help="ids only")],
    0,
    0,
)
_command(
    "spec",
    "corral spec [--bundle DIR] [--rootless] [--platform linux|freebsd]",
    "write a default config.json",
    [
        _BUNDLE,
        Flag("rootless", help="a config for rootless containers"),
        Flag("platform", value=True, help="linux or freebsd (default: this host's)"),
    ],
    0,
    0,
)
_command(
    "demo",
    "corral demo [--bundle DIR] [--keep] [-- command...] | "
    "demo download [--release R] [--arch A] [--output F] | "
    "demo oci-image [--input F] [--output F] [--tag NAME:TAG] [--arch A]",
    "run a busybox container from the host's static busybox; or fetch a FreeBSD "
    "base.txz, or turn one into an OCI image",
    [
        _BUNDLE,
        Flag("keep", help="keep the bundle"),
        Flag("release", value=True, help="download: FreeBSD release, e.g. 14.3"),
        Flag("arch", value=True, help="download, oci-image: amd64 or arm64"),
        Flag("output", value=True, help="download: base.txz; oci-image: image.tar"),
        Flag("input", value=True, help="oci-image: the root filesystem tarball"),
        Flag("tag", value=True, help="oci-image: image name, e.g. freebsd:14.3"),
    ],
    0,
    None,
)


def usage_text() -> str:
    lines = [
        "usage: corral [global flags] <command> [flags] [arguments]",
        "",
        "An OCI container runtime with runc's command line.",
        "",
        "commands:",
    ]
    lines += [f"  {c.name:<8} {c.help}" for c in COMMANDS.values()]
    lines += ["", "global flags:"]
    for flag in GLOBAL_FLAGS:
        names = ", ".join(("-" if len(n) == 1 else "--") + n for n in flag.names)
        lines.append(f"  {names:<22} {flag.help}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from corral.cli.log import Logger

    argv = sys.argv[1:] if argv is None else argv
    logger = Logger()
    try:
        options = parse(argv, GLOBAL_FLAGS, stop_at_first_arg=True, context="corral")
        logger = Logger(
            options.text("log"), options.text("log_format"), debug=options.flag("debug")
        )
        if options.text("log_format") not in ("text", "json"):
            raise UsageError(f'invalid --log-format "{options.text("log_format")}": text or json')
        if options.flag("version"):
            from corral import OCI_VERSION, __version__

            sys.stdout.write(f"corral version {__version__}\nspec: {OCI_VERSION}\n")
            return 0
        if options.flag("help") or not options.args:
            sys.stdout.write(usage_text())
            return 0 if options.flag("help") else 1
        if options.flag("systemd_cgroup"):
            raise UsageError("--systemd-cgroup: the systemd cgroup driver comes with issue 5")
        name, rest = options.args[0], options.args[1:]
        command = COMMANDS.get(name)
        if command is None:
            raise UsageError(f"unknown command {name!r}; see corral --help")
        parsed = parse(rest, command.flags, context=name)
        if parsed.flag("help"):
            sys.stdout.write(f"usage: {command.usage}\n\n{command.help}\n")
            return 0
        check_arity(command, parsed)
        return _dispatch(name, options, parsed, logger)
    except CorralError as error:
        logger.error(str(error))
        if logger.debug_enabled:
            import traceback

            traceback.print_exc()
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except OSError as error:
        # An OS failure that no layer turned into a CorralError: still one line.
        logger.error(error.strerror or str(error))
        if logger.debug_enabled:
            import traceback

            traceback.print_exc()
        return 1
    except Exception as error:  # a bug in corral: still one line, the details with --debug
        logger.error(f"internal error: {type(error).__name__}: {error} (run with --debug)")
        if logger.debug_enabled:
            import traceback

            traceback.print_exc()
        return 1


def _dispatch(name: str, options: Parsed, parsed: Parsed, logger: object) -> int:
    if name == "spec":
        from corral.cli.spec_cmd import cmd_spec

        return cmd_spec(parsed)
    if name == "demo" and parsed.args[:1] == ["download"]:
        from corral.cli.demo_image import cmd_demo_download

        return cmd_demo_download(parsed)
    if name == "demo" and parsed.args[:1] == ["oci-image"]:
        from corral.cli.demo_image import cmd_demo_oci_image

        return cmd_demo_oci_image(parsed)
    if name == "demo":
        from corral.cli.demo import cmd_demo

        return cmd_demo(options, parsed)
    from corral.cli import lifecycle

    handler = getattr(lifecycle, "cmd_" + name)
    result: int = handler(options.text("root"), parsed)
    return result
