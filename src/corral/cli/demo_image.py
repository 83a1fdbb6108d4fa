"""``corral demo download`` and ``corral demo oci-image``: a FreeBSD image from scratch.

Like runj's demo subcommands: ``download`` fetches a release's ``base.txz`` (default:
the host's release on FreeBSD, else 14.3, for this machine's architecture) and
``oci-image`` turns it into a one-layer OCI image archive for ``ctr image import``.
Both take a :class:`~corral.cli.args.Parsed` with the dests ``release``, ``arch``,
``output``, ``input`` and ``tag``; a dest that is missing or empty means its default.
Progress goes to stderr when it is a terminal; the result is one line on stdout.
"""

from __future__ import annotations

import os
import sys

from corral.errors import CorralError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.cli.args import Parsed

DEFAULT_BASE = "base.txz"
DEFAULT_IMAGE = "image.tar"
DEFAULT_REPOSITORY = "freebsd"


def cmd_demo_download(parsed: Parsed) -> int:
    from corral.image.download import (
        base_url,
        default_release,
        download_base,
        format_size,
        freebsd_machine,
        host_arch,
        release_name,
    )

    release = _value(parsed, "release") or default_release()
    arch = _value(parsed, "arch") or host_arch()
    output = _value(parsed, "output") or DEFAULT_BASE
    url = base_url(release, arch)
    machine_arch = freebsd_machine(arch)[1]  # FreeBSD's name: x86_64 -> amd64
    sys.stderr.write(
        f"corral: downloading FreeBSD {release_name(release)} ({machine_arch}) from {url}\n"
    )
    digest = download_base(release, arch, output)
    size = format_size(os.path.getsize(output))
    sys.stdout.write(f"{output}: {size}, {digest} (checked against the release's MANIFEST)\n")
    return 0


def cmd_demo_oci_image(parsed: Parsed) -> int:
    from corral.image.download import ProgressBar, format_size
    from corral.image.ociimage import convert_rootfs, split_reference

    source = _value(parsed, "input") or DEFAULT_BASE
    output = _value(parsed, "output") or DEFAULT_IMAGE
    name, tag = split_reference(_value(parsed, "tag") or DEFAULT_REPOSITORY)
    if not os.path.isfile(source):
        raise CorralError(
            f"{source} not found: fetch one with corral demo download, or pass --input"
        )
    bar = None
    if sys.stderr.isatty():
        bar = ProgressBar(sys.stderr, os.path.basename(source), os.path.getsize(source))
    try:
        info = convert_rootfs(
            source,
            output,
            name=name,
            tag=tag,
            arch=_value(parsed, "arch"),
            progress=(lambda done, _total: bar.update(done)) if bar is not None else None,
        )
    except BaseException:
        if bar is not None:
            bar.abort()
        raise
    if bar is not None:
        bar.finish()
    platform = f"{info.os}/{info.architecture}" + (f"/{info.variant}" if info.variant else "")
    sys.stdout.write(
        f"{output}: {info.reference} ({platform}), {info.members} files, "
        f"layer {format_size(info.layer_size)}, manifest {info.manifest_digest}\n"
        # --platform: ctr imports and unpacks only the host's platform by default.
        f"load it with: ctr image import --platform {platform} {output}\n"
    )
    return 0


def _value(parsed: Parsed, dest: str) -> str:
    """A flag's value, "" when it was not given or the command does not define it."""
    value = parsed.values.get(dest)
    return value if isinstance(value, str) else ""
