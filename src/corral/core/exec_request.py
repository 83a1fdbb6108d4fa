"""What ``corral exec`` runs: the process record, from a process.json or from flags.

runc 1.1's two forms, which clients rely on:

* ``--process FILE``: the file is a ``process`` object of config.md, taken as it is.
  What it leaves out comes from the container's own config, as runc's libcontainer
  does for a process it joins to a container: ``capabilities``, ``apparmorProfile``,
  ``selinuxLabel``, ``rlimits`` (when the file has none) and ``oomScoreAdj``. One
  deliberate difference: an absent ``noNewPrivileges`` is the config's value, where
  runc would take false; a file that wants it off says ``false``.
* the command-line form: the container's ``config.json`` ``process`` is the base (read
  from the bundle at exec time, as runc does), and the flags change it: the command
  replaces ``args``; ``--env`` entries are *appended* to the config's ``env`` (a later
  entry wins); ``--cwd``, ``--apparmor`` and ``--process-label`` replace their field;
  ``--user uid[:gid]`` replaces the uid (and the gid when given); ``--additional-gids``
  are appended; each ``--cap`` is added to the bounding, effective and permitted sets,
  and to the ambient set only where the inheritable set already has it (the only case
  in which the kernel can raise it; runc 1.1.5 adds it to ambient regardless, and its
  init then fails or warns); ``--tty`` sets ``terminal`` (false without it, whatever
  the config says); ``--no-new-privs`` given sets ``noNewPrivileges`` to its value.

Either way the result is validated by the same parser as ``config.json``'s ``process``
(:func:`corral.spec.model.parse_config`), so a bad field is named by its JSON path, in
the file it came from. :func:`exec_spec` returns a :class:`~corral.spec.model.Spec`
whose ``process`` is the one to run and whose ``raw`` also holds the container's
``linux`` section (seccomp, labels and namespaces apply to the exec'd process too).

``--cgroup`` values (``[controller[,controller]:]path``) are parsed by
:func:`parse_cgroup_flags` with runc's rules.
"""

from __future__ import annotations

from corral.errors import ConfigError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.spec.model import Spec

# The process fields libcontainer takes from the container's config when a
# process.json leaves them out (see the module doc).
INHERITED_FIELDS = (
    "capabilities",
    "apparmorProfile",
    "selinuxLabel",
    "noNewPrivileges",
    "oomScoreAdj",
)


class ExecOptions:
    """``corral exec``'s flags, as given (``None``/empty where a flag was not given)."""

    __slots__ = (
        "additional_gids",
        "apparmor",
        "args",
        "caps",
        "cgroups",
        "console_socket",
        "cwd",
        "detach",
        "env",
        "ignore_paused",
        "no_new_privs",
        "pid_file",
        "preserve_fds",
        "process_file",
        "process_label",
        "tty",
        "user",
    )

    def __init__(
        self,
        *,
        args: list[str] | None = None,
        process_file: str = "",
        env: list[str] | None = None,
        cwd: str = "",
        user: str = "",
        additional_gids: list[str] | None = None,
        caps: list[str] | None = None,
        tty: bool = False,
        no_new_privs: bool | None = None,
        apparmor: str = "",
        process_label: str = "",
        detach: bool = False,
        pid_file: str = "",
        console_socket: str = "",
        preserve_fds: int = 0,
        cgroups: list[str] | None = None,
        ignore_paused: bool = False,
    ) -> None:
        self.args = args or []
        self.process_file = process_file
        self.env = env or []
        self.cwd = cwd
        self.user = user
        self.additional_gids = additional_gids or []
        self.caps = caps or []
        self.tty = tty
        self.no_new_privs = no_new_privs
        self.apparmor = apparmor
        self.process_label = process_label
        self.detach = detach
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.preserve_fds = preserve_fds
        self.cgroups = cgroups or []
        self.ignore_paused = ignore_paused


def exec_spec(options: ExecOptions, config: dict[str, Any]) -> Spec:
    """The process to run in the container whose decoded ``config.json`` is ``config``.

    Raises UsageError for a bad flag, ConfigError (naming the field and the file) for
    a bad process.json or merged process.
    """
    if options.preserve_fds < 0:
        raise UsageError(f"--preserve-fds: {options.preserve_fds} is negative")
    if options.process_file:
        if options.args:
            # runc ignores them silently; a command that is not run is worth a word.
            raise UsageError("--process and a command cannot both be given")
        process = process_from_file(options.process_file, config)
        source = options.process_file
    else:
        process = process_from_flags(options, config)
        source = "config.json"
    return parse_process(process, config, source=source)


def process_from_file(path: str, config: dict[str, Any]) -> dict[str, Any]:
    """The ``process`` object in the file at ``path``, completed from ``config``."""
    from corral.core import jsonio

    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise UsageError(f"--process {path}: {error.strerror}") from None
    try:
        document = jsonio.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise ConfigError("", f"not valid JSON: {error}", source=path) from None
    if not isinstance(document, dict):
        raise ConfigError("", "expected a process object", source=path)
    return inherit_from_config(document, _config_process(config))


