"""Turn a root filesystem tarball (a FreeBSD ``base.txz``) into a one-layer OCI image.

How it works. The input, xz, gzip, bzip2 or plain tar told apart by its magic bytes
(never its name), is decompressed as a stream and copied byte for byte into a gzip
layer blob in a temporary file beside the output. Two SHA-256 sums run while it
passes: one over the uncompressed tar, the config's ``rootfs.diff_ids`` entry, and one
over the gzip bytes, the layer descriptor's digest (image-spec config.md and
descriptor.md). Nothing is re-encoded, so every member keeps its mode, owner, mtime,
hard or symbolic link, device numbers and pax records (FreeBSD's ``SCHILY.fflags``
file flags) exactly as the release's ``tar`` wrote them.

The same bytes pass through :mod:`tarfile`, which reads only the headers, to check
that the input is a whole tar archive and to learn the newest mtime (the image's
``created``, so that one tarball always gives the same digests), the architecture of
``bin/sh`` (its ELF ``e_machine``) and the release in ``bin/freebsd-version``. Then
the config, the manifest, ``index.json`` and ``oci-layout`` are written with the
blobs into one tar laid out as the image-spec's ``image-layout.md`` says, first as
``<output>.part``, renamed to ``output`` once complete.

Naming: ``index.json`` carries the full reference in ``io.containerd.image.name``
(``ctr image import``, podman and docker take it verbatim as the image's name) and
the tag alone in ``org.opencontainers.image.ref.name`` (image-spec annotations.md;
with only that, ``ctr`` would name the image ``import-<date>:<tag>``).

Memory stays flat: the 200 MB layer lives in the temporary file, never in memory.
"""

from __future__ import annotations

import hashlib
import os

from corral.errors import CorralError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import tarfile
    from collections.abc import Callable, Sequence
    from typing import IO, Protocol

    class _Readable(Protocol):
        def read(self, size: int = -1, /) -> bytes: ...

    class _Writable(Protocol):
        def write(self, data: bytes, /) -> object: ...


MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'

# The default PATH of login.conf(5) on FreeBSD, and Docker's on Linux.
_PATHS = {
    "freebsd": "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin",
    "linux": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}
# Level 6 is gzip's and Go's default: level 9 costs twice the time for ~1% smaller.
_GZIP_LEVEL = 6
_CHUNK = 1 << 20
_BLOCK = 512

# Architecture names FreeBSD (uname -m / -p), Linux (uname -m) and OCI (GOARCH) use,
# to the OCI architecture and variant (image-spec config.md points at GOARCH).
_ARCHITECTURES = {
    "amd64": ("amd64", ""),
    "x86_64": ("amd64", ""),
    "arm64": ("arm64", ""),
    "aarch64": ("arm64", ""),
    "386": ("386", ""),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "arm": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armv7l": ("arm", "v7"),
    "armv6": ("arm", "v6"),
    "ppc64": ("ppc64", ""),
    "powerpc64": ("ppc64", ""),
    "ppc64le": ("ppc64le", ""),
    "powerpc64le": ("ppc64le", ""),
    "riscv64": ("riscv64", ""),
    "riscv": ("riscv64", ""),
}
# ELF e_machine values (elf(5)); 21 (EM_PPC64) is told apart by byte order below.
_ELF_MACHINES = {3: "386", 40: "arm", 62: "amd64", 183: "arm64", 243: "riscv64"}
# Members whose ELF header tells the tarball's architecture, in the order tried.
_ARCH_PROBES = ("bin/sh", "libexec/ld-elf.so.1", "rescue/sh", "usr/bin/env")
_VERSION_SCRIPT = "bin/freebsd-version"


class ImageError(CorralError):
    """The input tarball, the image name or the output cannot be used."""


class ImageInfo:
    """What :func:`convert_rootfs` wrote: digests, sizes, name and platform."""

    __slots__ = (
        "architecture",
        "config_digest",
        "created",
        "diff_id",
        "layer_digest",
        "layer_size",
        "manifest_digest",
        "members",
        "os",
        "reference",
        "userland_version",
        "variant",
    )

    def __init__(self) -> None:
        self.architecture = ""
        self.variant = ""
        self.os = ""
        self.reference = ""
        self.created = ""
        self.diff_id = ""
        self.layer_digest = ""
        self.layer_size = 0
        self.config_digest = ""
        self.manifest_digest = ""
        self.members = 0
        self.userland_version = ""


