"""``config.json`` as typed records.

:func:`parse_config` turns the decoded document into a :class:`Spec`, checking types,
required fields and value ranges as it goes; every error names the JSON path of the
field. It knows the platform-neutral part and the ``linux`` section. What a backend
cannot apply is its own business: each backend's ``check`` rejects fields it does not
implement, reading them from :attr:`Spec.raw`.

Unknown properties are ignored, as the spec's "Extensibility" section requires.
The records are plain ``__slots__`` classes rather than dataclasses: ``dataclasses``
costs 9-15 ms to import and every ``create`` would pay it.
"""

from __future__ import annotations

from corral.core.fastos import fold
from corral.errors import ConfigError
from corral.spec.reader import UINT32_MAX, UINT64_MAX, Fields, describe, join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.spec.freebsd import FreeBSD
    from corral.spec.hooks import Hooks

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
PROPAGATIONS = (
    "shared", "slave", "private", "unbindable",
    "rshared", "rslave", "rprivate", "runbindable",
)  # fmt: skip
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


class Root:
    __slots__ = ("path", "readonly")

    def __init__(self, path: str, readonly: bool) -> None:
        self.path = path
        self.readonly = readonly


class Mount:
    """One entry of ``mounts``; ``destination`` is absolute and normalised."""

    __slots__ = ("destination", "options", "source", "type")

    def __init__(self, destination: str, source: str, type: str, options: list[str]) -> None:
        self.destination = destination
        self.source = source
        self.type = type
        self.options = options


class User:
    __slots__ = ("additional_gids", "gid", "uid", "umask")

    def __init__(self, uid: int, gid: int, umask: int | None, additional_gids: list[int]) -> None:
        self.uid = uid
        self.gid = gid
        self.umask = umask
        self.additional_gids = additional_gids


class Rlimit:
    __slots__ = ("hard", "soft", "type")

    def __init__(self, type: str, soft: int, hard: int) -> None:
        self.type = type
        self.soft = soft
        self.hard = hard


class Capabilities:
    """The five capability sets, as ``CAP_*`` names (validated by the backend)."""

    __slots__ = CAPABILITY_SETS

    def __init__(self, sets: dict[str, list[str]]) -> None:
        self.bounding = sets.get("bounding", [])
        self.effective = sets.get("effective", [])
        self.inheritable = sets.get("inheritable", [])
        self.permitted = sets.get("permitted", [])
        self.ambient = sets.get("ambient", [])


class Process:
    __slots__ = (
        "args",
        "capabilities",
        "cwd",
        "env",
        "no_new_privileges",
        "oom_score_adj",
        "rlimits",
        "terminal",
        "user",
    )

    def __init__(
        self,
        *,
        args: list[str],
        env: list[str],
        cwd: str,
        terminal: bool,
        user: User,
        rlimits: list[Rlimit],
        capabilities: Capabilities | None,
        no_new_privileges: bool,
        oom_score_adj: int | None,
    ) -> None:
        self.args = args
        self.env = env
        self.cwd = cwd
        self.terminal = terminal
        self.user = user
        self.rlimits = rlimits
        self.capabilities = capabilities
        self.no_new_privileges = no_new_privileges
        self.oom_score_adj = oom_score_adj


class Namespace:
    """A namespace to create (``path == ""``) or to join (``path`` set)."""

    __slots__ = ("path", "type")

    def __init__(self, type: str, path: str) -> None:
        self.type = type
        self.path = path


