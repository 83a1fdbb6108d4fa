"""corral.image.ociimage: a root filesystem tarball into an OCI image layout tar.

Each test builds a small FreeBSD-like tarball (files, directories, a symlink, a hard
link, a fifo, a device node, a setuid file, a pax file-flags record), converts it,
then reads the output back as the image-spec says a consumer would: ``oci-layout``,
``index.json`` -> manifest -> config and layer, every digest and size checked against
the blob it names.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import tarfile
import time
import tracemalloc

import pytest

from corral.cli.args import Parsed
from corral.cli.demo_image import cmd_demo_oci_image
from corral.errors import CorralError
from corral.image.ociimage import (
    ImageError,
    build_oci_image,
    convert_rootfs,
    elf_architecture,
    normalize_reference,
    oci_platform,
    split_reference,
    tag_for_version,
    userland_version,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

MTIME = 1_717_200_000  # 2024-06-01T00:00:00Z
NEWEST = MTIME + 3600


def elf_header(machine: int, *, little: bool = True) -> bytes:
    """The first 64 bytes of a 64-bit ELF executable for ``machine``."""
    ident = b"\x7fELF" + bytes([2, 1 if little else 2, 1, 9]) + bytes(8)  # OSABI 9: FreeBSD
    if little:
        return ident + (2).to_bytes(2, "little") + machine.to_bytes(2, "little") + bytes(44)
    return ident + (2).to_bytes(2, "big") + machine.to_bytes(2, "big") + bytes(44)


def add(archive: tarfile.TarFile, name: str, kind: bytes, data: bytes = b"", **fields: Any) -> None:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.mtime = fields.pop("mtime", MTIME)
    member.mode = fields.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    member.uname, member.gname = "root", "wheel"
    for key, value in fields.items():
        setattr(member, key, value)
    if kind == tarfile.REGTYPE:
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    else:
        archive.addfile(member)


def rootfs_tar(*, machine: int | None = 183, version: str = "14.2-RELEASE") -> bytes:
    """A plain tar shaped like FreeBSD's base.txz (``./``-prefixed names, pax records)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        add(archive, ".", tarfile.DIRTYPE)
        add(archive, "./bin", tarfile.DIRTYPE)
        sh = elf_header(machine) + bytes(200) if machine is not None else b"#!/bin/true\n"
        add(archive, "./bin/sh", tarfile.REGTYPE, sh, mode=0o555)
        script = f'#!/bin/sh\nUSERLAND_VERSION="{version}"\necho $USERLAND_VERSION\n'
        add(archive, "./bin/freebsd-version", tarfile.REGTYPE, script.encode(), mode=0o555)
        add(archive, "./bin/link", tarfile.SYMTYPE, linkname="sh", mode=0o777)
        add(archive, "./bin/hard", tarfile.LNKTYPE, linkname="./bin/sh", mode=0o555)
        add(archive, "./dev", tarfile.DIRTYPE)
        add(archive, "./dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=2, devminor=2)
        add(archive, "./etc", tarfile.DIRTYPE)
        add(archive, "./etc/fifo", tarfile.FIFOTYPE, mode=0o600)
        add(archive, "./etc/motd", tarfile.REGTYPE, b"Welcome to FreeBSD!\n", mtime=NEWEST)
        add(archive, "./usr", tarfile.DIRTYPE, mode=0o755)
        add(archive, "./usr/bin", tarfile.DIRTYPE)
        add(archive, "./usr/bin/su", tarfile.REGTYPE, b"su", mode=0o4555, gid=5, gname="operator")
        # FreeBSD's tar records file flags (chflags(1)) as a pax record.
        add(
            archive,
            "./var/empty",
            tarfile.DIRTYPE,
            mode=0o555,
            pax_headers={"SCHILY.fflags": "schg"},
        )
        add(archive, "./tmp", tarfile.DIRTYPE, mode=0o1777)
    return buffer.getvalue()


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "xz": lzma.compress,
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "plain": lambda data: data,
}


