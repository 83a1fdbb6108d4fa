"""FreeBSD root filesystems as OCI images, for the ``corral demo`` subcommands.

:mod:`corral.image.download` fetches a release's ``base.txz`` from the FreeBSD
mirrors; :mod:`corral.image.ociimage` turns such a tarball into a one-layer OCI image
archive that ``ctr image import`` (and podman, docker) load. Neither is on the
runtime's hot path: only the demo commands import them, when they run.
"""

from __future__ import annotations
