"""What a container sees, checked from inside it with busybox.

Each test runs ``corral run`` on a small ``sh -c`` script and compares its output with
what the config asked for, or with the host's view (namespace inodes, the hostname, the
host files a mount must not touch). Expected values are written out here (capability
bit numbers from <linux/capability.h>, device numbers from devices.txt) rather than
taken from corral, so a wrong table in corral fails these tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid

import pytest

from conftest import corral_command, create_detached, requires_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from conftest import Corral

    MakeBundle = Callable[..., Path]
    RunInside = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = requires_root

CAP_KILL, CAP_NET_BIND_SERVICE, CAP_AUDIT_WRITE = 5, 10, 29
DEFAULT_CAPS = (1 << CAP_KILL) | (1 << CAP_NET_BIND_SERVICE) | (1 << CAP_AUDIT_WRITE)


def status_fields(text: str) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict of field -> value (whitespace-trimmed)."""
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def add_mount(
    destination: str, source: str, options: list[str], type: str = "bind"
) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        spec["mounts"].append(
            {"destination": destination, "type": type, "source": source, "options": options}
        )

    return edit


# -- namespaces ---------------------------------------------------------------------------


def test_the_program_is_pid_1(run_inside: RunInside) -> None:
    assert run_inside("echo $$").stdout == "1\n"


def test_proc_lists_only_the_containers_processes(run_inside: RunInside) -> None:
    # sh (pid 1) and the ls reading /proc, nothing of the host.
    listed = run_inside("ls /proc; true").stdout.split()
    assert [name for name in listed if name.isdigit()] == ["1", "2"]