def write_input(tmp_path: Path, data: bytes, compression: str, name: str = "base.txz") -> str:
    # The name lies on purpose (base.txz for every compression): only the bytes count.
    path = tmp_path / name
    path.write_bytes(COMPRESSORS[compression](data))
    return str(path)


class Layout:
    """An image layout tar read back into memory, with JSON helpers."""

    def __init__(self, path: str) -> None:
        with tarfile.open(path) as archive:
            self.names = archive.getnames()
            self.files: dict[str, bytes] = {}
            for member in archive.getmembers():
                if member.isfile():
                    data = archive.extractfile(member)
                    assert data is not None
                    self.files[member.name] = data.read()

    def json(self, name: str) -> Any:
        return json.loads(self.files[name])

    def manifest(self) -> Any:
        return json.loads(self.blob(self.json("index.json")["manifests"][0]))

    def blob(self, descriptor: dict[str, Any]) -> bytes:
        algorithm, _, encoded = descriptor["digest"].partition(":")
        data = self.files[f"blobs/{algorithm}/{encoded}"]
        assert algorithm == "sha256"
        assert hashlib.sha256(data).hexdigest() == encoded, "blob content != its name"
        assert len(data) == descriptor["size"], "descriptor size != blob size"
        return data


def member_facts(data: bytes) -> list[tuple[object, ...]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        return [
            (
                m.name,
                m.type,
                m.mode,
                m.uid,
                m.gid,
                m.uname,
                m.gname,
                m.linkname,
                m.size,
                m.mtime,
                m.devmajor,
                m.devminor,
                m.pax_headers.get("SCHILY.fflags"),
            )
            for m in archive.getmembers()
        ]


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_layout_is_complete_and_consistent(tmp_path: Path, compression: str) -> None:
    tar_bytes = rootfs_tar()
    source = write_input(tmp_path, tar_bytes, compression)
    output = str(tmp_path / "image.tar")

    digest = build_oci_image(source, output, name="freebsd", tag="14.2", arch="aarch64")

    layout = Layout(output)
    assert layout.names[:3] == ["blobs", "blobs/sha256", "oci-layout"]
    assert layout.json("oci-layout") == {"imageLayoutVersion": "1.0.0"}
    assert not os.path.exists(output + ".part")

    index = layout.json("index.json")
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    [descriptor] = index["manifests"]
    assert descriptor["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert descriptor["digest"] == digest
    assert descriptor["platform"] == {"architecture": "arm64", "os": "freebsd"}
    assert descriptor["annotations"] == {
        "io.containerd.image.name": "docker.io/library/freebsd:14.2",
        "org.opencontainers.image.ref.name": "14.2",
    }

    manifest = json.loads(layout.blob(descriptor))
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    [layer_descriptor] = manifest["layers"]
    assert layer_descriptor["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"

    config = json.loads(layout.blob(manifest["config"]))
    layer = layout.blob(layer_descriptor)
    assert layer[:2] == b"\x1f\x8b", "the layer blob is gzip"
    uncompressed = gzip.decompress(layer)
    assert config["rootfs"] == {
        "type": "layers",
        "diff_ids": ["sha256:" + hashlib.sha256(uncompressed).hexdigest()],
    }
    assert config["architecture"] == "arm64"
    assert config["os"] == "freebsd"
    assert config["config"]["Cmd"] == ["/bin/sh"]
    assert config["config"]["Env"] == [
        "PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"
    ]
    assert config["created"] == "2024-06-01T01:00:00Z", "the newest member's mtime"
    assert config["history"] == [
        {"created": config["created"], "created_by": "corral demo oci-image base.txz"}
    ]
    # Only the blobs the manifest names, and index.json last.
    blob_names = {n for n in layout.files if n.startswith("blobs/")}
    assert len(blob_names) == 3
    assert layout.names[-1] == "index.json"

    # The layer is the input tar itself, byte for byte: nothing re-encoded.
    assert uncompressed == tar_bytes
    assert member_facts(uncompressed) == member_facts(tar_bytes)


def test_layer_keeps_links_devices_owners_and_flags(tmp_path: Path) -> None:
    source = write_input(tmp_path, rootfs_tar(), "xz")
    output = str(tmp_path / "image.tar")
    build_oci_image(source, output, name="freebsd", tag="t", arch="arm64")
    layout = Layout(output)
    layer_descriptor = layout.manifest()["layers"][0]
    with tarfile.open(fileobj=io.BytesIO(layout.blob(layer_descriptor)), mode="r:gz") as layer:
        members = {m.name: m for m in layer.getmembers()}
    assert members["./bin/link"].issym() and members["./bin/link"].linkname == "sh"
    assert members["./bin/hard"].islnk() and members["./bin/hard"].linkname == "./bin/sh"
    assert members["./etc/fifo"].isfifo() and members["./etc/fifo"].mode == 0o600
    null = members["./dev/null"]
    assert null.ischr() and (null.devmajor, null.devminor, null.mode) == (2, 2, 0o666)
    su = members["./usr/bin/su"]
    assert (su.mode, su.uid, su.gid, su.uname, su.gname) == (0o4555, 0, 5, "root", "operator")
    assert members["./tmp"].mode == 0o1777
    assert members["./var/empty"].pax_headers.get("SCHILY.fflags") == "schg"


def test_default_command_is_the_images_cmd(tmp_path: Path) -> None:
    source = write_input(tmp_path, rootfs_tar(), "xz")
    output = str(tmp_path / "image.tar")
    build_oci_image(source, output, name="pause", tag="1", arch="arm64", command=["sleep", "9"])
    layout = Layout(output)
    config = json.loads(layout.blob(layout.manifest()["config"]))
    assert config["config"]["Cmd"] == ["sleep", "9"]


def test_name_tag_and_architecture_come_from_the_tarball(tmp_path: Path) -> None:
    source = write_input(tmp_path, rootfs_tar(machine=62, version="14.1-RELEASE"), "xz")
    info = convert_rootfs(source, str(tmp_path / "image.tar"), name="freebsd")
    assert info.reference == "docker.io/library/freebsd:14.1"
    assert (info.architecture, info.variant, info.os) == ("amd64", "", "freebsd")
    assert info.userland_version == "14.1-RELEASE"
    assert info.members == 16
    index = Layout(str(tmp_path / "image.tar")).json("index.json")
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "14.1"


def test_architecture_is_checked_against_bin_sh(tmp_path: Path) -> None:
    source = write_input(tmp_path, rootfs_tar(machine=183), "gzip")
    output = str(tmp_path / "image.tar")
    with pytest.raises(ImageError, match=r"holds arm64 programs \(bin/sh\), not amd64"):
        build_oci_image(source, output, name="freebsd", tag="x", arch="amd64")
    assert not os.path.exists(output)
    assert not os.path.exists(output + ".part")


def test_architecture_must_be_given_without_an_elf_bin_sh(tmp_path: Path) -> None:
    source = write_input(tmp_path, rootfs_tar(machine=None), "plain")
    output = str(tmp_path / "image.tar")
    with pytest.raises(ImageError, match="cannot tell the architecture"):
        build_oci_image(source, output, name="freebsd", tag="x", arch="")
    info = convert_rootfs(source, output, name="freebsd", tag="x", arch="armv7")
    assert (info.architecture, info.variant) == ("arm", "v7")
    platform = Layout(output).json("index.json")["manifests"][0]["platform"]
    assert platform == {"architecture": "arm", "os": "freebsd", "variant": "v7"}


def test_same_input_gives_the_same_bytes(tmp_path: Path) -> None:
    source = write_input(tmp_path, rootfs_tar(), "xz")
    first = build_oci_image(source, str(tmp_path / "a.tar"), name="f", tag="1", arch="arm64")
    time.sleep(1.1)  # a wall-clock timestamp anywhere would now differ
    second = build_oci_image(source, str(tmp_path / "b.tar"), name="f", tag="1", arch="arm64")
    assert first == second
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_progress_reports_input_bytes_up_to_the_total(tmp_path: Path) -> None:
    source = write_input(tmp_path, rootfs_tar(), "xz")
    calls: list[tuple[int, int]] = []
    build_oci_image(
        source,
        str(tmp_path / "image.tar"),
        name="freebsd",
        tag="x",
        arch="arm64",
        progress=lambda done, total: calls.append((done, total)),
    )
    size = os.path.getsize(source)
    assert calls[-1] == (size, size)
    assert all(total == size for _, total in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done)


def test_replaces_an_existing_output(tmp_path: Path) -> None:
    source = write_input(tmp_path, rootfs_tar(), "xz")
    output = tmp_path / "image.tar"
    output.write_bytes(b"old")
    build_oci_image(source, str(output), name="freebsd", tag="x", arch="arm64")
    assert Layout(str(output)).json("oci-layout") == {"imageLayoutVersion": "1.0.0"}


def _damaged_inputs() -> dict[str, tuple[bytes, str]]:
    good = rootfs_tar()
    empty = io.BytesIO()
    with tarfile.open(fileobj=empty, mode="w"):
        pass
    xz = lzma.compress(good)
    return {
        "not a tar": (b"hello, this is not an archive\n" * 40, "not a tar archive"),
        "xz of text": (lzma.compress(b"plain text, no tar\n" * 40), "not a tar archive"),
        "cut xz": (xz[: len(xz) // 2], "damaged or truncated xz data"),
        "cut gzip": (gzip.compress(good)[:-100], "damaged or truncated gzip data"),
        # bin/sh's header is at 1024 and its 264 bytes of data at 1536.
        "cut in bin/sh": (good[:1600], "damaged tar archive (unexpected end of data)"),
        "cut after bin/sh's header": (good[:1536], "damaged tar archive"),
        # bin/freebsd-version's data is at 2560..2625, read by nothing: tarfile skips it.
        "cut in a skipped file": (good[:2600], "damaged tar archive (unexpected end of data)"),
        # The last member (./tmp at 10752) complete, then no end-of-archive block.
        "cut before the end": (good[:11264], "truncated tar archive"),
        "no members": (empty.getvalue(), "holds no files"),
        "zstd": (b"\x28\xb5\x2f\xfd" + bytes(600), "zstd-compressed"),
        "empty": (b"", "not a tar archive"),
    }


@pytest.mark.parametrize("case", sorted(_damaged_inputs()))
def test_damaged_input_is_one_line_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    data, message = _damaged_inputs()[case]
    source = tmp_path / "base.txz"
    source.write_bytes(data)
    output = tmp_path / "image.tar"
    with pytest.raises(ImageError) as caught:
        build_oci_image(str(source), str(output), name="freebsd", tag="x", arch="arm64")
    assert message in str(caught.value)
    assert str(source) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert sorted(os.listdir(tmp_path)) == ["base.txz"], "no output, .part or temp file left"


def test_missing_input_and_unwritable_output(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"cannot read .*nope\.txz: No such file"):
        build_oci_image(str(tmp_path / "nope.txz"), "x.tar", name="f", tag="x", arch="arm64")
    source = write_input(tmp_path, rootfs_tar(), "plain")
    with pytest.raises(ImageError, match=r"cannot write .*image\.tar: No such file"):
        build_oci_image(
            source, str(tmp_path / "missing" / "image.tar"), name="f", tag="x", arch="arm64"
        )


def test_bad_names_fail_before_reading(tmp_path: Path) -> None:
    source = write_input(tmp_path, rootfs_tar(), "plain")
    with pytest.raises(ImageError, match="invalid image name"):
        build_oci_image(source, str(tmp_path / "i.tar"), name="FreeBSD", tag="1", arch="arm64")
    with pytest.raises(ImageError, match="invalid image tag"):
        build_oci_image(source, str(tmp_path / "i.tar"), name="freebsd", tag="-1", arch="arm64")
    with pytest.raises(ImageError, match="unknown architecture"):
        build_oci_image(source, str(tmp_path / "i.tar"), name="freebsd", tag="1", arch="vax")
    with pytest.raises(ImageError, match="invalid os"):
        build_oci_image(
            source, str(tmp_path / "i.tar"), name="freebsd", tag="1", arch="arm64", os="Free BSD"
        )
    assert not os.path.exists(tmp_path / "i.tar")


def test_memory_stays_flat_for_a_large_layer(tmp_path: Path) -> None:
    # 48 MiB of incompressible data: holding the layer in memory would show here.
    buffer = io.BytesIO()
    big = os.urandom(48 << 20)
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        add(archive, "./big", tarfile.REGTYPE, big)
    source = tmp_path / "big.tar"
    source.write_bytes(buffer.getvalue())
    del big, buffer
    tracemalloc.start()
    try:
        info = convert_rootfs(str(source), str(tmp_path / "image.tar"), name="big", arch="amd64")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.layer_size > 48 << 20
    assert peak < 12 << 20, f"peak {peak} bytes while converting 48 MiB"


@pytest.mark.parametrize(
    ("name", "tag", "expected"),
    [
        ("freebsd", "14.1", "docker.io/library/freebsd:14.1"),
        ("freebsd", "", "docker.io/library/freebsd:latest"),
        ("me/freebsd", "x", "docker.io/me/freebsd:x"),
        ("docker.io/freebsd", "x", "docker.io/library/freebsd:x"),
        ("localhost/freebsd", "x", "localhost/freebsd:x"),
        ("localhost:5000/a/b", "v1.0_rc-1", "localhost:5000/a/b:v1.0_rc-1"),
        ("ghcr.io/some-one/free__bsd.base", "1", "ghcr.io/some-one/free__bsd.base:1"),
    ],
)
def test_normalize_reference(name: str, tag: str, expected: str) -> None:
    assert normalize_reference(name, tag) == expected


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("FreeBSD", "1"),
        ("free..bsd", "1"),
        ("free___bsd", "1"),
        ("free._bsd", "1"),
        ("-freebsd", "1"),
        ("a//b", "1"),
        ("freebsd", ".hidden"),
        ("freebsd", "a" * 129),
        ("freebsd", "has space"),
    ],
)
def test_normalize_reference_rejects(name: str, tag: str) -> None:
    with pytest.raises(ImageError):
        normalize_reference(name, tag)


def test_split_reference() -> None:
    assert split_reference("freebsd:14.1") == ("freebsd", "14.1")
    assert split_reference("freebsd") == ("freebsd", "")
    assert split_reference("localhost:5000/freebsd") == ("localhost:5000/freebsd", "")
    assert split_reference("localhost:5000/freebsd:14") == ("localhost:5000/freebsd", "14")
    with pytest.raises(ImageError, match="not a digest"):
        split_reference("freebsd@sha256:" + "0" * 64)


def test_platform_names() -> None:
    assert oci_platform("aarch64") == ("arm64", "")
    assert oci_platform("AMD64") == ("amd64", "")
    assert oci_platform("x86_64") == ("amd64", "")
    assert oci_platform("i386") == ("386", "")
    assert oci_platform("powerpc64le") == ("ppc64le", "")
    assert elf_architecture(elf_header(62)) == "amd64"
    assert elf_architecture(elf_header(183)) == "arm64"
    assert elf_architecture(elf_header(21, little=False)) == "ppc64"
    assert elf_architecture(elf_header(21)) == "ppc64le"
    assert elf_architecture(elf_header(9999)) is None
    assert elf_architecture(b"#!/bin/sh\n" + bytes(20)) is None


def test_userland_version() -> None:
    script = b'#!/bin/sh\n\tUSERLAND_VERSION="14.1-RELEASE-p5"\n'
    assert userland_version(script) == "14.1-RELEASE-p5"
    assert userland_version(b'USERLAND_VERSION="$(evil)"\n') == ""
    assert tag_for_version("14.1-RELEASE") == "14.1"
    assert tag_for_version("14.1-RELEASE-p5") == "14.1-RELEASE-p5"
    assert tag_for_version("15.0-BETA2") == "15.0-BETA2"


def test_cli_handler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_input(tmp_path, rootfs_tar(machine=62), "xz")
    output = str(tmp_path / "out.tar")
    parsed = Parsed({"input": source, "output": output, "tag": "example.com/bsd:v1"}, [])
    assert cmd_demo_oci_image(parsed) == 0
    printed = capsys.readouterr().out
    assert "example.com/bsd:v1 (freebsd/amd64)" in printed
    assert f"ctr image import --platform freebsd/amd64 {output}" in printed
    annotations = Layout(output).json("index.json")["manifests"][0]["annotations"]
    assert annotations["io.containerd.image.name"] == "example.com/bsd:v1"

    missing = Parsed({"input": str(tmp_path / "none.txz"), "output": "", "tag": ""}, [])
    with pytest.raises(CorralError, match="corral demo download"):
        cmd_demo_oci_image(missing)


def _containerd_unavailable() -> str | None:
    ctr = shutil.which("ctr")
    if ctr is None:
        return "ctr is not installed"
    address = os.environ.get("CONTAINERD_ADDRESS", "/run/containerd/containerd.sock")
    if not os.path.exists(address):
        return f"no containerd socket at {address}"
    try:
        probe = subprocess.run(
            [ctr, "--connect-timeout", "3s", "version"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "ctr version timed out"
    if probe.returncode != 0:
        return "no containerd answers ctr: " + probe.stderr.decode(errors="replace").strip()
    return None


def test_ctr_image_import(tmp_path: Path) -> None:
    reason = _containerd_unavailable()
    if reason:
        pytest.skip(reason)
    source = write_input(tmp_path, rootfs_tar(machine=62), "xz")
    output = str(tmp_path / "image.tar")
    info = convert_rootfs(source, output, name="corral-test/freebsd", tag="unit")
    namespace = f"corral-test-{os.getpid()}"
    ctr = ["ctr", "--namespace", namespace]
    try:
        # What `corral demo oci-image` tells people to run; it works on any host, and
        # unpacking applies the layer (links, fifo, device node) into a snapshot.
        imported = subprocess.run(
            [*ctr, "image", "import", "--platform", "freebsd/amd64", output],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert imported.returncode == 0, imported.stderr
        assert info.reference == "docker.io/corral-test/freebsd:unit"
        assert f"unpacking {info.reference} ({info.manifest_digest})...done" in imported.stdout
        listed = subprocess.run(
            [*ctr, "image", "ls"], check=True, capture_output=True, text=True, timeout=30
        ).stdout
        line = next(row for row in listed.splitlines() if row.startswith(info.reference))
        assert info.manifest_digest in line
        assert "freebsd/amd64" in line
    finally:
        subprocess.run(
            [*ctr, "image", "rm", "--sync", info.reference],
            capture_output=True,
            timeout=30,
            check=False,
        )
        # The namespace empties once containerd's garbage collector has run.
        for _ in range(20):
            removed = subprocess.run(
                ["ctr", "namespaces", "rm", namespace], capture_output=True, timeout=30, check=False
            )
            if removed.returncode == 0 and namespace.encode() in removed.stdout:
                break
            time.sleep(0.5)