def build_oci_image(
    rootfs_tarball: str,
    output: str,
    *,
    name: str,
    tag: str,
    arch: str,
    os: str = "freebsd",
    command: Sequence[str] = ("/bin/sh",),
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """Write ``output``, an OCI image archive of ``rootfs_tarball``; return its manifest digest.

    ``name`` is a repository (``freebsd``, ``example.com/team/freebsd``) and ``tag`` its
    tag; an empty ``tag`` is taken from the tarball's ``bin/freebsd-version`` (``14.1``
    for 14.1-RELEASE), else ``latest``. ``arch`` may be FreeBSD's, Linux's or OCI's name
    (``aarch64``, ``arm64``); empty means the architecture of the tarball's ``bin/sh``.
    ``command`` is the image's default command (``Cmd``). ``progress(done, total)`` is
    called with the input bytes read so far.
    """
    info = convert_rootfs(
        rootfs_tarball,
        output,
        name=name,
        tag=tag,
        arch=arch,
        image_os=os,
        command=command,
        progress=progress,
    )
    return info.manifest_digest


def convert_rootfs(
    rootfs_tarball: str,
    output: str,
    *,
    name: str,
    tag: str = "",
    arch: str = "",
    image_os: str = "freebsd",
    command: Sequence[str] = ("/bin/sh",),
    progress: Callable[[int, int], None] | None = None,
) -> ImageInfo:
    """:func:`build_oci_image`, returning everything it learned and wrote."""
    if not image_os or not image_os.isascii() or not image_os.isalnum():
        raise ImageError(f'invalid os "{image_os}": a GOOS name such as freebsd')
    requested = oci_platform(arch) if arch else None
    if tag:
        normalize_reference(name, tag)  # a bad name fails before minutes of work
    try:
        source = open(rootfs_tarball, "rb")  # noqa: SIM115 - closed in the finally below
    except OSError as error:
        raise ImageError(f"cannot read {rootfs_tarball}: {error.strerror}") from None
    part = output + ".part"
    try:
        total = os.fstat(source.fileno()).st_size
        decompressed, kind, read_errors = _open_decompressed(source, rootfs_tarball)
        with _layer_file(output) as layer:
            tee = _Tee(decompressed, source, total, progress, read_errors, rootfs_tarball, kind)
            scan, diff_id, layer_digest, layer_size = _write_layer(tee, layer, rootfs_tarball)
            info = _describe(scan, requested, name, tag, image_os, rootfs_tarball)
            info.diff_id = diff_id
            info.layer_digest = layer_digest
            info.layer_size = layer_size
            config = _config_json(info, os.path.basename(rootfs_tarball), command)
            info.config_digest = sha256_digest(config)
            manifest = _manifest_json(info, len(config))
            info.manifest_digest = sha256_digest(manifest)
            index = _index_json(info, len(manifest))
            blobs = [(info.config_digest, config), (info.manifest_digest, manifest)]
            _write_archive(part, layer, info, blobs, index, scan.newest_mtime)
        os.replace(part, output)
    except OSError as error:
        _remove(part)
        where = error.filename if isinstance(error.filename, str) else output
        raise ImageError(f"cannot write {where}: {error.strerror or error}") from None
    except BaseException:
        _remove(part)
        raise
    finally:
        source.close()
    return info


def split_reference(reference: str) -> tuple[str, str]:
    """``freebsd:14.1`` -> ``("freebsd", "14.1")``; no tag gives ``""`` for it."""
    if "@" in reference:
        raise ImageError(f'image name "{reference}": give a tag, not a digest')
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:  # a colon before the last slash is a registry's port
        return reference[:colon], reference[colon + 1 :]
    return reference, ""


def normalize_reference(name: str, tag: str) -> str:
    """The full reference Docker's rules give ``name:tag`` (``docker.io/library/...``)."""
    if not tag:
        tag = "latest"
    if not _valid_tag(tag):
        raise ImageError(
            f'invalid image tag "{tag}": up to 128 letters, digits, "_", "." and "-", '
            'not starting with "." or "-"'
        )
    parts = name.split("/")
    domain = ""
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        domain, parts = parts[0], parts[1:]
        if not all(c.isascii() and (c.isalnum() or c in ".-:") for c in domain):
            raise ImageError(f'invalid registry "{domain}" in image name "{name}"')
    if domain in ("", "docker.io", "index.docker.io"):
        domain = "docker.io"
        if len(parts) == 1:
            parts = ["library", *parts]
    for part in parts:
        if not _valid_path_component(part):
            raise ImageError(
                f'invalid image name "{name}": lowercase letters and digits, separated by '
                '".", "_", "__" or "-", in "/"-separated parts'
            )
    return f"{domain}/{'/'.join(parts)}:{tag}"


def oci_platform(arch: str) -> tuple[str, str]:
    """The OCI architecture and variant for FreeBSD's, Linux's or OCI's name of ``arch``."""
    platform = _ARCHITECTURES.get(arch.lower())
    if platform is None:
        raise ImageError(
            f'unknown architecture "{arch}" (known: amd64, arm64, 386, arm, ppc64, ppc64le, '
            "riscv64, or FreeBSD's and Linux's names for them)"
        )
    return platform


def elf_architecture(head: bytes) -> str | None:
    """The OCI architecture of an ELF file from its first 20 bytes, or None."""
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    little_endian = head[5] == 1  # e_ident[EI_DATA]: ELFDATA2LSB
    machine = int.from_bytes(head[18:20], "little" if little_endian else "big")
    if machine == 21:  # EM_PPC64: FreeBSD has both byte orders
        return "ppc64le" if little_endian else "ppc64"
    return _ELF_MACHINES.get(machine)


def userland_version(script: bytes) -> str:
    """``14.1-RELEASE`` from freebsd-version(1)'s ``USERLAND_VERSION="..."`` line, or ""."""
    for raw_line in script.decode("utf-8", "replace").splitlines():
        line = raw_line.strip()
        if line.startswith('USERLAND_VERSION="'):
            value = line[len('USERLAND_VERSION="') :].partition('"')[0]
            if value and all(c.isascii() and (c.isalnum() or c in ".-_") for c in value):
                return value
    return ""


def tag_for_version(version: str) -> str:
    """The tag for a userland version: ``14.1`` for ``14.1-RELEASE``, else the version."""
    number, _, kind = version.partition("-")
    return number if kind == "RELEASE" else version


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_path(digest: str) -> str:
    """Where the image layout keeps a blob: ``blobs/<algorithm>/<hex>``."""
    algorithm, _, encoded = digest.partition(":")
    return f"blobs/{algorithm}/{encoded}"


class _Scan:
    """What the headers of the input tar said, gathered while its bytes passed."""

    __slots__ = ("architecture", "members", "newest_mtime", "version")

    def __init__(self) -> None:
        self.members = 0
        self.newest_mtime = 0
        self.architecture: str | None = None
        self.version = ""


class _HashingWriter:
    """A write-only file that counts and hashes the bytes it passes to ``target``."""

    __slots__ = ("hash", "size", "target")

    def __init__(self, target: _Writable) -> None:
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes, /) -> int:
        self.target.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _Tee:
    """The decompressed input, read by :mod:`tarfile`, every byte also copied to ``sink``.

    Read errors of the decompressor (``read_errors``) mean damaged input and become one
    :class:`ImageError` line; write errors of the sink stay OSErrors (the output's).
    """

    __slots__ = (
        "count",
        "kind",
        "label",
        "progress",
        "raw",
        "read_errors",
        "sink",
        "source",
        "total",
    )

    def __init__(
        self,
        source: _Readable,
        raw: IO[bytes],
        total: int,
        progress: Callable[[int, int], None] | None,
        read_errors: tuple[type[BaseException], ...],
        label: str,
        kind: str,
    ) -> None:
        self.source = source
        self.raw = raw
        self.total = total
        self.progress = progress
        self.read_errors = read_errors
        self.label = label
        self.kind = kind
        self.sink: _Writable | None = None
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        try:
            data = self.source.read(size)
        except self.read_errors as error:
            raise ImageError(
                f"{self.label}: damaged or truncated {self.kind} data ({error})"
            ) from None
        if data and self.sink is not None:
            self.sink.write(data)
        self.count += len(data)
        if self.progress is not None:
            self.progress(self.raw.tell(), self.total)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    # tarfile's file protocol asks for these; its stream mode only reads forward.
    def write(self, data: bytes, /) -> int:
        raise OSError("the input tarball is read-only")

    def seek(self, position: int, /) -> int:
        raise OSError("the input tarball is read as a stream")

    def tell(self) -> int:
        return self.count

    def close(self) -> None:
        pass


