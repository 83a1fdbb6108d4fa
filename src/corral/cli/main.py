"""Entry point: global flags, the subcommand table, and errors to exit codes.

Only this module and the subcommand's own module are imported for a call; each
handler imports what it needs when it runs. A :class:`~corral.errors.CorralError`
becomes one line on stderr (and in ``--log``) and exit status 1; with ``--debug`` the
traceback follows. Anything else is a bug and is reported as such.
"""

from __future__ import annotations

import sys

from corral.cli.args import Command, Flag, Parsed, check_arity, parse
from corral.errors import CorralError, UnknownCommandError, UsageError

GLOBAL_FLAGS = [
    Flag("root", value=True, default="/run/corral", help="state directory"),
    Flag("log", value=True, help="append errors (and --debug lines) to this file"),
    Flag("log-format", value=True, default="text", help="text or json"),
    Flag("debug", help="debug output, tracebacks on errors"),
    Flag("systemd-cgroup", help='systemd cgroup driver; cgroupsPath is "slice:prefix:name"'),
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
_command("pause", "corral pause <id>", "suspend every process of the container", [], 1, 1)
_command("resume", "corral resume <id>", "resume a paused container", [], 1, 1)
_command(
    "ps",
    "corral ps [--format table|json] <id> [ps options]",
    "list the container's processes",
    [Flag("format,f", value=True, default="table", help="table or json")],
    1,
    None,
)
_command(
    "update",
    "corral update [--resources FILE|-] [flags] <id>",
    "change the container's resource limits",
    [
        Flag("resources,r", value=True, help="a linux.resources JSON file, or - for stdin"),
        Flag("blkio-weight", value=True, help="block IO weight, 10 to 1000"),
        Flag("cpu-period", value=True, help="CPU CFS period (us)"),
        Flag("cpu-quota", value=True, help="CPU CFS quota (us)"),
        Flag("cpu-burst", value=True, help="CPU CFS burst above the quota (us)"),
        Flag("cpu-idle", value=True, help="1: SCHED_IDLE for the cgroup, 0: normal"),
        Flag("cpu-share", value=True, help="CPU shares"),
        Flag("cpu-rt-period", value=True, help="realtime period (us)"),
        Flag("cpu-rt-runtime", value=True, help="realtime runtime (us)"),
        Flag("cpuset-cpus", value=True, help="CPUs to use"),
        Flag("cpuset-mems", value=True, help="memory nodes to use"),
        Flag("memory", value=True, help="memory limit (bytes)"),
        Flag("memory-reservation", value=True, help="memory soft limit (bytes)"),
        Flag("memory-swap", value=True, help="memory + swap limit (bytes), -1 unlimited"),
        Flag("pids-limit", value=True, help="maximum number of pids"),
        Flag("l3-cache-schema", value=True, help="Intel RDT L3 cache schema"),
        Flag("mem-bw-schema", value=True, help="Intel RDT memory bandwidth schema"),
    ],
    1,
    1,
)
_command(
    "events",
    "corral events [--stats] [--interval 5s] <id>",
    "print the container's stats and OOM events as JSON",
    [
        Flag("stats", help="print the stats once and exit"),
        Flag("interval", value=True, default="5s", help="stats interval"),
    ],
    1,
    1,
)
_command(
    "exec",
    "corral exec [flags] <id> [command [args...]]",
    "run a new process in a running container",
    [
        _CONSOLE,
        Flag("cwd", value=True, help="working directory in the container"),
        Flag("env,e", repeat=True, help="set an environment variable (repeatable)"),
        Flag("tty,t", help="allocate a pseudo-terminal"),
        Flag("user,u", value=True, help="uid[:gid]"),
        Flag("additional-gids,g", repeat=True, help="additional gid (repeatable)"),
        Flag("process,p", value=True, help="a process.json"),
        Flag("detach,d", help="do not wait for the process"),
        _PID_FILE,
        Flag("process-label", value=True, help="SELinux label of the process"),
        Flag("apparmor", value=True, help="AppArmor profile of the process"),
        Flag("no-new-privs", help="set no_new_privs"),
        Flag("cap,c", repeat=True, help="add a capability (repeatable)"),
        _PRESERVE,
        Flag("cgroup", repeat=True, help="[controller:]sub-cgroup to run in"),
        Flag("ignore-paused", help="exec in a paused container"),
    ],
    1,
    None,
)
_command(
    "features",
    "corral features",
    "print what this corral supports as JSON (runtime-spec features.md)",
    [],
    0,
    0,
)

# Commands whose handler lives outside corral.cli.lifecycle.
_MODULES = {
    "pause": "cgroup_cmds",
    "resume": "cgroup_cmds",
    "ps": "cgroup_cmds",
    "update": "update_cmd",
    "events": "events_cmd",
    "exec": "exec_cmd",
    "features": "features_cmd",
}


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
        options = parse(argv, GLOBAL_FLAGS, stop_at_first_arg=True)
        if options.text("log_format") not in ("text", "json"):
            # runc's words; like runc, nothing goes to a --log file it cannot format.
            raise UsageError(f"invalid log-format: {options.text('log_format')}")
        logger = Logger(
            options.text("log"), options.text("log_format"), debug=options.flag("debug")
        )
        if options.flag("version"):
            from corral import OCI_VERSION, __version__

            sys.stdout.write(f"corral version {__version__}\nspec: {OCI_VERSION}\n")
            return 0
        if options.flag("help") or not options.args:
            sys.stdout.write(usage_text())
            return 0 if options.flag("help") else 1
        name, rest = options.args[0], options.args[1:]
        command = COMMANDS.get(name)
        if command is None:
            raise UnknownCommandError(f"unknown command {name!r}; see corral --help")
        # exec, ps: flags end at the container id, as with runc, so the command's own
        # flags (`corral exec c1 sh -c ...`, `corral ps c1 -o pid`) are not taken for corral's.
        parsed = parse(rest, command.flags, stop_at_first_arg=name in ("exec", "ps"))
        if parsed.flag("help"):
            sys.stdout.write(f"usage: {command.usage}\n\n{command.help}\n")
            return 0
        check_arity(command, parsed)
        if name in ("create", "run") and sys.platform.startswith("linux"):
            # The kernel's grace period for the cgroup migration ahead, waited out in a
            # thread while the command imports and checks (corral.linux.cgroups.warmup).
            # exec starts it once it has checked --preserve-fds (exec_container.py).
            from corral.linux.cgroups import warmup

            warmup.start()
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
    # __import__ and sys.modules, not importlib: importlib imports `warnings` (~0.6 ms of
    # every call; docs/performance.md).
    module_name = "corral.cli." + _MODULES.get(name, "lifecycle")
    __import__(module_name)
    module = sys.modules[module_name]
    handler = getattr(module, "cmd_" + name)
    result: int = handler(options, parsed)
    return result
