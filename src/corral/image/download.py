"""Download a FreeBSD release's ``base.txz``, with a progress bar and a checksum.

How it works: the URL is the one bsdinstall(8) uses,
``https://download.freebsd.org/releases/<machine>/<machine_arch>/<release>/base.txz``
(``uname -m`` and ``uname -p``: ``amd64/amd64``, ``arm64/aarch64``). The body is
streamed with :mod:`urllib` in 256 KiB chunks into ``<output>.part``, hashed with
SHA-256 on the way, and renamed to ``output`` only when it is whole: its length
matches ``Content-Length`` and its hash matches the release's ``MANIFEST`` file (the
tab-separated list bsdinstall checks distribution sets against). runj checks neither;
a cut connection would otherwise leave a short ``base.txz`` that fails much later,
inside ``xz``. Any failure removes the ``.part`` file and is one line.

The progress bar goes to stderr when it is a terminal (or to a stream the caller
passes): label, percent, bar, bytes done and total, average rate; redrawn in place
with ``\\r`` at most ten times a second, and ended by one final line.
"""

from __future__ import annotations

import os
import sys

from corral.errors import CorralError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from http.client import HTTPResponse
    from typing import IO, Protocol, TextIO

    class _Hash(Protocol):
        def update(self, data: bytes, /) -> None: ...


MIRROR = "https://download.freebsd.org/releases"
# The newest release when this was written; on a FreeBSD host the host's is used.
DEFAULT_RELEASE = "14.3"
_CHUNK = 256 * 1024
_TIMEOUT = 60.0  # seconds without a byte before giving up (a socket timeout)
_MANIFEST_LIMIT = 1 << 20
_BAR_WIDTH = 24
_REDRAW_INTERVAL = 0.1  # seconds: at most ten redraws a second

# Any architecture name (FreeBSD's, Linux's uname -m, OCI's) to FreeBSD's
# (machine, machine_arch), the two directory levels of the release mirrors.
_MACHINES = {
    "amd64": ("amd64", "amd64"),
    "x86_64": ("amd64", "amd64"),
    "arm64": ("arm64", "aarch64"),
    "aarch64": ("arm64", "aarch64"),
    "i386": ("i386", "i386"),
    "386": ("i386", "i386"),
    "i686": ("i386", "i386"),
    "arm": ("arm", "armv7"),
    "armv7": ("arm", "armv7"),
    "armv7l": ("arm", "armv7"),
    "powerpc64": ("powerpc", "powerpc64"),
    "ppc64": ("powerpc", "powerpc64"),
    "powerpc64le": ("powerpc", "powerpc64le"),
    "ppc64le": ("powerpc", "powerpc64le"),
    "riscv64": ("riscv", "riscv64"),
    "riscv": ("riscv", "riscv64"),
}


class DownloadError(CorralError):
    """The release, the architecture, the server or the output file cannot be used."""


def freebsd_machine(arch: str) -> tuple[str, str]:
    """FreeBSD's ``(machine, machine_arch)`` for ``arch``: ``arm64`` -> ``("arm64", "aarch64")``."""
    machine = _MACHINES.get(arch.lower())
    if machine is None:
        raise DownloadError(
            f'unknown architecture "{arch}" (known: amd64, arm64, i386, armv7, powerpc64, '
            "powerpc64le, riscv64)"
        )
    return machine


def release_name(release: str) -> str:
    """The directory name of a release: ``14.3`` -> ``14.3-RELEASE``; ``15.0-BETA2`` stays."""
    valid = (
        release[:1].isdigit()
        and release.isascii()
        and all(c.isalnum() or c in ".-" for c in release)
    )
    if not valid:
        raise DownloadError(f'invalid release "{release}": a version such as {DEFAULT_RELEASE}')
    return release if "-" in release else release + "-RELEASE"


def base_url(release: str, arch: str) -> str:
    """Where the FreeBSD mirrors keep ``base.txz`` of ``release`` for ``arch``."""
    machine, machine_arch = freebsd_machine(arch)
    return f"{MIRROR}/{machine}/{machine_arch}/{release_name(release)}/base.txz"


def default_release() -> str:
    """The host's release on FreeBSD (a jail's userland should not be newer than the
    kernel, and runj defaults to the host's too), else :data:`DEFAULT_RELEASE`."""
    if sys.platform.startswith("freebsd"):
        number, _, rest = os.uname().release.partition("-")
        if rest.startswith("RELEASE") and number.replace(".", "").isdigit():
            return number
    return DEFAULT_RELEASE


def host_arch() -> str:
    """This machine's architecture as ``uname -m`` says it (``x86_64``, ``amd64``...)."""
    return os.uname().machine