def inherit_from_config(process: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``process`` with the fields it lacks taken from the config's ``base`` (pure)."""
    merged = dict(process)
    for key in INHERITED_FIELDS:
        if merged.get(key) is None and base.get(key) is not None:
            merged[key] = base[key]
    if not merged.get("rlimits") and base.get("rlimits"):
        merged["rlimits"] = base["rlimits"]
    return merged


def process_from_flags(options: ExecOptions, config: dict[str, Any]) -> dict[str, Any]:
    """The config's ``process`` changed by the flags, as runc's exec does (pure)."""
    if not options.args:
        raise UsageError("process args cannot be empty")  # runc's words
    # A shallow copy is enough: every nested value changed below is replaced by a new
    # one, never changed in place (and `copy` costs a millisecond to import).
    process = dict(_config_process(config))
    process["args"] = list(options.args)
    if options.cwd:
        if not options.cwd.startswith("/"):
            raise UsageError(f'--cwd "{options.cwd}": not an absolute path')
        process["cwd"] = options.cwd
    if options.apparmor:
        process["apparmorProfile"] = options.apparmor
    if options.process_label:
        process["selinuxLabel"] = options.process_label
    if options.caps:
        process["capabilities"] = add_capabilities(process.get("capabilities"), options.caps)
    for entry in options.env:
        if "=" not in entry or entry.startswith("="):
            raise UsageError(f'--env "{entry}": expected NAME=value')
    process["env"] = [*(process.get("env") or []), *options.env]
    process["terminal"] = options.tty
    if options.no_new_privs is not None:
        process["noNewPrivileges"] = options.no_new_privs
    user = dict(process.get("user") or {"uid": 0, "gid": 0})
    if options.user:
        uid, gid = parse_user(options.user)
        user["uid"] = uid
        if gid is not None:
            user["gid"] = gid
    if options.additional_gids:
        user["additionalGids"] = [
            *(user.get("additionalGids") or []),
            *(_group_id(text) for text in options.additional_gids),
        ]
    process["user"] = user
    return process


def add_capabilities(capabilities: object, names: list[str]) -> dict[str, Any]:
    """``--cap``: each name added to bounding, effective and permitted, and to ambient
    where inheritable has it (pure; the input is not changed)."""
    sets: dict[str, Any] = dict(capabilities) if isinstance(capabilities, dict) else {}
    for set_name in ("bounding", "effective", "permitted", "ambient"):
        current = sets.get(set_name)
        sets[set_name] = list(current) if isinstance(current, list) else []
    inheritable = sets.get("inheritable")
    for name in names:
        if not name.startswith("CAP_"):
            raise UsageError(f'--cap "{name}": expected a capability name such as CAP_NET_ADMIN')
        for set_name in ("bounding", "effective", "permitted"):
            if name not in sets[set_name]:
                sets[set_name].append(name)
        if isinstance(inheritable, list) and name in inheritable and name not in sets["ambient"]:
            sets["ambient"].append(name)
    if not sets["ambient"]:
        del sets["ambient"]
    return sets


def parse_user(text: str) -> tuple[int, int | None]:
    """``--user uid[:gid]`` as numbers (names are not looked up, as with runc)."""
    uid_text, has_gid, gid_text = text.partition(":")
    uid = _id_number(uid_text, f'--user "{text}"', "uid")
    gid = _id_number(gid_text, f'--user "{text}"', "gid") if has_gid else None
    return uid, gid


def _id_number(text: str, where: str, what: str) -> int:
    from corral.spec.reader import UINT32_MAX

    if not text.isascii() or not text.isdigit() or int(text) >= UINT32_MAX:
        raise UsageError(f"{where}: {what} {text!r} is not a number from 0 to {UINT32_MAX - 1}")
    return int(text)


def _group_id(text: str) -> int:
    return _id_number(text.strip(), f'--additional-gids "{text}"', "gid")


def parse_cgroup_flags(values: list[str]) -> dict[str, str]:
    """``--cgroup`` values as ``{controller: sub-path}``; ``{"": path}`` for the form
    without a controller (cgroup v2, or every v1 controller), which must come alone.

    runc's rules; a path may not climb out of the container's cgroup (``..``), which
    runc checks later, when it joins the path to the container's.
    """
    paths: dict[str, str] = {}
    for value in values:
        controllers, has_prefix, path = value.rpartition(":") if ":" in value else ("", "", value)
        if not path or any(part == ".." for part in path.split("/")):
            raise UsageError(f"invalid --cgroup argument: {value} (not a sub-cgroup path)")
        if not has_prefix:
            if len(values) != 1:
                raise UsageError(
                    f"invalid --cgroup argument: {value} (missing <controller>: prefix)"
                )
            paths[""] = path
            continue
        if ":" in controllers:
            raise UsageError(f"invalid --cgroup argument: {value}")
        for controller in controllers.split(","):
            if not controller:
                raise UsageError(f"invalid --cgroup argument: {value} (empty <controller> prefix)")
            if controller in paths:
                raise UsageError(
                    f"invalid --cgroup argument(s): controller {controller} given twice"
                )
            paths[controller] = path
    return paths


def parse_process(process: dict[str, Any], config: dict[str, Any], *, source: str) -> Spec:
    """Validate ``process`` with config.json's parser; the Spec to run it with.

    Errors name the field as the process object's JSON path, in ``source``: for a
    process.json that is the file and a path without the ``process.`` prefix.
    """
    from corral.spec.model import parse_config

    document: dict[str, Any] = {
        "ociVersion": config.get("ociVersion") or "1.0.0",
        "process": process,
    }
    if isinstance(config.get("linux"), dict):
        document["linux"] = config["linux"]
    if isinstance(config.get("freebsd"), dict):
        document["freebsd"] = config["freebsd"]
    try:
        spec = parse_config(document)
    except ConfigError as error:
        if source == "config.json" or not error.path.startswith("process"):
            raise
        path = error.path[len("process") :].lstrip(".")
        raise ConfigError(path, error.message, source=source) from None
    return spec


def _config_process(config: dict[str, Any]) -> dict[str, Any]:
    process = config.get("process")
    return process if isinstance(process, dict) else {}