def _open_decompressed(
    source: IO[bytes], label: str
) -> tuple[_Readable, str, tuple[type[BaseException], ...]]:
    """The decompressed stream of ``source``, by its magic bytes; its kind and read errors."""
    head = source.read(_BLOCK)
    source.seek(0)
    if head.startswith(b"\xfd7zXZ\x00"):
        import lzma

        return lzma.LZMAFile(source), "xz", (lzma.LZMAError, EOFError, OSError)
    if head.startswith(b"\x1f\x8b"):
        import gzip
        import zlib

        stream = gzip.GzipFile(fileobj=source, mode="rb")
        return stream, "gzip", (zlib.error, EOFError, OSError)
    if head.startswith(b"BZh"):
        import bz2

        return bz2.BZ2File(source), "bzip2", (EOFError, OSError, ValueError)
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        raise ImageError(f"{label}: zstd-compressed; decompress it first (unzstd)")
    if len(head) == _BLOCK and (head[257:262] == b"ustar" or not head.strip(b"\0")):
        # ustar magic, or a zero block: an empty archive, said so after the scan.
        return source, "tar", (OSError,)
    raise ImageError(f"{label}: not a tar archive (nor an xz, gzip or bzip2 compressed one)")


def _write_layer(tee: _Tee, layer: IO[bytes], label: str) -> tuple[_Scan, str, str, int]:
    """Copy the input tar gzip-compressed into ``layer``; scan it; return the digests."""
    import gzip

    compressed = _HashingWriter(layer)
    # mtime=0 and no file name keep the gzip header, hence the digest, reproducible.
    with gzip.GzipFile(
        filename="", mode="wb", compresslevel=_GZIP_LEVEL, fileobj=compressed, mtime=0
    ) as gzip_stream:
        uncompressed = _HashingWriter(gzip_stream)
        tee.sink = uncompressed
        scan = _scan_tar(tee, label)
    if tee.progress is not None:
        tee.progress(tee.total, tee.total)
    return scan, uncompressed.digest(), compressed.digest(), compressed.size