def download_base(
    release: str,
    arch: str,
    output: str,
    *,
    url: str | None = None,
    progress: bool | TextIO = True,
    verify: bool = True,
) -> str:
    """Download ``base.txz`` of ``release`` for ``arch`` to ``output``; return its digest.

    ``url`` replaces the mirror's URL (``release`` and ``arch`` then only name it in
    messages). ``progress``: True draws a bar on stderr if it is a terminal, False
    none, a stream draws one there whatever it is. ``verify`` checks the SHA-256 the
    ``MANIFEST`` beside the file lists. Returns ``"sha256:<hex>"``.
    """
    import hashlib

    target = url if url is not None else base_url(release, arch)
    if not target.startswith(("http://", "https://")):
        raise DownloadError(f'invalid URL "{target}": http:// or https:// only')
    filename = target.rpartition("/")[2] or "base.txz"
    part = output + ".part"
    bar: ProgressBar | None = None
    try:
        with _open_url(target, f"release {release} not found at {target}") as response:
            expected = _manifest_checksum(target, filename) if verify else None
            total = _content_length(response)
            bar = _progress_bar(progress, filename, total)
            digest = hashlib.sha256()
            try:
                file = open(part, "wb")  # noqa: SIM115 - closed by the with below
            except OSError as error:
                raise DownloadError(f"cannot write {part}: {error.strerror}") from None
            with file:
                done = _copy_body(response, target, file, digest, bar)
        if total is not None and done != total:
            raise DownloadError(f"download of {target} ended after {done} of {total} bytes")
        if bar is not None:
            bar.finish()
            bar = None
        if expected is not None and digest.hexdigest() != expected:
            raise DownloadError(
                f"{filename} from {target} has SHA-256 {digest.hexdigest()}, "
                f"but its MANIFEST says {expected}"
            )
        os.replace(part, output)
    except OSError as error:
        _cleanup(part, bar)
        raise DownloadError(f"cannot write {output}: {error.strerror or error}") from None
    except BaseException:
        _cleanup(part, bar)
        raise
    return "sha256:" + digest.hexdigest()


def _copy_body(
    response: HTTPResponse,
    url: str,
    file: IO[bytes],
    digest: _Hash,
    bar: ProgressBar | None,
) -> int:
    """Stream the body into ``file``; socket errors are the server's, write errors ours."""
    import http.client

    done = 0
    while True:
        try:
            chunk = response.read(_CHUNK)
        except (OSError, http.client.HTTPException) as error:
            raise DownloadError(f"download of {url} failed after {done} bytes: {error}") from None
        if not chunk:
            return done
        file.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        if bar is not None:
            bar.update(done)


def _open_url(url: str, not_found: str) -> HTTPResponse:
    import http.client
    import urllib.error
    import urllib.request

    from corral import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"corral/{__version__}"})
    try:
        response: HTTPResponse = urllib.request.urlopen(request, timeout=_TIMEOUT)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 404:
            raise DownloadError(not_found) from None
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise DownloadError(f"cannot reach {url}: {error.reason}") from None
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(f"cannot download {url}: {error}") from None
    return response


def _content_length(response: HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _manifest_checksum(url: str, filename: str) -> str:
    """The SHA-256 the release's ``MANIFEST`` (beside ``url``) lists for ``filename``.

    Its lines are ``name<TAB>sha256<TAB>files<TAB>set<TAB>"description"<TAB>on|off``.
    """
    import http.client

    manifest_url = url.rpartition("/")[0] + "/MANIFEST"
    with _open_url(manifest_url, f"no MANIFEST at {manifest_url} to check {filename}") as reply:
        try:
            text = reply.read(_MANIFEST_LIMIT).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as error:
            raise DownloadError(f"download of {manifest_url} failed: {error}") from None
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0] == filename:
            checksum = fields[1].strip().lower()
            if len(checksum) == 64 and all(c in "0123456789abcdef" for c in checksum):
                return checksum
    raise DownloadError(f"{manifest_url} lists no SHA-256 for {filename}")


def _progress_bar(progress: bool | TextIO, label: str, total: int | None) -> ProgressBar | None:
    if progress is False:
        return None
    if progress is True:
        if not sys.stderr.isatty():
            return None
        return ProgressBar(sys.stderr, label, total)
    return ProgressBar(progress, label, total)


def _cleanup(part: str, bar: ProgressBar | None) -> None:
    if bar is not None:
        bar.abort()
    try:
        os.unlink(part)
    except FileNotFoundError:
        pass


class ProgressBar:
    """One line of progress redrawn in place, at most every :data:`_REDRAW_INTERVAL` s."""

    __slots__ = (
        "_clock",
        "_drawn",
        "_last",
        "_start",
        "_width",
        "done",
        "label",
        "stream",
        "total",
    )

    def __init__(
        self,
        stream: TextIO,
        label: str,
        total: int | None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.stream = stream
        self.label = label
        self.total = total
        self.done = 0
        self._clock = clock if clock is not None else time.monotonic
        self._start = self._clock()
        self._last = self._start
        self._drawn = False
        self._width = 0

    def update(self, done: int) -> None:
        """Record ``done`` bytes; redraw unless the last redraw was under 0.1 s ago."""
        self.done = done
        now = self._clock()
        if self._drawn and now - self._last < _REDRAW_INTERVAL:
            return
        self._draw(now)

    def finish(self) -> None:
        """Draw the final state and end the line."""
        self._draw(self._clock())
        self.stream.write("\n")
        self.stream.flush()

    def abort(self) -> None:
        """End a drawn line, so that an error message starts on its own."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        line = format_progress(self.label, self.done, self.total, now - self._start)
        # Blank what a longer previous line left behind.
        self.stream.write("\r" + line + " " * max(0, self._width - len(line)))
        self.stream.flush()
        self._width = len(line)
        self._drawn = True
        self._last = now


def format_progress(label: str, done: int, total: int | None, elapsed: float) -> str:
    """``base.txz  42% [##########--------------] 78.2 MiB / 186.3 MiB  11.0 MiB/s``."""
    rate = f"{format_size(int(done / elapsed))}/s" if elapsed > 0 else "--/s"
    if not total:
        return f"{label} {format_size(done)}  {rate}"
    fraction = min(done / total, 1.0)
    filled = int(fraction * _BAR_WIDTH)
    bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
    return (
        f"{label} {int(fraction * 100):3d}% [{bar}] "
        f"{format_size(done)} / {format_size(total)}  {rate}"
    )


def format_size(count: int) -> str:
    """Bytes for people: ``512 B``, ``1.5 KiB``, ``186.3 MiB``."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} TiB"
