"""``corral demo``: a container from nothing but the host's static busybox.

As runj's ``demo`` does for FreeBSD, this builds a ready-to-run bundle (a rootfs with
``/bin/busybox`` and a symlink per applet, and the default config) and runs it
attached, so a fresh machine shows a container without fetching an image.
"""

from __future__ import annotations

import os
import sys

from corral.errors import CorralError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.cli.args import Parsed

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
DEMO_SCRIPT = (
    'echo "Hello from a corral container."; '
    'echo "hostname: $(hostname)   pid: $$   uid: $(id -u)"; '
    'echo "processes:"; ps; echo "root filesystem:"; ls /'
)


def find_static_busybox() -> str:
    """The host's busybox, which must be statically linked to run alone in a rootfs."""
    for path in BUSYBOX_CANDIDATES:
        if os.path.isfile(path):
            if not is_static_elf(path):
                raise CorralError(
                    f"{path} is dynamically linked; install busybox-static (apt-get install "
                    "busybox-static)"
                )
            return path
    raise CorralError("no busybox found; install busybox-static (apt-get install busybox-static)")


def is_static_elf(path: str) -> bool:
    """True if the ELF file has no PT_INTERP program header (no dynamic loader)."""
    import struct

    with open(path, "rb") as file:
        header = file.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:  # 64-bit ELF only
            return False
        endian = "<" if header[5] == 1 else ">"
        (phoff,) = struct.unpack_from(endian + "Q", header, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", header, 54)
        file.seek(phoff)
        table = file.read(phentsize * phnum)
    pt_interp = 3
    return all(
        struct.unpack_from(endian + "I", table, i * phentsize)[0] != pt_interp for i in range(phnum)
    )


def build_bundle(bundle: str, args: list[str]) -> None:
    """Make ``bundle/rootfs`` from the static busybox and write ``bundle/config.json``."""
    import subprocess

    from corral.core import jsonio
    from corral.spec.default import default_spec

    busybox = find_static_busybox()
    rootfs = os.path.join(bundle, "rootfs")
    for directory in ("bin", "proc", "sys", "dev", "etc", "tmp", "root"):
        os.makedirs(os.path.join(rootfs, directory), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    target = os.path.join(rootfs, "bin", "busybox")
    with open(busybox, "rb") as source, open(target, "wb") as copy:
        copy.write(source.read())
    os.chmod(target, 0o755)
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = os.path.join(rootfs, "bin", applet)
        if applet != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as file:
        file.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as file:
        file.write("root:x:0:\nnogroup:x:65534:\n")
    spec = default_spec(args)
    with open(os.path.join(bundle, "config.json"), "w") as file:
        file.write(jsonio.dumps(spec, indent=2) + "\n")


def cmd_demo(options: Parsed, parsed: Parsed) -> int:
    import shutil
    import tempfile

    from corral.core.run import run_container
    from corral.core.runtime import Runtime

    args = parsed.args or ["sh", "-c", DEMO_SCRIPT]
    bundle = parsed.text("bundle") or tempfile.mkdtemp(prefix="corral-demo-")
    keep = parsed.flag("keep") or bool(parsed.text("bundle"))
    try:
        build_bundle(bundle, args)
        container_id = f"corral-demo-{os.getpid()}"
        status = run_container(Runtime(options.text("root")), container_id, bundle)
    finally:
        if keep:
            sys.stderr.write(f"corral: demo bundle kept in {bundle}\n")
        else:
            shutil.rmtree(bundle, ignore_errors=True)
    return status
