"""One VM run: the qemu command line, the timeout, and the guest's exit status.

qemu runs under coreutils ``timeout -k`` so that it dies at the deadline even if this
Python is killed first; a KVM boot that fails can leave qemu paused forever
(docs/vm-testing.md), and TCG is the default for that reason. The serial console is
qemu's stdout: it is saved to ``console.log`` in the run directory and searched for the
init's ``VMTEST-RC=<n>`` line. SeaBIOS writes escape sequences and the kernel its own
lines on the same stream, so the marker is matched as a whole line anywhere in it, and the
``rc`` file the init writes on the share is the fallback. Results: the guest's status, 124
on a timeout, 125 when qemu ended without a marker (a guest panic: ``panic=-1`` with
``-no-reboot`` makes qemu exit).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

TIMED_OUT = 124
NO_MARKER = 125
MARKER = "VMTEST-RC="


class Share:
    """A host directory the guest mounts over 9p: ``tag`` and the guest's ``vmtest_`` word."""

    __slots__ = ("path", "read_only", "tag", "word")

    def __init__(self, path: str, tag: str, word: str, read_only: bool) -> None:
        if any(c.isspace() or c == "," for c in path):
            # qemu's option syntax splits at commas and the kernel command line at spaces.
            raise ValueError(f"cannot share {path!r}: no spaces or commas, please")
        self.path = path
        self.tag = tag
        self.word = word
        self.read_only = read_only


class VmResult:
    __slots__ = ("console", "rc", "seconds")

    def __init__(self, rc: int, console: str, seconds: float) -> None:
        self.rc = rc
        self.console = console
        self.seconds = seconds


def qemu_command(
    image: str,
    initramfs: str,
    shares: list[Share],
    memory_mb: int = 1024,
    cpus: int = 2,
    accel: str = "tcg",
) -> list[str]:
    """The qemu-system-x86_64 command line (without the timeout)."""
    words = [
        "console=ttyS0",
        "cgroup_no_v1=all",  # no v1 hierarchy at all: what a v2-only host looks like
        "quiet",
        "panic=-1",  # a panic reboots, which -no-reboot turns into qemu exiting
        *(share.word for share in shares),
    ]
    command = [
        "qemu-system-x86_64",
        "-accel",
        accel,
        "-cpu",
        "max" if accel == "tcg" else "host",
        "-m",
        str(memory_mb),
        "-smp",
        str(cpus),
        "-kernel",
        image,
        "-initrd",
        initramfs,
        "-append",
        " ".join(words),
        "-nographic",
        "-no-reboot",
        "-nodefaults",
        "-no-user-config",
        "-serial",
        "stdio",
        "-nic",
        "none",
    ]
    for share in shares:
        # multidevs=remap: a shared tree spanning several host filesystems keeps
        # distinct inode numbers in the guest.
        options = f"local,path={share.path},mount_tag={share.tag},security_model=none"
        options += ",multidevs=remap" + (",readonly=on" if share.read_only else "")
        command += ["-virtfs", options]
    return command


def run_vm(command: list[str], timeout: float, run_dir: str, echo: bool = False) -> VmResult:
    """Run ``command`` under ``timeout``; the guest's status, or 124/125 (module docstring)."""
    started = time.monotonic()
    console_path = os.path.join(run_dir, "console.log")
    with open(console_path, "wb") as console:
        process = subprocess.Popen(
            ["timeout", "-k", "5", str(int(timeout)), *command],
            stdin=subprocess.DEVNULL,  # else qemu takes over the terminal and its monitor
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdout is not None
        for line in process.stdout:
            console.write(line)
            if echo:
                sys.stderr.buffer.write(line)
                sys.stderr.flush()
        status = process.wait()
    seconds = time.monotonic() - started
    with open(console_path, "rb") as file:
        text = file.read().decode(errors="replace")
    if status in (TIMED_OUT, 128 + 9):  # 137: the -k SIGKILL
        return VmResult(TIMED_OUT, text, seconds)
    return VmResult(guest_status(text, run_dir), text, seconds)


def guest_status(console: str, run_dir: str) -> int:
    """The status the init reported: the marker line, else the rc file, else 125."""
    for line in reversed(console.splitlines()):
        start = line.find(MARKER)
        if start >= 0:
            digits = line[start + len(MARKER) :].strip()
            if digits.isdigit():
                return int(digits)
    try:
        with open(os.path.join(run_dir, "rc")) as file:
            return int(file.read().strip())
    except (OSError, ValueError):
        return NO_MARKER
