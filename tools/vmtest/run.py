#!/usr/bin/env python3
"""``python3 tools/vmtest/run.py [options] -- <pytest args>``: pytest in a cgroup-v2-only VM.

It prepares the artifacts (kernel package, modules, vmlinux, initramfs; each cached and
rebuilt only when its inputs change), writes the guest's ``run.sh`` into a fresh run
directory, boots the VM with the host's ``/usr`` (read-only), the run directory and the
checkout (read-write, at its own absolute path) shared over 9p, prints the guest's pytest
output and exits with pytest's status in the guest. Other exit statuses: 124 the VM timed
out, 125 the guest ended without reporting (a panic), 126 the VM cannot be had on this host
(the reason is printed on stderr; tests skip on it), 89-95 the guest's init failed to set
up (see guest_init.sh). ``--prepare`` only builds the artifacts.

The run directory keeps ``console.log`` (serial console), ``output.log`` (pytest),
``mounts``, ``cgroups``, ``cgroup.controllers``, ``uname`` and ``boot-seconds`` (what the
guest had, and its uptime when the tests started) and ``rc``; it is removed afterwards
unless ``--run-dir`` names it or ``--keep`` is given. The guest mounts it at /mnt/vmtest,
so ``--junitxml=/mnt/vmtest/junit.xml`` brings a report back.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vmtest import initramfs, kernel, qemu

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNAVAILABLE = 126
QEMU = "qemu-system-x86_64"
# Paths the guest makes itself; a checkout there could not be shared at the same path.
GUEST_OWNED = ("/usr", "/proc", "/sys", "/dev", "/.vmtest", "/newroot")
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run.py", description="Run pytest in a cgroup-v2-only qemu VM."
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds (default 300)")
    parser.add_argument("--memory", type=int, default=1024, help="guest MB (default 1024)")
    parser.add_argument("--cpus", type=int, default=2, help="guest CPUs (default 2)")
    parser.add_argument(
        "--accel",
        default=os.environ.get("CORRAL_VMTEST_ACCEL", "tcg"),
        help="qemu accelerator (default tcg; kvm only on a host with real VMX/SVM)",
    )
    parser.add_argument("--python", help="the guest's python (default: the checkout's .venv)")
    parser.add_argument("--share", action="append", default=[], help="share DIR read-only")
    parser.add_argument("--module", action="append", default=[], help="load a module too")
    parser.add_argument("--run-dir", help="keep the run's files here (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary run dir")
    parser.add_argument("--console", action="store_true", help="show the serial console")
    parser.add_argument("--prepare", action="store_true", help="only build the artifacts")
    parser.add_argument("pytest_args", nargs="*", help="after --: pytest's arguments")
    return parser.parse_args(argv)


def guest_python(chosen: str | None) -> str:
    """The python the guest runs pytest with (absolute path, unresolved: venvs are links)."""
    if chosen:
        return os.path.abspath(chosen)
    venv = os.path.join(CHECKOUT, ".venv", "bin", "python")
    return venv if os.path.exists(venv) else "/usr/bin/python3"


def python_prefixes(python: str) -> list[str]:
    """Where ``python``'s interpreter and standard library live on the host."""
    result = subprocess.run(
        [python, "-c", "import sys; print(sys.base_prefix); print(sys.base_exec_prefix)"],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return [os.path.realpath(p) for p in result.stdout.split()] + [
        os.path.dirname(os.path.realpath(python))
    ]


def shares_for(run_dir: str, python: str, extra: list[str]) -> list[qemu.Share]:
    """The 9p shares: /usr, the run dir, the checkout, and whatever else python needs."""
    shares = [
        qemu.Share("/usr", "hostusr", "vmtest_usr=1", read_only=True),
        qemu.Share(run_dir, "vmout", "vmtest_out=1", read_only=False),
        qemu.Share(CHECKOUT, "vmsrc", f"vmtest_src={CHECKOUT}", read_only=False),
    ]
    covered = ["/usr", CHECKOUT]
    wanted = [*initramfs.unmerged_directories(), *python_prefixes(python), *extra]
    for given in wanted:
        path = os.path.realpath(given)
        if any(is_within(path, done) for done in covered):
            continue
        index = len(covered) - 2
        shares.append(qemu.Share(path, f"vmro{index}", f"vmtest_ro={path}", read_only=True))
        covered.append(path)
    return shares


def is_within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def write_run_script(run_dir: str, python: str, pytest_args: list[str]) -> None:
    """The guest's run.sh: pytest from the checkout, with the host's usual PATH."""
    # PYTHONDONTWRITEBYTECODE: the checkout is the host's; the guest only reads its .pyc.
    # -p no:cacheprovider: likewise no .pytest_cache written into it.
    command = [python, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args]
    script = (
        "# Written by tools/vmtest/run.py; run by the guest's init.\n"
        f"cd {shlex.quote(CHECKOUT)} || exit 96\n"
        f"export PATH={GUEST_PATH} HOME=/root TMPDIR=/tmp\n"
        "export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 CORRAL_VMTEST_GUEST=1\n"
        f"exec {shlex.join(command)}\n"
    )
    with open(os.path.join(run_dir, "run.sh"), "w") as file:
        file.write(script)


def check_host() -> str | None:
    """None if this host can run the VM, else why not."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} is missing (apt-get install --no-install-recommends qemu-system-x86)"
    if shutil.which("timeout") is None:
        return "coreutils timeout is missing"
    if any(is_within(CHECKOUT, owned) for owned in GUEST_OWNED):
        return f"the checkout {CHECKOUT} is under a directory the guest owns"
    return None


def main(argv: list[str]) -> int:
    options = parse_arguments(argv)
    reason = check_host()
    try:
        modules = tuple(dict.fromkeys([*kernel.DEFAULT_MODULES, *options.module]))
        if reason is None:
            guest_kernel = kernel.prepare_kernel(modules)
            initrd = initramfs.build_initramfs(guest_kernel)
    except (kernel.Unavailable, FileNotFoundError) as error:
        reason = str(error)
    if reason is not None:
        print(f"vmtest: unavailable: {reason}", file=sys.stderr)
        return UNAVAILABLE
    if options.prepare:
        print(f"vmtest: kernel {guest_kernel.release}: {guest_kernel.image}\n  {initrd}")
        return 0
    python = guest_python(options.python)
    run_dir = options.run_dir or tempfile.mkdtemp(prefix="corral-vmtest-")
    os.makedirs(run_dir, exist_ok=True)
    facts = ("mounts", "cgroups", "cgroup.controllers", "uname", "boot-seconds")
    for stale in ("rc", "output.log", "junit.xml", *facts):
        if os.path.exists(os.path.join(run_dir, stale)):
            os.unlink(os.path.join(run_dir, stale))
    try:
        write_run_script(run_dir, python, options.pytest_args)
        command = qemu.qemu_command(
            guest_kernel.image,
            initrd,
            shares_for(os.path.abspath(run_dir), python, options.share),
            options.memory,
            options.cpus,
            options.accel,
        )
        result = qemu.run_vm(command, options.timeout, run_dir, echo=options.console)
        output = os.path.join(run_dir, "output.log")
        if os.path.exists(output):
            with open(output, errors="replace") as file:
                sys.stdout.write(file.read())
            sys.stdout.flush()
        if result.rc in (qemu.TIMED_OUT, qemu.NO_MARKER) and not options.console:
            tail = "\n".join(result.console.splitlines()[-30:])
            print(f"vmtest: serial console (last lines):\n{tail}", file=sys.stderr)
        what = {qemu.TIMED_OUT: "timed out", qemu.NO_MARKER: "no result marker"}
        print(
            f"vmtest: guest exit status {result.rc} ({what.get(result.rc, 'pytest')}) "
            f"after {result.seconds:.1f} s",
            file=sys.stderr,
        )
        return result.rc
    finally:
        if not options.run_dir and not options.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        elif options.keep:
            print(f"vmtest: run directory {run_dir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