def _scan_tar(tee: _Tee, label: str) -> _Scan:
    """Read the headers of the tar passing through ``tee``, then the rest of its bytes."""
    import tarfile

    scan = _Scan()
    with _open_tar_stream(tee, label) as archive:
        while True:
            try:
                member = archive.next()
                if member is None:
                    break
                # A stream-mode TarFile keeps every member it read; base.txz has ~30,000
                # and nothing here looks back, so let them go (typeshed omits the attribute).
                archive.members.clear()  # type: ignore[attr-defined]
                _note_member(archive, member, scan)
            except tarfile.TarError as error:
                raise ImageError(f"{label}: damaged tar archive ({error})") from None
        end = archive.offset
    tee.drain()
    # tarfile ends quietly at a header that is missing: the input must reach past the
    # last member to an end-of-archive block, or it was cut short.
    if tee.count < end + _BLOCK:
        raise ImageError(f"{label}: truncated tar archive (it ends after {tee.count} bytes)")
    if scan.members == 0:
        raise ImageError(f"{label}: the tar archive holds no files")
    return scan


def _layer_file(output: str) -> IO[bytes]:
    """An unnamed temporary file beside ``output``: on its disk, not in a tmpfs /tmp."""
    import tempfile

    try:
        return tempfile.TemporaryFile(dir=os.path.dirname(os.path.abspath(output)))
    except OSError as error:
        raise ImageError(f"cannot write {output}: {error.strerror}") from None


def _open_tar_stream(tee: _Tee, label: str) -> tarfile.TarFile:
    import tarfile

    try:
        return tarfile.open(fileobj=tee, mode="r|", bufsize=_CHUNK)
    except tarfile.TarError as error:
        raise ImageError(f"{label}: not a tar archive ({error})") from None


def _note_member(archive: tarfile.TarFile, member: tarfile.TarInfo, scan: _Scan) -> None:
    scan.members += 1
    scan.newest_mtime = max(scan.newest_mtime, int(member.mtime))
    if not member.isreg():
        return
    path = member.name.lstrip("/")
    while path.startswith("./"):
        path = path[2:]
    if scan.architecture is None and path in _ARCH_PROBES:
        data = archive.extractfile(member)
        if data is not None:
            scan.architecture = elf_architecture(data.read(20))
    elif not scan.version and path == _VERSION_SCRIPT and member.size <= _CHUNK:
        data = archive.extractfile(member)
        if data is not None:
            scan.version = userland_version(data.read())


