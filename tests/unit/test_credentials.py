"""The credentials plan and its executor, checked against a recording fake Syscalls."""

from __future__ import annotations

import os

import pytest

from corral.errors import ConfigError, CreateError
from corral.linux import capabilities, credentials
from corral.linux.capabilities import capability_mask
from corral.linux.credentials import (
    ALL_CAPABILITIES,
    Granted,
    apply_credentials,
    check_process,
    plan_credentials,
)
from corral.linux.syscalls import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAP_AMBIENT_RAISE,
    PR_CAPBSET_DROP,
    PR_CAPBSET_READ,
    PR_SET_KEEPCAPS,
    PR_SET_NO_NEW_PRIVS,
)
from corral.spec.model import Capabilities, Process, Spec, User, parse_config

CHOWN, KILL, NET_BIND = 0, 5, 10


def make_process(
    *,
    caps: dict[str, list[str]] | None = None,
    uid: int = 1000,
    gid: int = 1000,
    gids: list[int] | None = None,
    umask: int | None = None,
    cwd: str = "/",
    nnp: bool = False,
) -> Process:
    return Process(
        args=["sh"],
        env=[],
        cwd=cwd,
        terminal=False,
        user=User(uid, gid, umask, gids or []),
        rlimits=[],
        capabilities=None if caps is None else Capabilities(caps),
        no_new_privileges=nnp,
        oom_score_adj=None,
    )


class RecordingSyscalls:
    """Same method names as Syscalls; records each call, fails the ones told to."""

    def __init__(
        self,
        fail: dict[str, OSError] | None = None,
        held: int = ALL_CAPABILITIES,
        held_inheritable: int = 0,
        held_bounding: int = ALL_CAPABILITIES,
    ) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.fail = fail or {}
        self.held = (held, held, held_inheritable)
        self.held_bounding = held_bounding

    def capget(self) -> tuple[int, int, int]:
        self._record("capget")
        return self.held

    def _record(self, name: str, *args: object) -> None:
        self.calls.append((name, *args))
        for key in (name, f"{name}:{args[0] if args else ''}"):
            if key in self.fail:
                raise self.fail[key]

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
        self._record("prctl", option, arg2, arg3, arg4, arg5)
        if option == PR_CAPBSET_READ:
            return 1 if self.held_bounding & (1 << arg2) else 0
        return 0

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        self._record("capset", effective, permitted, inheritable)

    def setgroups(self, gids: list[int]) -> None:
        self._record("setgroups", gids)

    def setresgid(self, rgid: int, egid: int, sgid: int) -> None:
        self._record("setresgid", rgid, egid, sgid)

    def setresuid(self, ruid: int, euid: int, suid: int) -> None:
        self._record("setresuid", ruid, euid, suid)

    def umask(self, mask: int) -> None:
        self._record("umask", mask)

    def chdir(self, path: str) -> None:
        self._record("chdir", path)


@pytest.fixture(autouse=True)
def last_cap_40(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capabilities, "_last_cap", 40)


def drops(keep: set[int], last: int = 40) -> list[tuple[object, ...]]:
    return [("prctl", PR_CAPBSET_DROP, n, 0, 0, 0) for n in range(last + 1) if n not in keep]


def reads(last: int = 40) -> list[tuple[object, ...]]:
    return [("prctl", PR_CAPBSET_READ, n, 0, 0, 0) for n in range(last + 1)]


def run(process: Process, fake: RecordingSyscalls | None = None) -> RecordingSyscalls:
    fake = fake or RecordingSyscalls()
    apply_credentials(fake, process)  # type: ignore[arg-type]
    return fake


