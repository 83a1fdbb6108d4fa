"""The guest's boot image: busybox, the init script and the kernel modules, as newc cpio.

Layout (see guest_init.sh for what the init does with it):

- ``/.vmtest/bin``: the host's static busybox and one link per applet, apart from ``/bin``
  so that mounting the host's ``/usr`` hides none of the init's tools;
- ``/.vmtest/modules``: the ``.ko`` files and ``order`` (insmod order);
- ``/init``: guest_init.sh;
- ``/bin``, ``/sbin``, ``/lib``, ``/lib64``...: the same links into ``usr/`` as the host
  has (Debian 12 is usrmerged), so the host's dynamically linked programs, python among
  them, find their loader and libraries once ``/usr`` is mounted;
- ``/dev/console``: the kernel opens it for init's stdio before init can mount devtmpfs;
- ``/etc/passwd`` and ``/etc/group`` with root and nobody only.

The archive is left uncompressed: under TCG the guest would spend longer inflating it than
qemu spends loading the few MB.
"""

from __future__ import annotations

import os
import subprocess

from vmtest import cache
from vmtest.cpio import CpioWriter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vmtest.kernel import Kernel

BUSYBOX_CANDIDATES = ("/usr/bin/busybox", "/bin/busybox")
# Top-level names a usrmerged host makes links into /usr.
MERGED_NAMES = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def find_busybox() -> str:
    for path in BUSYBOX_CANDIDATES:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError("busybox is missing (apt-get install busybox-static)")


def host_root_links() -> dict[str, str]:
    """The host's top-level links into /usr (``bin`` → ``usr/bin`` ...)."""
    links: dict[str, str] = {}
    for name in MERGED_NAMES:
        path = "/" + name
        if os.path.islink(path):
            links[name] = os.readlink(path)
    return links


def unmerged_directories() -> list[str]:
    """Top-level directories the host keeps outside /usr: they must be shared as well."""
    return [
        "/" + name
        for name in MERGED_NAMES
        if os.path.isdir("/" + name) and not os.path.islink("/" + name)
    ]


def build_initramfs(kernel: Kernel) -> str:
    """The initramfs for ``kernel`` in its cache directory, rebuilt if an input changed."""
    busybox = find_busybox()
    target = os.path.join(kernel.directory, "initramfs.cpio")
    inputs = {
        "kernel": kernel.release,
        "modules": kernel.modules,
        "module_digests": [
            cache.file_digest(os.path.join(kernel.directory, "modules", name + ".ko"))
            for name in kernel.modules
        ],
        "busybox": cache.file_digest(busybox),
        "links": host_root_links(),
        "code": cache.source_digest("initramfs.py", "cpio.py", "guest_init.sh"),
    }
    if cache.is_current(target, inputs):
        return target
    archive = CpioWriter()
    for directory in ("dev", "proc", "sys", "tmp", "run", "mnt", "usr", "newroot", "etc"):
        archive.directory(directory)
    archive.directory("root", 0o700)
    archive.char_device("dev/console", 5, 1)
    archive.char_device("dev/null", 1, 3, 0o666)
    for name, link in sorted(host_root_links().items()):
        archive.symlink(name, link)
    for name in unmerged_directories():
        archive.directory(name)
    archive.file("etc/passwd", PASSWD.encode())
    archive.file("etc/group", GROUP.encode())
    archive.directory(".vmtest", 0o700)
    archive.directory(".vmtest/bin")
    with open(busybox, "rb") as file:
        archive.file(".vmtest/bin/busybox", file.read(), 0o755)
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in sorted(set(applets) - {"busybox"}):
        archive.symlink(f".vmtest/bin/{applet}", "busybox")
    archive.directory(".vmtest/modules")
    for name in kernel.modules:
        with open(os.path.join(kernel.directory, "modules", name + ".ko"), "rb") as file:
            archive.file(f".vmtest/modules/{name}.ko", file.read())
    archive.file(".vmtest/modules/order", "".join(n + "\n" for n in kernel.modules).encode())
    with open(os.path.join(cache.HERE, "guest_init.sh"), "rb") as file:
        archive.file("init", file.read(), 0o755)
    cache.write_atomically(target, archive.getvalue())
    cache.record_inputs(target, inputs)
    return target