def test_hostname_and_domainname_are_the_configs(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["hostname"] = "box-1"
        spec["domainname"] = "example.test"

    host_name = socket.gethostname()
    out = run_inside(
        "hostname; cat /proc/sys/kernel/hostname /proc/sys/kernel/domainname", edit=edit
    ).stdout
    assert out.splitlines() == ["box-1", "box-1", "example.test"]
    assert socket.gethostname() == host_name


def test_a_new_network_namespace_has_only_loopback(run_inside: RunInside) -> None:
    out = run_inside("ls /sys/class/net; echo --; tail -n +3 /proc/net/dev").stdout
    listed, _, dev = out.partition("--\n")
    assert listed.split() == ["lo"]
    assert [line.split(":")[0].strip() for line in dev.splitlines()] == ["lo"]


@pytest.mark.parametrize("kind", ["ipc", "uts", "mnt", "cgroup", "net", "pid"])
def test_each_configured_namespace_is_new(run_inside: RunInside, kind: str) -> None:
    inside = run_inside(f"readlink /proc/self/ns/{kind}").stdout.strip()
    assert inside.startswith(f"{kind}:[")
    assert inside != os.readlink(f"/proc/self/ns/{kind}")


def test_a_namespace_left_out_is_the_hosts(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["namespaces"] = [
            ns for ns in spec["linux"]["namespaces"] if ns["type"] != "ipc"
        ]

    inside = run_inside("readlink /proc/self/ns/ipc", edit=edit).stdout.strip()
    assert inside == os.readlink("/proc/self/ns/ipc")


def test_joining_another_containers_network_namespace_by_path(
    corral: Corral, make_bundle: MakeBundle, run_inside: RunInside, container_id: str
) -> None:
    create_detached(corral, make_bundle(["sleep", "30"]), container_id)
    first_pid = corral.state(container_id)["pid"]
    first_net = os.readlink(f"/proc/{first_pid}/ns/net")
    assert first_net != os.readlink("/proc/self/ns/net")

    def edit(spec: dict[str, Any]) -> None:
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = f"/proc/{first_pid}/ns/net"

    assert run_inside("readlink /proc/self/ns/net", edit=edit).stdout.strip() == first_net


# -- the root filesystem and mounts -------------------------------------------------------


def test_a_readonly_root_refuses_writes(run_inside: RunInside) -> None:
    result = run_inside("touch /x", check=False)
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr


def test_a_writable_root_takes_writes(run_inside: RunInside, busybox_rootfs: Path) -> None:
    name = f"probe-{uuid.uuid4().hex[:8]}"

    def edit(spec: dict[str, Any]) -> None:
        spec["root"]["readonly"] = False

    try:
        run_inside(f"echo written > /{name}", edit=edit)
        assert (busybox_rootfs / name).read_text() == "written\n"
    finally:
        (busybox_rootfs / name).unlink(missing_ok=True)


def test_a_tmpfs_mount_gets_its_options(run_inside: RunInside) -> None:
    edit = add_mount("/tmp", "tmpfs", ["nosuid", "nodev", "size=1m", "mode=700"], type="tmpfs")
    out = run_inside("grep ' /tmp ' /proc/mounts; stat -c %a /tmp", edit=edit).stdout
    line, mode = out.splitlines()
    source, target, fstype, options = line.split()[:4]
    assert (source, target, fstype) == ("tmpfs", "/tmp", "tmpfs")
    assert {"nosuid", "nodev", "size=1024k", "mode=700"} <= set(options.split(","))
    assert mode == "700"


def test_a_readonly_bind_mount_refuses_writes(run_inside: RunInside, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "file").write_text("from the host\n")
    result = run_inside(
        "cat /root/file; touch /root/new",
        edit=add_mount("/root", str(host), ["bind", "ro"]),
        check=False,
    )
    assert result.stdout == "from the host\n"
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr
    assert sorted(os.listdir(host)) == ["file"]


def test_a_writable_bind_mount_shows_writes_on_the_host(
    run_inside: RunInside, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    run_inside("echo hi > /tmp/new", edit=add_mount("/tmp", str(host), ["rbind", "rw"]))
    assert (host / "new").read_text() == "hi\n"


def test_a_file_bind_mount_over_a_file(run_inside: RunInside, tmp_path: Path) -> None:
    host_file = tmp_path / "group"
    host_file.write_text("from-the-host:x:4242:\n")
    edit = add_mount("/etc/group", str(host_file), ["bind", "ro"])
    assert run_inside("cat /etc/group", edit=edit).stdout == "from-the-host:x:4242:\n"


def test_a_relative_bind_source_is_the_bundles(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    bundle = make_bundle(["cat", "/root/file"], edit=add_mount("/root", "data", ["bind"]))
    (bundle / "data").mkdir()
    (bundle / "data" / "file").write_text("bundle data\n")
    out = corral("run", "--bundle", str(bundle), container_id, stdin=subprocess.DEVNULL).stdout
    assert out == "bundle data\n"


MOUNTINFO_ROOT = "grep ' /root ' /proc/self/mountinfo"


@pytest.mark.parametrize("option", ["private", "rprivate", "slave", "rslave"])
def test_propagation_options_are_accepted(
    run_inside: RunInside, tmp_path: Path, option: str
) -> None:
    edit = add_mount("/root", str(tmp_path), ["rbind", option])
    line = run_inside(MOUNTINFO_ROOT, edit=edit).stdout
    # The host's mounts are private here, so a slave of a private mount has no master.
    assert str(tmp_path) in line
    assert "shared:" not in line and "unbindable" not in line


@pytest.mark.parametrize("option", ["unbindable", "runbindable"])
def test_unbindable_propagation_is_applied(
    run_inside: RunInside, tmp_path: Path, option: str
) -> None:
    edit = add_mount("/root", str(tmp_path), ["rbind", option])
    line = run_inside(MOUNTINFO_ROOT, edit=edit).stdout
    assert " unbindable " in line


@pytest.mark.parametrize("option", ["shared", "rshared"])
def test_shared_propagation_survives_pivot_root(
    run_inside: RunInside, tmp_path: Path, option: str
) -> None:
    edit = add_mount("/root", str(tmp_path), ["rbind", option])
    assert " shared:" in run_inside(MOUNTINFO_ROOT, edit=edit).stdout


@pytest.mark.parametrize("option", ["shared", "rshared"])
def test_shared_propagation_is_applied_with_no_pivot(
    run_inside: RunInside, tmp_path: Path, option: str
) -> None:
    edit = add_mount("/root", str(tmp_path), ["rbind", option])
    line = run_inside(MOUNTINFO_ROOT, edit=edit, flags=("--no-pivot",)).stdout
    assert " shared:" in line


@pytest.mark.parametrize("path", ["/proc/kcore", "/proc/keys", "/proc/timer_list"])
def test_masked_files_read_empty(run_inside: RunInside, path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist on this kernel")
    out = run_inside(f"wc -c < {path}; stat -c %t,%T {path}").stdout.split()
    assert out == ["0", "1,3"]  # /dev/null bound over it


def test_masked_directories_are_empty(run_inside: RunInside) -> None:
    if not os.listdir("/sys/firmware"):
        pytest.skip("/sys/firmware is empty on the host too")
    assert run_inside("ls -A /sys/firmware").stdout == ""


def test_readonly_paths_refuse_writes(run_inside: RunInside) -> None:
    result = run_inside(
        "echo changed > /proc/sys/kernel/hostname; cat /proc/sys/kernel/hostname", check=False
    )
    assert "Read-only file system" in result.stderr
    assert result.stdout == "corral\n"


def test_the_default_devices_exist(run_inside: RunInside) -> None:
    names = ["null", "zero", "full", "random", "urandom", "tty"]
    script = "stat -c '%n %F %t,%T' " + " ".join(f"/dev/{n}" for n in names)
    script += "; for link in fd stdin stdout stderr; do readlink /dev/$link; done"
    out = run_inside(script).stdout.splitlines()
    numbers = {"null": "1,3", "zero": "1,5", "full": "1,7", "random": "1,8"}
    numbers |= {"urandom": "1,9", "tty": "5,0"}
    assert out[:6] == [f"/dev/{n} character special file {numbers[n]}" for n in names]
    assert out[6:] == ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2"]


def test_devices_work(run_inside: RunInside) -> None:
    script = "head -c 4 /dev/zero | od -An -tx1; echo x > /dev/null && echo null-ok"
    out = run_inside(script).stdout.split()
    assert out == ["00", "00", "00", "00", "null-ok"]


def test_no_pivot_still_confines_the_program_to_the_rootfs(
    run_inside: RunInside, busybox_rootfs: Path
) -> None:
    out = run_inside("echo $$; ls /", flags=("--no-pivot",)).stdout.split()
    assert out == ["1", *sorted(os.listdir(busybox_rootfs))]


def own_bundle(tmp_path: Path, script: str) -> tuple[Path, dict[str, Any]]:
    """A bundle with its own rootfs copy (the session's is shared), and its config."""
    import json

    from corral.cli.demo import build_bundle

    bundle = tmp_path / "own"
    build_bundle(str(bundle), ["sh", "-c", script])
    spec: dict[str, Any] = json.loads((bundle / "config.json").read_text())
    return bundle, spec


def write_config(bundle: Path, spec: dict[str, Any]) -> None:
    import json

    (bundle / "config.json").write_text(json.dumps(spec))


def tmpfs_on(*destinations: str) -> list[dict[str, Any]]:
    return [{"destination": d, "type": "tmpfs", "source": "tmpfs"} for d in destinations]


def test_symlinks_in_the_rootfs_do_not_lead_mounts_out_of_it(
    corral: Corral, tmp_path: Path, container_id: str
) -> None:
    # Each link names a directory that exists both on the host and in the rootfs: followed
    # on the host, making the mount point below it would create a directory there.
    outside = tmp_path / "outside"
    outside.mkdir()
    probe = f"corral-probe-{uuid.uuid4().hex[:8]}"
    script = f"touch /abs/a/x /rel/b/x /hostetc/{probe}/c/x && echo ok"
    bundle, spec = own_bundle(tmp_path, script)
    rootfs = bundle / "rootfs"
    inside_outside = rootfs / str(outside).lstrip("/")
    inside_outside.mkdir(parents=True)
    (rootfs / "abs").symlink_to(outside)
    (rootfs / "rel").symlink_to("../" * 20 + str(outside).lstrip("/"))
    (rootfs / "hostetc").symlink_to("/etc")
    spec["mounts"] += tmpfs_on("/abs/a", "/rel/b", f"/hostetc/{probe}/c")
    write_config(bundle, spec)
    try:
        out = corral("run", "--bundle", str(bundle), container_id, stdin=subprocess.DEVNULL)
        assert out.stdout == "ok\n"
        assert os.listdir(outside) == []
        assert not os.path.lexists(f"/etc/{probe}")
        # The mount points were made inside the rootfs instead.
        assert sorted(os.listdir(inside_outside)) == ["a", "b"]
        assert (rootfs / "etc" / probe / "c").is_dir()
    finally:
        if os.path.isdir(f"/etc/{probe}"):
            subprocess.run(["rm", "-rf", f"/etc/{probe}"], check=False)


def test_a_symlink_to_a_host_only_directory_creates_nothing_on_the_host(
    corral: Corral, tmp_path: Path, container_id: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    bundle, spec = own_bundle(tmp_path, "touch /abs/a/x && echo ok")
    (bundle / "rootfs" / "abs").symlink_to(outside)  # dangling inside the rootfs
    spec["mounts"] += tmpfs_on("/abs/a")
    write_config(bundle, spec)
    result = corral(
        "run", "--bundle", str(bundle), container_id, stdin=subprocess.DEVNULL, check=False
    )
    assert os.listdir(outside) == []
    # Made inside the rootfs, or refused with one clear line: never made on the host.
    if result.returncode == 0:
        assert result.stdout == "ok\n"
    else:
        assert result.stderr.startswith("corral: mounts[6]")
        assert result.stderr.count("\n") == 1


# -- the process --------------------------------------------------------------------------


def test_user_groups_and_umask(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [10, 20]}
        spec["process"]["user"]["umask"] = 0o027

    out = run_inside("id; umask; grep -E '^(Uid|Gid|Groups):' /proc/self/status", edit=edit)
    lines = out.stdout.splitlines()
    assert lines[0] == "uid=1000 gid=1001 groups=10,20"
    assert lines[1] == "0027"
    fields = status_fields("\n".join(lines[2:]))
    assert fields["Uid"].split() == ["1000"] * 4
    assert fields["Gid"].split() == ["1001"] * 4
    assert fields["Groups"].split() == ["10", "20"]


def test_cwd(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["cwd"] = "/etc"

    assert run_inside("pwd", edit=edit).stdout == "/etc\n"


def test_missing_cwd_is_created_like_runc(run_inside: RunInside) -> None:
    import uuid

    cwd = f"/work-{uuid.uuid4().hex[:8]}/deep"

    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["cwd"] = cwd

    assert run_inside("pwd", edit=edit).stdout == cwd + "\n"


def test_env_is_exactly_the_configs(
    corral: Corral, make_bundle: MakeBundle, container_id: str
) -> None:
    env = ["PATH=/bin", "GREETING=hello world", "EMPTY="]

    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["env"] = env

    bundle = make_bundle(["env"], edit=edit)
    result = corral(
        "run",
        "--bundle",
        str(bundle),
        container_id,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "CORRAL_TEST_HOST_ONLY": "leaked"},
    )
    # HOME is added from the rootfs's /etc/passwd when the config has none, as runc does.
    assert sorted(result.stdout.splitlines()) == sorted([*env, "HOME=/root"])


def test_rlimits(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["rlimits"] = [
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 768},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        ]

    assert run_inside("ulimit -n; ulimit -Hn; ulimit -c", edit=edit).stdout.split() == [
        "512",
        "768",
        "0",
    ]


def test_capabilities_of_root_are_the_configured_sets(run_inside: RunInside) -> None:
    fields = status_fields(run_inside("grep -E '^(Cap|NoNewPrivs)' /proc/self/status").stdout)
    for name in ("CapEff", "CapPrm", "CapBnd"):
        assert int(fields[name], 16) == DEFAULT_CAPS, name
    assert int(fields["CapInh"], 16) == 0
    assert int(fields["CapAmb"], 16) == 0
    assert fields["NoNewPrivs"] == "1"


def test_ambient_capabilities_reach_a_non_root_program(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["user"] = {"uid": 1000, "gid": 1000}
        kinds = ("bounding", "effective", "permitted", "inheritable", "ambient")
        spec["process"]["capabilities"] = {k: ["CAP_NET_BIND_SERVICE"] for k in kinds}

    fields = status_fields(run_inside("grep ^Cap /proc/self/status", edit=edit).stdout)
    bit = 1 << CAP_NET_BIND_SERVICE
    for name in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
        assert int(fields[name], 16) == bit, name


def test_no_new_privileges_false(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["noNewPrivileges"] = False

    assert run_inside("grep ^NoNewPrivs /proc/self/status", edit=edit).stdout.split() == [
        "NoNewPrivs:",
        "0",
    ]


def test_oom_score_adj(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["process"]["oomScoreAdj"] = 500

    assert run_inside("cat /proc/self/oom_score_adj", edit=edit).stdout == "500\n"


def test_sysctl_in_a_new_network_namespace(run_inside: RunInside) -> None:
    with open("/proc/sys/net/ipv4/ip_forward") as file:
        host_before = file.read()

    def edit(spec: dict[str, Any]) -> None:
        spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "0" if host_before == "1\n" else "1"}

    inside = run_inside("cat /proc/sys/net/ipv4/ip_forward", edit=edit).stdout
    assert inside == ("0\n" if host_before == "1\n" else "1\n")
    with open("/proc/sys/net/ipv4/ip_forward") as file:
        assert file.read() == host_before


def test_the_program_replaces_the_runtime(run_inside: RunInside) -> None:
    # Once started, pid 1 is busybox: nothing of the runtime's python stays reachable.
    script = "readlink /proc/1/exe; read -r comm < /proc/1/comm; echo $comm"
    assert run_inside(script).stdout == "/bin/busybox\nsh\n"


# -- file descriptors ---------------------------------------------------------------------


def run_with_fd3(
    corral: Corral, bundle: Path, container_id: str, path: Path, *flags: str
) -> subprocess.CompletedProcess[str]:
    """``corral run`` with ``path`` open on fd 3, as a shell's ``3<path`` does."""
    command = [*corral_command(), "--root", corral.root, "run", *flags, "--bundle", str(bundle)]
    return subprocess.run(
        ["sh", "-c", 'exec "$@" 3<"$FD3_PATH"', "sh", *command, container_id],
        env={**os.environ, "FD3_PATH": str(path)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_no_host_fd_leaks_into_the_container(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host only\n")
    # fd 3 is open in corral; without --preserve-fds the container must not get it. ls
    # opens /proc/self/fd itself, on the lowest free number: 3 if nothing leaked.
    bundle = make_bundle(["sh", "-c", "ls /proc/self/fd; cat <&3"])
    result = run_with_fd3(corral, bundle, container_id, secret)
    assert result.stdout.split() == ["0", "1", "2", "3"]
    assert result.returncode != 0  # cat <&3: bad file descriptor
    assert "host only" not in result.stdout


def test_preserve_fds_passes_fd_3(
    corral: Corral, make_bundle: MakeBundle, container_id: str, tmp_path: Path
) -> None:
    passed = tmp_path / "passed"
    passed.write_text("through fd 3\n")
    bundle = make_bundle(["sh", "-c", "cat <&3; ls /proc/self/fd"])
    result = run_with_fd3(corral, bundle, container_id, passed, "--preserve-fds", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["through", "fd", "3", "0", "1", "2", "3", "4"]
