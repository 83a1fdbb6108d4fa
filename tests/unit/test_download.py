"""corral.image.download: fetching base.txz, its progress bar, checksum and errors.

Downloads come from an ``http.server`` on 127.0.0.1 in a thread of the test (an
ephemeral port, only the requests the test makes, shut down by the fixture or by a
watchdog after two minutes), reached through ``download_base(url=...)`` or by
pointing ``MIRROR`` at it.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import threading

import pytest

from corral.cli.args import Parsed
from corral.cli.demo_image import cmd_demo_download
from corral.image import download
from corral.image.download import (
    DownloadError,
    ProgressBar,
    base_url,
    download_base,
    format_progress,
    format_size,
    freebsd_machine,
    release_name,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

BODY = bytes(range(256)) * (12 * 1024)  # 3 MiB
BODY_SHA256 = hashlib.sha256(BODY).hexdigest()


def manifest_text(checksum: str = BODY_SHA256) -> bytes:
    lines = [
        f'base-dbg.txz\t{"0" * 64}\t100\tbase-dbg\t"Base system (Debugging)"\toff',
        f'base.txz\t{checksum}\t27436\tbase\t"Base system (MANDATORY)"\ton',
        f'kernel.txz\t{"1" * 64}\t900\tkernel\t"Kernel (MANDATORY)"\ton',
    ]
    return ("\n".join(lines) + "\n").encode()


class Route:
    """What the server answers for one path: a status, a body, a declared length."""

    def __init__(self, body: bytes, status: int = 200, length: int | None = None) -> None:
        self.body = body
        self.status = status
        self.length = len(body) if length is None else length


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = 10

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        self.send_response(route.status)
        self.send_header("Content-Length", str(route.length))
        self.end_headers()
        try:
            self.wfile.write(route.body)  # shorter than Content-Length: a cut transfer
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


class FileServer:
    def __init__(self, server: _Server) -> None:
        self.server = server
        host, port = server.server_address[:2]
        self.base = f"http://{host!s}:{port}"

    def serve(self, path: str, route: Route) -> str:
        self.server.routes[path] = route
        return self.base + path

    def release(self, directory: str, manifest: bytes | None = None) -> str:
        """Serve base.txz (and a MANIFEST) under ``directory``; return base.txz's URL."""
        if manifest is not None:
            self.serve(f"{directory}/MANIFEST", Route(manifest))
        return self.serve(f"{directory}/base.txz", Route(BODY))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.routes = {}
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    watchdog = threading.Timer(120, httpd.shutdown)
    watchdog.daemon = True
    thread.start()
    watchdog.start()
    try:
        yield FileServer(httpd)
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_downloads_and_checks_the_manifest(server: FileServer, tmp_path: Path) -> None:
    url = server.release("/r", manifest_text())
    output = tmp_path / "base.txz"
    digest = download_base("14.3", "amd64", str(output), url=url, progress=False)
    assert output.read_bytes() == BODY
    assert digest == "sha256:" + BODY_SHA256
    assert os.listdir(tmp_path) == ["base.txz"]


def test_replaces_an_existing_file(server: FileServer, tmp_path: Path) -> None:
    url = server.release("/r", manifest_text())
    output = tmp_path / "base.txz"
    output.write_bytes(b"an older download")
    download_base("14.3", "amd64", str(output), url=url, progress=False)
    assert output.read_bytes() == BODY


def test_progress_bar_format(server: FileServer, tmp_path: Path) -> None:
    url = server.release("/r", manifest_text())
    stream = io.StringIO()
    download_base("14.3", "amd64", str(tmp_path / "base.txz"), url=url, progress=stream)
    text = stream.getvalue()
    assert text.startswith("\r")
    assert text.endswith("\n")
    assert text.count("\n") == 1, "redraws stay on one line; one final newline"
    final = text.rstrip("\n").split("\r")[-1].rstrip()
    assert final.startswith("base.txz 100% [" + "#" * 24 + "] 3.0 MiB / 3.0 MiB  ")
    assert final.endswith("/s")