class Linux:
    __slots__ = (
        "masked_paths",
        "namespaces",
        "readonly_paths",
        "rootfs_propagation",
        "sysctl",
    )

    def __init__(
        self,
        *,
        namespaces: list[Namespace],
        rootfs_propagation: str,
        masked_paths: list[str],
        readonly_paths: list[str],
        sysctl: dict[str, str],
    ) -> None:
        self.namespaces = namespaces
        self.rootfs_propagation = rootfs_propagation
        self.masked_paths = masked_paths
        self.readonly_paths = readonly_paths
        self.sysctl = sysctl

    def namespace(self, type: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == type:
                return ns
        return None


class Spec:
    """A parsed ``config.json``. ``raw`` keeps the document for backend checks and hooks.

    ``hooks`` and ``freebsd`` are None when the document has no such section (their
    parsers are only imported when it does).
    """

    __slots__ = (
        "annotations",
        "domainname",
        "freebsd",
        "hooks",
        "hostname",
        "linux",
        "mounts",
        "oci_version",
        "process",
        "raw",
        "root",
    )

    def __init__(
        self,
        *,
        raw: dict[str, Any],
        oci_version: str,
        root: Root | None,
        mounts: list[Mount],
        process: Process | None,
        hostname: str,
        domainname: str,
        annotations: dict[str, str],
        linux: Linux | None,
        hooks: Hooks | None = None,
        freebsd: FreeBSD | None = None,
    ) -> None:
        self.raw = raw
        self.oci_version = oci_version
        self.root = root
        self.mounts = mounts
        self.process = process
        self.hostname = hostname
        self.domainname = domainname
        self.annotations = annotations
        self.linux = linux
        self.hooks = hooks
        self.freebsd = freebsd


def parse_config(document: object) -> Spec:
    """Validate a decoded ``config.json`` and return it as a :class:`Spec`."""
    top = Fields(document, "")
    oci_version = top.string("ociVersion", required=True)
    _check_semver(oci_version, "ociVersion")
    root_fields = top.obj("root")
    root = None
    if root_fields is not None:
        path = root_fields.string("path", required=True)
        if not path:
            raise ConfigError(root_fields.at("path"), "must not be empty")
        root = Root(path, root_fields.boolean("readonly"))
    process_fields = top.obj("process")
    return Spec(
        raw=top.data,
        oci_version=oci_version,
        root=root,
        mounts=[_mount(item, join("mounts", i)) for i, item in enumerate(top.array("mounts"))],
        process=None if process_fields is None else _process(process_fields),
        hostname=top.string("hostname"),
        domainname=top.string("domainname"),
        annotations=top.string_map("annotations"),
        linux=_linux(top.obj("linux")),
        hooks=_hooks(top.obj("hooks")),
        freebsd=_freebsd(top.obj("freebsd")),
    )


def _hooks(fields: Fields | None) -> Hooks | None:
    if fields is None:
        return None
    from corral.spec.hooks import parse_hooks

    return parse_hooks(fields)


def _freebsd(fields: Fields | None) -> FreeBSD | None:
    if fields is None:
        return None
    from corral.spec.freebsd import parse_freebsd

    return parse_freebsd(fields)


def _check_semver(version: str, path: str) -> None:
    # SemVer 2.0.0: MAJOR.MINOR.PATCH with optional -pre and +build parts.
    core = version.split("+", 1)[0].split("-", 1)[0]
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        raise ConfigError(path, f"{describe(version)} is not a SemVer 2.0.0 version")


def _absolute(path: str, where: str, *, allow_relative: bool = False) -> str:
    """Normalise a container path; relative ones are read from "/" where the spec allows."""
    if not path:
        raise ConfigError(where, "must not be empty")
    if "\0" in path:
        raise ConfigError(where, "must not contain a NUL byte")
    if not path.startswith("/"):
        if not allow_relative:
            raise ConfigError(where, f"{describe(path)} is not an absolute path")
        path = "/" + path
    return fold(path)


def _mount(item: object, path: str) -> Mount:
    fields = Fields(item, path)
    destination = _absolute(
        fields.string("destination", required=True),
        fields.at("destination"),
        allow_relative=True,  # config.md: relative destinations are deprecated, read from "/"
    )
    return Mount(
        destination=destination,
        source=fields.string("source"),
        type=fields.string("type"),
        options=fields.strings("options"),
    )


def _process(fields: Fields) -> Process:
    args = fields.strings("args")
    if not args:
        raise ConfigError(fields.at("args"), "must name the program to run")
    cwd = fields.string("cwd", required=True)
    if not cwd.startswith("/"):
        raise ConfigError(fields.at("cwd"), f"{describe(cwd)} is not an absolute path")
    env = fields.strings("env")
    for index, entry in enumerate(env):
        if "=" not in entry or entry.startswith("="):
            raise ConfigError(
                join(fields.at("env"), index), f"{describe(entry)} is not of the form NAME=value"
            )
    user_fields = fields.obj("user")
    user = User(0, 0, None, []) if user_fields is None else _user(user_fields)
    caps = fields.obj("capabilities")
    return Process(
        args=args,
        env=env,
        cwd=cwd,
        terminal=fields.boolean("terminal"),
        user=user,
        rlimits=_rlimits(fields),
        capabilities=None if caps is None else _capabilities(caps),
        no_new_privileges=fields.boolean("noNewPrivileges"),
        oom_score_adj=fields.integer("oomScoreAdj", minimum=-1000, maximum=1000),
    )


def _user(fields: Fields) -> User:
    uid = fields.integer("uid", required=True, minimum=0, maximum=UINT32_MAX - 1)
    gid = fields.integer("gid", required=True, minimum=0, maximum=UINT32_MAX - 1)
    umask = fields.integer("umask", minimum=0, maximum=0o7777)
    gids = fields.array("additionalGids")
    for index, value in enumerate(gids):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < UINT32_MAX:
            raise ConfigError(
                join(fields.at("additionalGids"), index), f"{describe(value)} is not a group id"
            )
    assert uid is not None and gid is not None
    return User(uid, gid, umask, list(gids))


def _rlimits(fields: Fields) -> list[Rlimit]:
    limits: list[Rlimit] = []
    seen: set[str] = set()
    for index, item in enumerate(fields.array("rlimits")):
        entry = Fields(item, join(fields.at("rlimits"), index))
        kind = entry.string("type", required=True)
        if kind in seen:
            raise ConfigError(entry.at("type"), f"{kind} is given twice")
        seen.add(kind)
        soft = entry.integer("soft", required=True, minimum=0, maximum=UINT64_MAX)
        hard = entry.integer("hard", required=True, minimum=0, maximum=UINT64_MAX)
        assert soft is not None and hard is not None
        if soft > hard:
            raise ConfigError(entry.at("soft"), f"soft limit {soft} is above the hard limit {hard}")
        limits.append(Rlimit(kind, soft, hard))
    return limits


def _capabilities(fields: Fields) -> Capabilities:
    return Capabilities({name: fields.strings(name) for name in CAPABILITY_SETS})


def _linux(fields: Fields | None) -> Linux | None:
    if fields is None:
        return None
    namespaces: list[Namespace] = []
    for index, item in enumerate(fields.array("namespaces")):
        entry = Fields(item, join(fields.at("namespaces"), index))
        kind = entry.string("type", required=True)
        if kind not in NAMESPACE_TYPES:
            raise ConfigError(entry.at("type"), f"unknown namespace {describe(kind)}")
        if any(ns.type == kind for ns in namespaces):
            raise ConfigError(entry.at("type"), f"namespace {describe(kind)} is given twice")
        ns_path = entry.string("path")
        if ns_path and not ns_path.startswith("/"):
            raise ConfigError(entry.at("path"), f"{describe(ns_path)} is not an absolute path")
        namespaces.append(Namespace(kind, ns_path))
    propagation = fields.string("rootfsPropagation")
    if propagation and propagation not in PROPAGATIONS:
        raise ConfigError(
            fields.at("rootfsPropagation"), f"unknown propagation {describe(propagation)}"
        )
    return Linux(
        namespaces=namespaces,
        rootfs_propagation=propagation,
        masked_paths=_paths(fields, "maskedPaths"),
        readonly_paths=_paths(fields, "readonlyPaths"),
        sysctl=fields.string_map("sysctl"),
    )


def _paths(fields: Fields, key: str) -> list[str]:
    return [
        _absolute(value, join(fields.at(key), index))
        for index, value in enumerate(fields.strings(key))
    ]