def test_full_order_of_calls() -> None:
    process = make_process(
        caps={
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_NET_BIND_SERVICE"],
        },
        uid=1000,
        gid=1001,
        gids=[5, 6],
        umask=0o027,
        cwd="/srv",
        nnp=True,
    )
    calls = run(process).calls
    assert calls == [
        ("capget",),
        *reads(),
        *drops({CHOWN, KILL, NET_BIND}),
        ("prctl", PR_SET_KEEPCAPS, 1, 0, 0, 0),
        ("setgroups", [5, 6]),
        ("setresgid", 1001, 1001, 1001),
        ("setresuid", 1000, 1000, 1000),
        ("prctl", PR_SET_KEEPCAPS, 0, 0, 0, 0),
        ("capset", 1 << CHOWN | 1 << NET_BIND, 1 << CHOWN | 1 << NET_BIND, 1 << NET_BIND),
        ("prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
        ("prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, NET_BIND, 0, 0),
        ("umask", 0o027),
        ("chdir", "/srv"),
        ("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
    ]


def test_no_capabilities_object_means_no_capabilities() -> None:
    calls = run(make_process(caps=None, uid=0, gid=0)).calls
    assert calls[1:83] == reads() + drops(set())
    assert ("capset", 0, 0, 0) in calls
    assert [c for c in calls if c[:3] == ("prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE)] == []
    # No umask, no no_new_privs unless asked; groups are always reset (host root's
    # supplementary groups must not reach the container).
    assert ("setgroups", []) in calls
    assert not [c for c in calls if c[0] == "umask"]
    assert calls[-1] == ("chdir", "/")


def test_bounding_drops_follow_the_kernels_last_capability(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(capabilities, "_last_cap", 37)
    calls = run(make_process(caps={"bounding": ["CAP_KILL"]})).calls
    assert [c for c in calls if c[1:2] == (PR_CAPBSET_DROP,)] == drops({KILL}, last=37)


def test_plan_is_pure_and_names_each_step() -> None:
    steps = plan_credentials(make_process(caps={"ambient": []}, uid=7, cwd="/x"), 2)
    assert [(s.call, s.args) for s in steps][:3] == [
        ("prctl", (PR_CAPBSET_DROP, 0)),
        ("prctl", (PR_CAPBSET_DROP, 1)),
        ("prctl", (PR_CAPBSET_DROP, 2)),
    ]
    whats = {s.call: s.what for s in steps}
    assert whats["setresuid"] == "process.user.uid 7"
    assert whats["chdir"] == 'process.cwd "/x"'


def test_ambient_raised_once_each_in_order() -> None:
    names = ["CAP_KILL", "CAP_CHOWN", "CAP_KILL"]
    steps = plan_credentials(
        make_process(
            caps={"bounding": names, "permitted": names, "inheritable": names, "ambient": names}
        ),
        40,
    )
    raised = [s.args[2] for s in steps if s.args[:2] == (PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE)]
    assert raised == [KILL, CHOWN]


def test_missing_cwd_is_reported_as_runc_does() -> None:
    fake = RecordingSyscalls({"chdir": FileNotFoundError(2, "No such file or directory")})
    with pytest.raises(CreateError) as info:
        run(make_process(cwd="/nope"), fake)
    assert str(info.value) == 'process.cwd "/nope": No such file or directory'
    assert fake.calls[-1] == ("chdir", "/nope")  # nothing after the failure


def test_failed_bounding_drop_names_the_capability() -> None:
    drop = f"prctl:{PR_CAPBSET_DROP}"
    fake = RecordingSyscalls({drop: OSError(1, "prctl 24: Operation not permitted")})
    with pytest.raises(CreateError) as info:
        run(make_process(), fake)
    assert str(info.value) == (
        "process.capabilities.bounding: dropping CAP_CHOWN: Operation not permitted"
    )


def test_unmapped_uid_gets_a_hint() -> None:
    fake = RecordingSyscalls({"setresuid": OSError(22, "Invalid argument")})
    with pytest.raises(CreateError) as info:
        run(make_process(uid=4242), fake)
    assert str(info.value) == (
        "process.user.uid 4242: Invalid argument (not mapped in the container's user namespace)"
    )


def test_setgroups_denied_by_the_user_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    setgroups_file = os.path.join(tmp_path, "setgroups")
    with open(setgroups_file, "w") as f:
        f.write("deny\n")
    monkeypatch.setattr(credentials, "SETGROUPS_FILE", setgroups_file)
    eperm = PermissionError(1, "Operation not permitted")
    # Nothing asked: the EPERM is expected there and ignored; the rest still happens.
    fake = run(make_process(), RecordingSyscalls({"setgroups": eperm}))
    assert ("setresuid", 1000, 1000, 1000) in fake.calls
    # Additional gids asked for: that cannot be honoured, so it is an error.
    with pytest.raises(CreateError, match=r"process.user.additionalGids \[5\]: Operation not"):
        run(make_process(gids=[5]), RecordingSyscalls({"setgroups": eperm}))
    # "allow": the EPERM is a real failure even with no gids.
    with open(setgroups_file, "w") as f:
        f.write("allow\n")
    with pytest.raises(CreateError):
        run(make_process(), RecordingSyscalls({"setgroups": eperm}))


def test_check_process_covers_capabilities_rlimits_and_sysctl() -> None:
    def config(process: dict[str, object], sysctl: dict[str, str] | None = None) -> Spec:
        return parse_config(
            {
                "ociVersion": "1.2.0",
                "process": {"args": ["sh"], "cwd": "/", **process},
                "linux": {"namespaces": [{"type": "ipc"}], "sysctl": sysctl or {}},
            }
        )

    good = config(
        {
            "capabilities": {"bounding": ["CAP_KILL"], "effective": [], "permitted": []},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 2}],
        },
        {"kernel.shmmax": "1"},
    )
    check_process(good)
    cases = [
        (config({"capabilities": {"inheritable": ["CAP_NOPE"]}}), "process.capabilities"),
        (config({"rlimits": [{"type": "RLIMIT_X", "soft": 1, "hard": 1}]}), "process.rlimits"),
        (config({}, {"net.core.somaxconn": "1"}), "linux.sysctl"),
    ]
    for spec, prefix in cases:
        with pytest.raises(ConfigError) as info:
            check_process(spec)
        assert info.value.path.startswith(prefix)


def test_capabilities_the_runtime_lacks_are_left_out_with_a_warning() -> None:
    # The spec: "Runtimes SHOULD NOT fail if the container configuration requests
    # capabilities that cannot be granted" -- they MUST be logged as a warning.
    names = ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_NET_BIND_SERVICE"]
    process = make_process(
        caps={
            "bounding": names,
            "effective": names,
            "permitted": names,
            "inheritable": ["CAP_SYS_RESOURCE", "CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_SYS_RESOURCE", "CAP_NET_BIND_SERVICE"],
        }
    )
    held = ALL_CAPABILITIES & ~(1 << 24)  # no CAP_SYS_RESOURCE, as in some sandboxes
    warnings: list[str] = []
    fake = RecordingSyscalls(held=held)
    apply_credentials(fake, process, warn=warnings.append)  # type: ignore[arg-type]
    # One line per capability, for the first set it is missing from.
    assert warnings == [
        "process.capabilities.permitted: CAP_SYS_RESOURCE cannot be granted (the runtime lacks it)"
    ]
    kept = 1 << CHOWN | 1 << NET_BIND
    assert ("capset", kept, kept, 1 << 24 | 1 << NET_BIND) in fake.calls
    raised = [c[3] for c in fake.calls if c[1:3] == (PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE)]
    assert raised == [NET_BIND]


def test_ambient_without_inheritable_as_runc_spec_writes_it_is_a_warning() -> None:
    names = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    granted = Granted(
        Capabilities({"bounding": names, "effective": names, "permitted": names, "ambient": names})
    )
    assert granted.ambient == []
    assert granted.permitted == capability_mask(names)
    assert granted.warnings == [
        f"process.capabilities.ambient: {name} cannot be granted "
        "(not both permitted and inheritable)"
        for name in names
    ]


def test_inheritable_is_limited_by_the_new_bounding_set() -> None:
    # capset(2) refuses an inheritable capability outside the bounding set (and the
    # caller's inheritable set).
    granted = Granted(
        Capabilities({"bounding": ["CAP_KILL"], "inheritable": ["CAP_KILL", "CAP_CHOWN"]}),
        ALL_CAPABILITIES,
        0,
    )
    assert granted.inheritable == 1 << KILL
    assert granted.warnings == [
        "process.capabilities.inheritable: CAP_CHOWN cannot be granted (not in the bounding set)"
    ]
    held_inh = Granted(Capabilities({"inheritable": ["CAP_CHOWN"]}), ALL_CAPABILITIES, 1)
    assert held_inh.inheritable == 1 << CHOWN
    assert held_inh.warnings == []


def test_default_warning_goes_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    process = make_process(caps={"permitted": ["CAP_KILL"]})
    run(process, RecordingSyscalls(held=0))
    assert capfd.readouterr().err == (
        "corral: warning: process.capabilities.permitted: CAP_KILL cannot be granted "
        "(the runtime lacks it)\n"
    )


def test_only_capabilities_still_in_the_bounding_set_are_dropped() -> None:
    held_bounding = (1 << KILL) | (1 << CHOWN) | (1 << NET_BIND)
    warnings: list[str] = []
    fake = RecordingSyscalls(held_bounding=held_bounding)
    process = make_process(caps={"bounding": ["CAP_KILL", "CAP_SYS_ADMIN"]})
    apply_credentials(fake, process, warn=warnings.append)  # type: ignore[arg-type]
    assert [c for c in fake.calls if c[1:2] == (PR_CAPBSET_DROP,)] == drops(
        set(range(41)) - {CHOWN, NET_BIND}
    )
    assert warnings == [
        "process.capabilities.bounding: CAP_SYS_ADMIN cannot be granted "
        "(the runtime's bounding set lacks it)"
    ]