def _describe(
    scan: _Scan,
    requested: tuple[str, str] | None,
    name: str,
    tag: str,
    image_os: str,
    label: str,
) -> ImageInfo:
    """The image's platform and name from the request and what the scan found."""
    info = ImageInfo()
    found = scan.architecture
    if requested is not None:
        if found is not None and found != requested[0]:
            raise ImageError(f"{label} holds {found} programs (bin/sh), not {requested[0]}")
        info.architecture, info.variant = requested
    elif found is not None:
        info.architecture, info.variant = oci_platform(found)
    else:
        raise ImageError(f"cannot tell the architecture of {label} (no ELF bin/sh): give one")
    info.os = image_os
    info.members = scan.members
    info.userland_version = scan.version
    if not tag:
        tag = tag_for_version(scan.version) if scan.version else "latest"
    info.reference = normalize_reference(name, tag)
    info.created = _rfc3339(scan.newest_mtime)
    return info


def _platform(info: ImageInfo) -> dict[str, object]:
    platform: dict[str, object] = {"architecture": info.architecture, "os": info.os}
    if info.variant:
        platform["variant"] = info.variant
    return platform


def _config_json(info: ImageInfo, source_name: str, command: Sequence[str]) -> bytes:
    from corral.core import jsonio

    config: dict[str, object] = {"created": info.created, **_platform(info)}
    config["config"] = {
        "Env": ["PATH=" + _PATHS.get(info.os, _PATHS["linux"])],
        "Cmd": list(command),
    }
    config["rootfs"] = {"type": "layers", "diff_ids": [info.diff_id]}
    config["history"] = [
        {"created": info.created, "created_by": f"corral demo oci-image {source_name}"}
    ]
    return jsonio.dumps(config).encode()


def _manifest_json(info: ImageInfo, config_size: int) -> bytes:
    from corral.core import jsonio

    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {
            "mediaType": MEDIA_TYPE_CONFIG,
            "digest": info.config_digest,
            "size": config_size,
        },
        "layers": [
            {
                "mediaType": MEDIA_TYPE_LAYER_GZIP,
                "digest": info.layer_digest,
                "size": info.layer_size,
            }
        ],
    }
    return jsonio.dumps(manifest).encode()


def _index_json(info: ImageInfo, manifest_size: int) -> bytes:
    from corral.core import jsonio

    tag = info.reference.rpartition(":")[2]
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_TYPE_MANIFEST,
                "digest": info.manifest_digest,
                "size": manifest_size,
                "platform": _platform(info),
                "annotations": {
                    ANNOTATION_CONTAINERD_NAME: info.reference,
                    ANNOTATION_REF_NAME: tag,
                },
            }
        ],
    }
    return jsonio.dumps(index).encode()


def _write_archive(
    path: str,
    layer: IO[bytes],
    info: ImageInfo,
    blobs: list[tuple[str, bytes]],
    index: bytes,
    mtime: int,
) -> None:
    """The image layout as one tar: ``oci-layout``, the blobs, then ``index.json``."""
    import io
    import tarfile

    def entry(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
        member = tarfile.TarInfo(name)
        member.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        member.mode = 0o755 if directory else 0o644
        member.size = size
        member.mtime = mtime  # the input's newest: the same input gives the same bytes
        return member

    with open(path, "wb") as file:
        with tarfile.open(fileobj=file, mode="w", format=tarfile.PAX_FORMAT) as archive:
            archive.addfile(entry("blobs", 0, directory=True))
            archive.addfile(entry("blobs/sha256", 0, directory=True))
            archive.addfile(entry("oci-layout", len(OCI_LAYOUT)), io.BytesIO(OCI_LAYOUT))
            layer.seek(0)
            archive.addfile(entry(blob_path(info.layer_digest), info.layer_size), layer)
            for digest, data in blobs:
                archive.addfile(entry(blob_path(digest), len(data)), io.BytesIO(data))
            archive.addfile(entry("index.json", len(index)), io.BytesIO(index))
        file.flush()
        # Durable before the rename, so a crash never leaves a short image.tar behind.
        os.fsync(file.fileno())


def _valid_tag(tag: str) -> bool:
    return (
        len(tag) <= 128
        and tag.isascii()
        and (tag[0].isalnum() or tag[0] == "_")
        and all(c.isalnum() or c in "_.-" for c in tag)
    )


def _valid_path_component(part: str) -> bool:
    """distribution/reference's path component: alphanumeric runs joined by one ".",
    one or two "_", or any number of "-"; lowercase only."""
    if not part or not part.isascii() or not part[0].isalnum() or not part[-1].isalnum():
        return False
    separator = ""
    for char in part + "a":  # the sentinel ends the last separator run
        if char.isdigit() or char.islower():
            if separator not in ("", ".", "_", "__") and separator.strip("-"):
                return False
            separator = ""
        elif char in "._-":
            separator += char
        else:
            return False
    return True


def _rfc3339(timestamp: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(timestamp, 0)))


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
