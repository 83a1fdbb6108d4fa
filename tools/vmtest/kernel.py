"""Debian's stock kernel for the VM: fetched with apt, unpacked without installing it.

``linux-image-amd64`` is a metapackage; ``apt-cache depends`` names the real package
(``linux-image-<abi>-amd64``, whose ABI number changes with security updates) and
``apt-cache show`` its version, pool file name and sha256. ``apt-get download`` fetches the
.deb into the cache (or it is taken from apt's own archive cache) and ``dpkg-deb -x``
unpacks it into a temporary directory: no maintainer script runs, so the host's /boot and
/lib/modules are untouched. From it we keep the bzImage, the ELF vmlinux extracted from it
(PVH boot, see ``vmlinux``) and the few modules the guest loads; the 400 MB tree is
removed. ``$CORRAL_VMTEST_KERNEL_DEB`` names a .deb to use instead (an offline machine).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from vmtest import cache, modinfo, vmlinux

METAPACKAGE = "linux-image-amd64"
# virtio_pci carries the 9p transport; 9p is the filesystem of every share. fuse gives
# /dev/fuse (10:229), the node the device-cgroup tests open (any process may, so only the
# cgroup's eBPF program decides). The rest of what corral's tests touch (cgroups,
# namespaces, seccomp, devtmpfs, tmpfs) is built in.
DEFAULT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "fuse")


class Unavailable(Exception):
    """The kernel cannot be had here (no apt, no network, no package); the message says why."""


class KernelPackage:
    """The .deb that ``linux-image-amd64`` resolves to."""

    __slots__ = ("filename", "name", "sha256", "version")

    def __init__(self, name: str, version: str, filename: str, sha256: str) -> None:
        self.name = name
        self.version = version
        self.filename = filename
        self.sha256 = sha256


class Kernel:
    """The unpacked pieces: the kernel image to boot and the modules in load order."""

    __slots__ = ("directory", "image", "modules", "release")

    def __init__(self, directory: str, image: str, release: str, modules: list[str]) -> None:
        self.directory = directory
        self.image = image  # vmlinux (PVH) when the bzImage allowed it, else the bzImage
        self.release = release
        self.modules = modules  # names; the files are directory/modules/<name>.ko


def resolve_package() -> KernelPackage:
    """Ask apt which package and version ``linux-image-amd64`` stands for."""
    depends = _apt("apt-cache", "depends", METAPACKAGE)
    names = [
        line.split(":", 1)[1].strip()
        for line in depends.splitlines()
        if line.strip().startswith("Depends:") and "linux-image-" in line
    ]
    if not names:
        raise Unavailable(f"apt-cache depends {METAPACKAGE} names no linux-image package")
    fields: dict[str, str] = {}
    for line in _apt("apt-cache", "show", "--no-all-versions", names[0]).splitlines():
        key, sep, value = line.partition(": ")
        if sep and not line.startswith(" "):
            fields.setdefault(key, value.strip())
    try:
        return KernelPackage(
            names[0], fields["Version"], os.path.basename(fields["Filename"]), fields["SHA256"]
        )
    except KeyError as missing:
        raise Unavailable(f"apt-cache show {names[0]} has no {missing} field") from None


def fetch_deb(directory: str) -> str:
    """The kernel .deb's path in ``directory`` (downloaded only if not already there)."""
    given = os.environ.get("CORRAL_VMTEST_KERNEL_DEB")
    if given:
        if not os.path.isfile(given):
            raise Unavailable(f"CORRAL_VMTEST_KERNEL_DEB={given} does not exist")
        return given
    try:
        package = resolve_package()
    except Unavailable:
        cached = sorted(n for n in os.listdir(directory) if n.startswith("linux-image-"))
        debs = [n for n in cached if n.endswith(".deb")]
        if debs:  # offline or apt broken: the newest kernel fetched before will do
            return os.path.join(directory, debs[-1])
        raise
    target = os.path.join(directory, package.filename)
    if os.path.exists(target) and cache.file_digest(target) == package.sha256:
        return target
    archived = os.path.join("/var/cache/apt/archives", package.filename)
    if os.path.exists(archived) and cache.file_digest(archived) == package.sha256:
        shutil.copyfile(archived, target)
        return target
    # apt-get download writes into the current directory. As root it warns that the _apt
    # user cannot write there and downloads unsandboxed; that is harmless.
    _apt("apt-get", "download", "-q", f"{package.name}={package.version}", cwd=directory)
    if not os.path.exists(target) or cache.file_digest(target) != package.sha256:
        raise Unavailable(f"apt-get download {package.name} gave no file matching its sha256")
    return target


def prepare_kernel(modules: tuple[str, ...] = DEFAULT_MODULES) -> Kernel:
    """Fetch and unpack the kernel (once per package version and module list)."""
    if shutil.which("dpkg-deb") is None:
        raise Unavailable("dpkg-deb is missing (not a Debian host)")
    root = cache.cache_dir()
    deb = fetch_deb(root)
    stem = os.path.basename(deb).removesuffix(".deb")
    directory = os.path.join(root, stem)
    stamp = os.path.join(directory, "kernel")
    inputs = {
        "deb": os.path.basename(deb),
        "deb_size": os.path.getsize(deb),
        "modules": list(modules),
        "code": cache.source_digest("kernel.py", "modinfo.py", "vmlinux.py"),
    }
    if not cache.is_current(stamp, inputs):
        _unpack(deb, directory, modules)
        cache.record_inputs(stamp, inputs)
    with open(stamp) as file:
        image, release = file.read().split()
    with open(os.path.join(directory, "modules", "order")) as file:
        order = file.read().split()
    return Kernel(directory, os.path.join(directory, image), release, order)


def _unpack(deb: str, directory: str, modules: tuple[str, ...]) -> None:
    os.makedirs(os.path.join(directory, "modules"), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vmtest-deb-", dir=directory) as tree:
        subprocess.run(["dpkg-deb", "-x", deb, tree], check=True)
        boot = os.path.join(tree, "boot")
        bzimages = [name for name in os.listdir(boot) if name.startswith("vmlinuz-")]
        if len(bzimages) != 1:
            raise Unavailable(f"{deb} holds {len(bzimages)} vmlinuz files, not one")
        release = bzimages[0].removeprefix("vmlinuz-")
        shutil.copyfile(os.path.join(boot, bzimages[0]), os.path.join(directory, "bzImage"))
        image = "bzImage"
        with open(os.path.join(directory, "bzImage"), "rb") as file:
            bzimage = file.read()
        try:
            elf = vmlinux.extract_vmlinux(bzimage)
        except ValueError:
            elf = b""
        if elf and vmlinux.has_pvh_entry(elf):
            cache.write_atomically(os.path.join(directory, "vmlinux"), elf)
            image = "vmlinux"
        available = modinfo.index_modules(os.path.join(tree, "lib", "modules", release))
        order = modinfo.load_order(modules, available)
        for name in order:
            shutil.copyfile(available[name], os.path.join(directory, "modules", name + ".ko"))
        cache.write_atomically(
            os.path.join(directory, "modules", "order"), "".join(n + "\n" for n in order).encode()
        )
    cache.write_atomically(os.path.join(directory, "kernel"), f"{image} {release}\n".encode())


def _apt(*command: str, cwd: str | None = None) -> str:
    if shutil.which(command[0]) is None:
        raise Unavailable(f"{command[0]} is missing (not a Debian host)")
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise Unavailable(f"{' '.join(command)} failed: {last}")
    return result.stdout