def test_no_progress_when_stderr_is_not_a_terminal(
    server: FileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.release("/r", manifest_text())
    download_base("14.3", "amd64", str(tmp_path / "base.txz"), url=url, progress=True)
    assert capsys.readouterr().err == ""


def test_not_found(server: FileServer, tmp_path: Path) -> None:
    url = server.base + "/releases/amd64/amd64/13.9-RELEASE/base.txz"
    output = tmp_path / "base.txz"
    stream = io.StringIO()
    with pytest.raises(DownloadError) as caught:
        download_base("13.9", "amd64", str(output), url=url, progress=stream)
    assert str(caught.value) == f"release 13.9 not found at {url}"
    assert os.listdir(tmp_path) == []
    assert stream.getvalue() == "", "no bar for a download that never started"


def test_cut_transfer_leaves_no_part_file(server: FileServer, tmp_path: Path) -> None:
    server.serve("/r/MANIFEST", Route(manifest_text()))
    url = server.serve("/r/base.txz", Route(BODY[:100_000], length=len(BODY)))
    output = tmp_path / "base.txz"
    output.write_bytes(b"keep me")
    stream = io.StringIO()
    with pytest.raises(DownloadError, match=f"ended after 100000 of {len(BODY)} bytes"):
        download_base("14.3", "amd64", str(output), url=url, progress=stream)
    assert os.listdir(tmp_path) == ["base.txz"]
    assert output.read_bytes() == b"keep me", "a failed download leaves the old file alone"
    assert stream.getvalue().endswith("\n"), "the bar's line is ended before the error"


def test_checksum_mismatch(server: FileServer, tmp_path: Path) -> None:
    url = server.release("/r", manifest_text("ab" * 32))
    with pytest.raises(DownloadError, match=f"SHA-256 {BODY_SHA256}, but its MANIFEST says"):
        download_base("14.3", "amd64", str(tmp_path / "base.txz"), url=url, progress=False)
    assert os.listdir(tmp_path) == []


def test_missing_manifest(server: FileServer, tmp_path: Path) -> None:
    url = server.release("/r", manifest=None)
    output = tmp_path / "base.txz"
    with pytest.raises(DownloadError, match=r"no MANIFEST at http://.*/r/MANIFEST"):
        download_base("14.3", "amd64", str(output), url=url, progress=False)
    assert os.listdir(tmp_path) == []
    download_base("14.3", "amd64", str(output), url=url, progress=False, verify=False)
    assert output.read_bytes() == BODY


def test_manifest_without_the_file(server: FileServer, tmp_path: Path) -> None:
    url = server.release("/r", b"kernel.txz\t" + b"1" * 64 + b'\t9\tkernel\t"K"\ton\n')
    with pytest.raises(DownloadError, match=r"lists no SHA-256 for base\.txz"):
        download_base("14.3", "amd64", str(tmp_path / "base.txz"), url=url, progress=False)


def test_server_error(server: FileServer, tmp_path: Path) -> None:
    url = server.serve("/r/base.txz", Route(b"oops", status=500))
    with pytest.raises(DownloadError, match=r"^http://.*/r/base.txz: HTTP 500 "):
        download_base("14.3", "amd64", str(tmp_path / "base.txz"), url=url, progress=False)
    assert os.listdir(tmp_path) == []


def test_unreachable_server(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/base.txz"
    with pytest.raises(DownloadError, match=f"cannot reach {url}: .*refused"):
        download_base("14.3", "amd64", str(tmp_path / "base.txz"), url=url, progress=False)


def test_unwritable_output(server: FileServer, tmp_path: Path) -> None:
    url = server.release("/r", manifest_text())
    output = tmp_path / "missing" / "base.txz"
    with pytest.raises(DownloadError, match=r"cannot write .*base\.txz\.part: No such file"):
        download_base("14.3", "amd64", str(output), url=url, progress=False)


def test_bad_url_and_release(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="http:// or https:// only"):
        download_base("14.3", "amd64", str(tmp_path / "b"), url="file:///etc/passwd")
    with pytest.raises(DownloadError, match=r'invalid release "\.\./14"'):
        download_base("../14", "amd64", str(tmp_path / "b"))
    with pytest.raises(DownloadError, match='unknown architecture "vax"'):
        download_base("14.3", "vax", str(tmp_path / "b"))
    assert os.listdir(tmp_path) == []


def test_urls() -> None:
    mirror = "https://download.freebsd.org/releases"
    assert base_url("14.3", "amd64") == f"{mirror}/amd64/amd64/14.3-RELEASE/base.txz"
    assert base_url("14.3", "x86_64") == f"{mirror}/amd64/amd64/14.3-RELEASE/base.txz"
    assert base_url("14.1", "arm64") == f"{mirror}/arm64/aarch64/14.1-RELEASE/base.txz"
    assert base_url("14.1", "aarch64") == f"{mirror}/arm64/aarch64/14.1-RELEASE/base.txz"
    assert base_url("15.0-BETA2", "riscv64") == f"{mirror}/riscv/riscv64/15.0-BETA2/base.txz"
    assert freebsd_machine("powerpc64le") == ("powerpc", "powerpc64le")
    assert release_name("14.3") == "14.3-RELEASE"
    assert release_name("14.3-RELEASE") == "14.3-RELEASE"
    for bad in ("", "x14", "14.3/..", "14 3"):
        with pytest.raises(DownloadError, match="invalid release"):
            release_name(bad)


def test_progress_bar_redraws_at_most_ten_times_a_second() -> None:
    now = [0.0]
    stream = io.StringIO()
    bar = ProgressBar(stream, "base.txz", 1000, clock=lambda: now[0])
    for step in range(1, 101):  # an update every 10 ms for one second
        now[0] = step * 0.01
        bar.update(step * 10)
    bar.finish()
    redraws = stream.getvalue().count("\r")
    assert 10 <= redraws <= 12
    final = stream.getvalue().split("\r")[-1]
    assert final == "base.txz 100% [########################] 1000 B / 1000 B  1000 B/s\n"


def test_progress_bar_blanks_a_longer_previous_line() -> None:
    now = [0.0]
    stream = io.StringIO()
    bar = ProgressBar(stream, "x", None, clock=lambda: now[0])
    now[0] = 1.0
    bar.update(5 << 20)  # "x 5.0 MiB  5.0 MiB/s"
    now[0] = 100.0
    bar.update(6 << 20)  # "x 6.0 MiB  61.4 KiB/s": one character longer
    now[0] = 200.0
    bar.update(6 << 20)  # "x 6.0 MiB  30.7 KiB/s"
    drawn = stream.getvalue().split("\r")[1:]
    assert drawn[0] == "x 5.0 MiB  5.0 MiB/s"
    assert drawn[1] == "x 6.0 MiB  61.4 KiB/s"
    assert drawn[2] == "x 6.0 MiB  30.7 KiB/s"
    bar.abort()
    assert stream.getvalue().endswith("\n")


def test_formats() -> None:
    assert format_size(0) == "0 B"
    assert format_size(1023) == "1023 B"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(195_350_000) == "186.3 MiB"
    assert format_size(3 << 30) == "3.0 GiB"
    assert format_size(5 << 40) == "5.0 TiB"
    line = format_progress("base.txz", 50, 200, 0.0)
    assert line == "base.txz  25% [######------------------] 50 B / 200 B  --/s"


def test_cli_download(
    server: FileServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.release("/releases/arm64/aarch64/14.2-RELEASE", manifest_text())
    monkeypatch.setattr(download, "MIRROR", server.base + "/releases")
    output = tmp_path / "base.txz"
    parsed = Parsed({"release": "14.2", "arch": "aarch64", "output": str(output)}, [])
    assert cmd_demo_download(parsed) == 0
    assert output.read_bytes() == BODY
    captured = capsys.readouterr()
    assert "14.2-RELEASE (aarch64)" in captured.err
    assert (
        captured.out
        == f"{output}: 3.0 MiB, sha256:{BODY_SHA256} (checked against the release's MANIFEST)\n"
    )

    missing = Parsed({"release": "13.9", "arch": "arm64", "output": str(output)}, [])
    with pytest.raises(DownloadError, match=r"^release 13.9 not found at http://"):
        cmd_demo_download(missing)
