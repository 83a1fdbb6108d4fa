"""FreeBSD mounts: plans from tables, in-root destinations on real directories, and the
executor against a recording fake of nmount(2)/unmount(2) and of devfs(8)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from corral.errors import ConfigError, CreateError, UnsupportedError
from corral.freebsd.mounts import (
    DEVFS,
    MNT_ASYNC,
    MNT_FORCE,
    MNT_NOATIME,
    MNT_NOEXEC,
    MNT_NOSUID,
    MNT_NOSYMFOLLOW,
    MNT_RDONLY,
    MNT_SYNCHRONOUS,
    MountStep,
    apply_mounts,
    check_mounts,
    make_destination,
    parse_options,
    plan_mounts,
    unmount_all,
)
from corral.spec.model import Spec, parse_config


def make_spec(mount_list: list[dict[str, Any]], **extra: Any) -> Spec:
    return parse_config(
        {"ociVersion": "1.3.0", "root": {"path": "rootfs"}, "mounts": mount_list, **extra}
    )


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "file.txt").write_text("x")
    return tmp_path


class RecordingSyscalls:
    """Records nmount/unmount; ``fail`` maps (call, target, flags) to an errno."""

    def __init__(self, fail: dict[tuple[str, str, int], int] | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail or {}

    def _maybe_fail(self, call: str, target: str, flags: int) -> None:
        code = self.fail.get((call, target, flags))
        if code is not None:
            raise OSError(code, os.strerror(code), target)

    def nmount(
        self, fstype: str, target: str, options: list[tuple[str, str | None]], flags: int = 0
    ) -> None:
        self.calls.append(("nmount", fstype, target, list(options), flags))
        self._maybe_fail("nmount", target, flags)

    def unmount(self, path: str, flags: int = 0) -> None:
        self.calls.append(("unmount", path, flags))
        self._maybe_fail("unmount", path, flags)


class RecordingRunner:
    def __init__(self, fail_on: str | None = None) -> None:
        self.argvs: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, argv: list[str]) -> None:
        self.argvs.append(argv)
        if self.fail_on is not None and self.fail_on in argv:
            raise CreateError(f"{' '.join(argv)}: devfs: rule: No such file or directory")


# -- options ---------------------------------------------------------------------------

OPTION_TABLE: list[tuple[list[str], str, int, list[tuple[str, str | None]]]] = [
    ([], "tmpfs", 0, []),
    (["ro"], "nullfs", MNT_RDONLY, [("ro", None)]),
    (["ro", "rw"], "nullfs", 0, []),
    (["rw", "ro"], "nullfs", MNT_RDONLY, [("ro", None)]),
    (["nosuid", "noexec"], "procfs", MNT_NOSUID | MNT_NOEXEC, [("nosuid", None), ("noexec", None)]),
    (["noexec", "exec", "suid"], "procfs", 0, []),
    (["noatime"], "tmpfs", MNT_NOATIME, []),
    (["noatime", "strictatime"], "tmpfs", 0, []),
    (["noatime", "atime"], "tmpfs", 0, []),
    (["nosymfollow"], "nullfs", MNT_NOSYMFOLLOW, []),
    (["nosymfollow", "symfollow"], "nullfs", 0, []),
    (["sync"], "tmpfs", MNT_SYNCHRONOUS, []),
    (["sync", "async"], "tmpfs", MNT_ASYNC, []),
    (["async", "sync"], "tmpfs", MNT_SYNCHRONOUS, []),
    (["defaults", "dev", "nodev", "private", "rprivate"], "tmpfs", 0, []),
    (["rbind", "bind", "ro"], "nullfs", MNT_RDONLY, [("ro", None)]),
    (["size=64m", "mode=1777"], "tmpfs", 0, [("size", "64m"), ("mode", "1777")]),
    (["size=65536k", "size=1G"], "tmpfs", 0, [("size", "1G")]),
    (["uid=0", "gid=5", "inodes=100", "maxfilesize=1t", "easize=4k"], "tmpfs", 0,
     [("uid", "0"), ("gid", "5"), ("inodes", "100"), ("maxfilesize", "1t"), ("easize", "4k")]),
    (["nonc", "nomtime"], "tmpfs", 0, [("nonc", None), ("nomtime", None)]),
    (["ruleset=10"], "devfs", 0, [("ruleset", "10")]),
    (["ruleset=0"], "devfs", 0, [("ruleset", "0")]),
    (["linrdlnk", "nodup"], "fdescfs", 0, [("linrdlnk", None), ("nodup", None)]),
    (["ro", "nosuid"], "linprocfs", MNT_RDONLY | MNT_NOSUID, [("ro", None), ("nosuid", None)]),
]  # fmt: skip


@pytest.mark.parametrize(("options", "fstype", "flags", "pairs"), OPTION_TABLE)
def test_options(
    options: list[str], fstype: str, flags: int, pairs: list[tuple[str, str | None]]
) -> None:
    assert parse_options(options, "mounts[0].options", fstype) == (flags, pairs)


def test_flag_values_match_sys_mount_h() -> None:
    # FreeBSD 14 <sys/mount.h>
    assert (MNT_RDONLY, MNT_SYNCHRONOUS, MNT_NOEXEC, MNT_NOSUID) == (0x1, 0x2, 0x4, 0x8)
    assert (MNT_ASYNC, MNT_NOSYMFOLLOW, MNT_NOATIME) == (0x40, 0x400000, 0x10000000)
    assert MNT_FORCE == 0x80000


BAD_OPTIONS: list[tuple[list[str], str, str, str]] = [
    (["ro", "rox"], "nullfs", "[1]", 'unknown mount option "rox" for nullfs'),
    (["size=64m"], "nullfs", "[0]", 'unknown mount option "size=64m" for nullfs'),
    (["size=50%"], "tmpfs", "[0]", '"size=50%": expected a number of bytes'),
    (["size="], "tmpfs", "[0]", '"size" needs a value'),
    (["size"], "tmpfs", "[0]", '"size" needs a value'),
    (["size=k"], "tmpfs", "[0]", "expected a number of bytes"),
    (["size=-1"], "tmpfs", "[0]", "expected a number of bytes"),
    (["mode=999"], "tmpfs", "[0]", "expected an octal mode"),
    (["mode=17777"], "tmpfs", "[0]", "expected an octal mode"),
    (["uid=-1"], "tmpfs", "[0]", "expected a non-negative integer"),
    (["uid=4294967296"], "tmpfs", "[0]", "expected a non-negative integer"),
    (["nonc=1"], "tmpfs", "[0]", '"nonc" takes no value'),
    (["nr_inodes=5"], "tmpfs", "[0]", 'unknown mount option "nr_inodes=5" for tmpfs'),
    (["ruleset=x"], "devfs", "[0]", "expected a devfs ruleset number"),
    (["ruleset=65536"], "devfs", "[0]", "0 to 65535"),
    (["ro", ""], "devfs", "[1]", "empty mount option"),
    (["rro"], "nullfs", "[0]", 'unknown mount option "rro"'),
    (["bind"], "tmpfs", "[0]", 'unknown mount option "bind" for tmpfs'),
    (["hidepid=2"], "procfs", "[0]", 'unknown mount option "hidepid=2" for procfs'),
]


@pytest.mark.parametrize(("options", "fstype", "index", "message"), BAD_OPTIONS)
def test_bad_options(options: list[str], fstype: str, index: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_options(options, "mounts[2].options", fstype)
    assert caught.value.path == "mounts[2].options" + index
    assert message in caught.value.message


@pytest.mark.parametrize("option", ["shared", "rshared", "slave", "rslave", "unbindable"])
def test_propagation_other_than_private_is_unsupported(option: str) -> None:
    with pytest.raises(UnsupportedError) as caught:
        parse_options(["ro", option], "mounts[0].options", "nullfs")
    assert caught.value.path == "mounts[0].options[1]"
    assert "do not propagate" in str(caught.value)


# -- plans -----------------------------------------------------------------------------


def test_plan_nullfs_directory_relative_source_and_targets(bundle: Path) -> None:
    spec = make_spec(
        [{"destination": "/data", "type": "nullfs", "source": "data", "options": ["ro"]}]
    )
    [step] = plan_mounts(spec, "rootfs", str(bundle))
    assert step.fstype == "nullfs"
    assert step.target == f"{bundle}/rootfs/data"
    assert step.rootfs == f"{bundle}/rootfs"
    assert step.options == [("target", f"{bundle}/data"), ("ro", None)]
    assert step.flags == MNT_RDONLY
    assert step.is_file is False


def test_plan_absolute_rootfs_ignores_bundle(bundle: Path) -> None:
    spec = make_spec([{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}])
    [step] = plan_mounts(spec, str(bundle / "rootfs"), "/elsewhere")
    assert step.target == f"{bundle}/rootfs/tmp"


@pytest.mark.parametrize(
    ("kind", "options"),
    [("bind", []), ("bind", ["rbind"]), ("none", ["bind"]), ("", ["rbind", "ro"]), ("nullfs", [])],
)
def test_linux_style_binds_become_nullfs(bundle: Path, kind: str, options: list[str]) -> None:
    spec = make_spec(
        [
            {
                "destination": "/f",
                "type": kind,
                "source": str(bundle / "data/file.txt"),
                "options": options,
            }
        ]
    )
    [step] = plan_mounts(spec, "rootfs", str(bundle))
    assert step.fstype == "nullfs"
    assert step.is_file is True  # a file source: the destination will be a file
    assert step.options[0] == ("target", str(bundle / "data/file.txt"))


def test_plan_devfs_gets_ruleset_4_unless_given(bundle: Path) -> None:
    spec = make_spec(
        [
            {"destination": "/dev", "type": "devfs", "source": "devfs"},
            {"destination": "/jdev", "type": "devfs", "options": ["ruleset=7"]},
        ]
    )
    first, second = plan_mounts(spec, "rootfs", str(bundle))
    assert first.options == [("from", "devfs"), ("ruleset", "4")]
    assert second.options == [("from", "devfs"), ("ruleset", "7")]


@pytest.mark.parametrize(
    ("kind", "source", "expected"),
    [("tmpfs", "", "tmpfs"), ("fdescfs", "fdesc", "fdesc"), ("procfs", "proc", "proc")],
)
def test_plan_from_is_source_or_type(bundle: Path, kind: str, source: str, expected: str) -> None:
    spec = make_spec([{"destination": "/x", "type": kind, "source": source}])
    [step] = plan_mounts(spec, "rootfs", str(bundle))
    assert step.options[0] == ("from", expected)


BAD_MOUNTS: list[tuple[dict[str, Any], str, str]] = [
    ({"destination": "/x", "type": "ext4", "source": "/dev/sda"}, "mounts[0].type",
     'unknown file system type "ext4"'),
    ({"destination": "/proc", "type": "proc", "source": "proc"}, "mounts[0].type",
     "FreeBSD has procfs"),
    ({"destination": "/sys", "type": "sysfs"}, "mounts[0].type", "linsysfs"),
    ({"destination": "/x", "source": "tmpfs"}, "mounts[0].type", "required"),
    ({"destination": "/x", "type": "none", "source": "/tmp"}, "mounts[0].type",
     '"none" needs a "bind"'),
    ({"destination": "/x", "type": "tmpfs", "options": ["bind"]}, "mounts[0].type",
     "cannot be a bind"),
    ({"destination": "/x", "type": "nullfs"}, "mounts[0].source", "needs a source"),
    ({"destination": "/x", "type": "bind", "source": "missing"}, "mounts[0].source",
     "does not exist"),
    ({"destination": "/x", "type": "nullfs", "source": "/dev/null"}, "mounts[0].source",
     "neither a directory nor a file"),
    ({"destination": "/", "type": "tmpfs"}, "mounts[0].destination", "root"),
    ({"destination": "/x", "type": "tmpfs", "options": ["size=1x"]}, "mounts[0].options[0]",
     "expected a number of bytes"),
]  # fmt: skip


@pytest.mark.parametrize(("mount", "path", "message"), BAD_MOUNTS)
def test_bad_mounts(bundle: Path, mount: dict[str, Any], path: str, message: str) -> None:
    spec = make_spec([mount])
    for call in (
        lambda: plan_mounts(spec, "rootfs", str(bundle)),
        lambda: check_mounts(spec, str(bundle)),
    ):
        with pytest.raises(ConfigError) as caught:
            call()
        assert caught.value.path == path
        assert message in caught.value.message


def test_error_names_the_right_entry(bundle: Path) -> None:
    spec = make_spec(
        [
            {"destination": "/dev", "type": "devfs"},
            {"destination": "/tmp", "type": "tmpfs", "options": ["nosuid", "hugepages"]},
        ]
    )
    with pytest.raises(ConfigError) as caught:
        check_mounts(spec, str(bundle))
    assert caught.value.path == "mounts[1].options[1]"


def test_check_mounts_accepts_the_default_freebsd_spec(bundle: Path) -> None:
    from corral.spec.default import default_freebsd_spec

    check_mounts(parse_config(default_freebsd_spec()), str(bundle))


# -- devices ---------------------------------------------------------------------------


def test_devices_go_to_the_last_devfs_on_dev(bundle: Path) -> None:
    spec = make_spec(
        [
            {"destination": "/dev", "type": "devfs", "options": ["ruleset=4"]},
            {"destination": "/dev", "type": "devfs", "options": ["ruleset=5"]},
            {"destination": "/other", "type": "devfs"},
        ],
        freebsd={"devices": [{"path": "pf", "mode": 0o600}, {"path": "usb/0.1.0"}]},
    )
    steps = plan_mounts(spec, "rootfs", str(bundle))
    assert [s.devices for s in steps] == [[], [("pf", 0o600), ("usb/0.1.0", None)], []]


def test_devices_without_devfs_on_dev(bundle: Path) -> None:
    spec = make_spec(
        [{"destination": "/jdev", "type": "devfs"}], freebsd={"devices": [{"path": "pf"}]}
    )
    with pytest.raises(ConfigError) as caught:
        check_mounts(spec, str(bundle))
    assert caught.value.path == "freebsd.devices"


@pytest.mark.parametrize("path", ["bpf*", "tun?", "[a]", "a\\b"])
def test_device_patterns_are_refused(bundle: Path, path: str) -> None:
    spec = make_spec(
        [{"destination": "/dev", "type": "devfs"}],
        freebsd={"devices": [{"path": "pf"}, {"path": path}]},
    )
    with pytest.raises(ConfigError) as caught:
        check_mounts(spec, str(bundle))
    assert caught.value.path == "freebsd.devices[1].path"


# -- destinations inside the rootfs ----------------------------------------------------


def test_make_destination_creates_directories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert make_destination(str(root), "/a/b/c") == f"{root}/a/b/c"
    assert (root / "a/b/c").is_dir()


def test_make_destination_creates_a_file_for_a_file_source(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    target = make_destination(str(root), "/etc/resolv.conf", is_file=True)
    assert target == f"{root}/etc/resolv.conf"
    assert (root / "etc/resolv.conf").is_file()
    assert (root / "etc").is_dir()


def test_absolute_link_is_followed_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    host = tmp_path / "host"
    (root / "usr/lib").mkdir(parents=True)
    host.mkdir()
    os.symlink("/usr/lib", root / "lib")
    os.symlink(str(host), root / "escape")  # would be the host directory outside
    assert make_destination(str(root), "/lib/x") == f"{root}/usr/lib/x"
    target = make_destination(str(root), "/escape/y")
    assert target.startswith(f"{root}/")
    assert not (host / "y").exists()
    assert (root / host.relative_to("/") / "y").is_dir()


def test_dotdot_in_a_link_stops_at_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var").mkdir(parents=True)
    os.symlink("../../../../../../run", root / "var/run")
    assert make_destination(str(root), "/var/run/x") == f"{root}/run/x"
    assert not (tmp_path / "run").exists()


def test_link_to_root_as_last_component(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/", root / "dev")
    assert make_destination(str(root), "/dev") == str(root)
    with pytest.raises(IsADirectoryError):
        make_destination(str(root), "/dev", is_file=True)


def test_link_as_last_component_for_a_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/run/resolv.conf", root / "etc/resolv.conf")
    target = make_destination(str(root), "/etc/resolv.conf", is_file=True)
    assert target == f"{root}/run/resolv.conf"
    assert (root / "run/resolv.conf").is_file()


def test_symlink_loop(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("b", root / "a")
    os.symlink("a", root / "b")
    with pytest.raises(OSError) as caught:
        make_destination(str(root), "/a/x")
    assert caught.value.errno == errno.ELOOP


def test_a_file_on_the_way_is_not_a_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_text("")
    with pytest.raises(NotADirectoryError) as caught:
        make_destination(str(root), "/f/x")
    assert "/f" in str(caught.value)
    with pytest.raises(NotADirectoryError):
        make_destination(str(root), "/f")  # a directory mount onto a file


def test_file_source_onto_existing_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        make_destination(str(root), "/d", is_file=True)


def test_rootfs_given_through_a_link_resolves_to_its_real_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "alias")
    assert make_destination(str(tmp_path / "alias"), "/x") == f"{tmp_path}/real/x"


# -- apply -----------------------------------------------------------------------------


def test_apply_mounts_in_order_on_resolved_targets(bundle: Path) -> None:
    root = bundle / "rootfs"
    (root / "usr/share").mkdir(parents=True)
    os.symlink("usr/share", root / "share")
    spec = make_spec(
        [
            {"destination": "/dev", "type": "devfs"},
            {"destination": "/share/data", "type": "nullfs", "source": "data", "options": ["ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "data/file.txt"},
            {"destination": "/tmp", "type": "tmpfs", "options": ["size=1m"]},
        ]
    )
    sc = RecordingSyscalls()
    done = apply_mounts(sc, plan_mounts(spec, "rootfs", str(bundle)), run=RecordingRunner())
    assert done == [
        f"{root}/dev",
        f"{root}/usr/share/data",
        f"{root}/etc/hosts",
        f"{root}/tmp",
    ]
    assert sc.calls == [
        ("nmount", "devfs", f"{root}/dev", [("from", "devfs"), ("ruleset", "4")], 0),
        ("nmount", "nullfs", f"{root}/usr/share/data",
         [("target", f"{bundle}/data"), ("ro", None)], MNT_RDONLY),
        ("nmount", "nullfs", f"{root}/etc/hosts", [("target", f"{bundle}/data/file.txt")], 0),
        ("nmount", "tmpfs", f"{root}/tmp", [("from", "tmpfs"), ("size", "1m")], 0),
    ]  # fmt: skip
    assert (root / "etc/hosts").is_file()
    assert (root / "usr/share/data").is_dir()


def test_a_failing_mount_undoes_the_earlier_ones(bundle: Path) -> None:
    root = bundle / "rootfs"
    spec = make_spec(
        [
            {"destination": "/a", "type": "tmpfs"},
            {"destination": "/b", "type": "tmpfs"},
            {"destination": "/c", "type": "tmpfs"},
            {"destination": "/d", "type": "tmpfs"},
        ]
    )
    sc = RecordingSyscalls(fail={("nmount", f"{root}/c", 0): errno.EPERM})
    with pytest.raises(CreateError) as caught:
        apply_mounts(sc, plan_mounts(spec, "rootfs", str(bundle)))
    assert str(caught.value).startswith("mounts[2]: tmpfs on /c: ")
    assert "Operation not permitted" in str(caught.value)
    assert [c[0:3] for c in sc.calls] == [
        ("nmount", "tmpfs", f"{root}/a"),
        ("nmount", "tmpfs", f"{root}/b"),
        ("nmount", "tmpfs", f"{root}/c"),
        ("unmount", f"{root}/b", 0),
        ("unmount", f"{root}/a", 0),
    ]


def test_a_failing_destination_undoes_and_names_the_entry(bundle: Path) -> None:
    root = bundle / "rootfs"
    (root / "f").write_text("")
    spec = make_spec(
        [{"destination": "/a", "type": "tmpfs"}, {"destination": "/f/x", "type": "tmpfs"}]
    )
    sc = RecordingSyscalls()
    with pytest.raises(CreateError) as caught:
        apply_mounts(sc, plan_mounts(spec, "rootfs", str(bundle)))
    assert str(caught.value).startswith("mounts[1]: tmpfs on /f/x: /f (on the way to /f/x)")
    assert sc.calls[-1] == ("unmount", f"{root}/a", 0)


def test_devices_are_unhidden_after_the_devfs_mount(bundle: Path) -> None:
    root = bundle / "rootfs"
    spec = make_spec(
        [{"destination": "/dev", "type": "devfs", "options": ["ruleset=4"]}],
        freebsd={
            "devices": [
                {"path": "pf", "mode": 0o700},
                {"path": "usb/0.1.0", "mode": 0o660},
                {"path": "usb/0.2.0"},
            ]
        },
    )
    sc = RecordingSyscalls()
    run = RecordingRunner()
    apply_mounts(sc, plan_mounts(spec, "rootfs", str(bundle)), run=run)
    dev = f"{root}/dev"
    rule = [DEVFS, "-m", dev, "rule", "apply", "path"]
    assert run.argvs == [
        [*rule, "pf", "unhide", "mode", "0700"],
        [*rule, "usb", "unhide"],
        [*rule, "usb/0.1.0", "unhide", "mode", "0660"],
        [*rule, "usb/0.2.0", "unhide"],
    ]
    assert sc.calls == [("nmount", "devfs", dev, [("from", "devfs"), ("ruleset", "4")], 0)]


def test_a_failing_device_rule_unmounts_the_devfs(bundle: Path) -> None:
    root = bundle / "rootfs"
    spec = make_spec(
        [{"destination": "/tmp", "type": "tmpfs"}, {"destination": "/dev", "type": "devfs"}],
        freebsd={"devices": [{"path": "pf"}]},
    )
    sc = RecordingSyscalls()
    with pytest.raises(CreateError) as caught:
        apply_mounts(sc, plan_mounts(spec, "rootfs", str(bundle)), run=RecordingRunner("pf"))
    assert str(caught.value).startswith("mounts[1]: devfs on /dev: /sbin/devfs -m")
    assert sc.calls[-2:] == [("unmount", f"{root}/dev", 0), ("unmount", f"{root}/tmp", 0)]


def test_apply_mounts_defaults_to_run_command(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.freebsd import vnet

    seen: list[list[str]] = []
    monkeypatch.setattr(vnet, "run_command", seen.append)
    spec = make_spec(
        [{"destination": "/dev", "type": "devfs"}], freebsd={"devices": [{"path": "pf"}]}
    )
    apply_mounts(RecordingSyscalls(), plan_mounts(spec, "rootfs", str(bundle)))
    assert seen and seen[0][0] == DEVFS


# -- unmount ---------------------------------------------------------------------------


def test_unmount_all_reverse_and_goes_on(tmp_path: Path) -> None:
    targets = [str(tmp_path / name) for name in ("a", "b", "c", "d", "e")]
    for target in targets:
        os.mkdir(target)
    sc = RecordingSyscalls(
        fail={
            ("unmount", targets[4], 0): errno.EINVAL,  # not mounted any more
            ("unmount", targets[3], 0): errno.EIO,
            ("unmount", targets[2], 0): errno.EBUSY,
            ("unmount", targets[1], 0): errno.ENOENT,
        }
    )
    errors = unmount_all(sc, targets)
    assert sc.calls == [
        ("unmount", targets[4], 0),
        ("unmount", targets[3], 0),
        ("unmount", targets[2], 0),
        ("unmount", targets[2], MNT_FORCE),
        ("unmount", targets[1], 0),
        ("unmount", targets[0], 0),
    ]
    assert errors == [f"{targets[3]}: Input/output error"]  # the fake's OSError names it


def test_unmount_all_names_the_target_when_the_error_does_not(tmp_path: Path) -> None:
    class Failing(RecordingSyscalls):
        def unmount(self, path: str, flags: int = 0) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    assert unmount_all(Failing(), [str(tmp_path)]) == [f"unmount {tmp_path}: Input/output error"]


def test_unmount_all_reports_a_failing_forced_unmount(tmp_path: Path) -> None:
    target = str(tmp_path)
    sc = RecordingSyscalls(
        fail={("unmount", target, 0): errno.EBUSY, ("unmount", target, MNT_FORCE): errno.EPERM}
    )
    [error] = unmount_all(sc, [target])
    assert "Operation not permitted" in error


def test_unmount_all_leaves_a_target_that_now_goes_through_a_link(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/data").mkdir(parents=True)
    (tmp_path / "host/data").mkdir(parents=True)
    kept = str(root / "var/data")
    other = str(root / "tmp")
    os.mkdir(other)
    # The container renamed /var away and put a link to a host directory in its place.
    os.rename(root / "var", root / "var.old")
    os.symlink(tmp_path / "host", root / "var")
    sc = RecordingSyscalls()
    errors = unmount_all(sc, [kept, other])
    assert sc.calls == [("unmount", other, 0)]
    assert len(errors) == 1
    assert kept in errors[0] and "left mounted" in errors[0]


def test_unmount_all_of_nothing() -> None:
    sc = RecordingSyscalls()
    assert unmount_all(sc, []) == []
    assert sc.calls == []


def test_mountstep_repr_names_the_entry() -> None:
    step = MountStep(index=3, fstype="tmpfs", rootfs="/r", destination="/t", options=[], flags=1)
    assert "mounts[3]" in repr(step) and "/r/t" in repr(step)
