"""``--log`` and ``--log-format``: where error and debug lines go, in runc's formats.

containerd's runc shim passes ``--log <file> --log-format json`` and, when a call
fails, reads that file for the error: each line is one JSON object with ``level``,
``msg`` and ``time`` (RFC 3339), as logrus writes them. The text format is
logrus's ``time="..." level=error msg="..."``. Errors also go to stderr as one
``corral: <message>`` line, which is what a person reads.
"""

from __future__ import annotations

import sys

from corral.core import fastos


class Logger:
    __slots__ = ("debug_enabled", "format", "path")

    def __init__(self, path: str = "", format: str = "text", debug: bool = False) -> None:
        self.path = path
        self.format = format
        self.debug_enabled = debug

    def error(self, message: str) -> None:
        sys.stderr.write(f"corral: {message}\n")
        sys.stderr.flush()
        if self.path:
            self._write("error", message)

    def warning(self, message: str) -> None:
        sys.stderr.write(f"corral: warning: {message}\n")
        if self.path:
            self._write("warning", message)

    def debug(self, message: str) -> None:
        if not self.debug_enabled:
            return
        if self.path:
            self._write("debug", message)
        else:
            sys.stderr.write(f"corral: debug: {message}\n")

    def _write(self, level: str, message: str) -> None:
        import time

        from corral.core import jsonio

        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.format == "json":
            line = jsonio.dumps({"level": level, "msg": message, "time": stamp})
        else:
            line = f"time={jsonio.dumps(stamp)} level={level} msg={jsonio.dumps(message)}"
        try:
            fd = fastos.open(
                self.path,
                fastos.O_WRONLY | fastos.O_APPEND | fastos.O_CREAT | fastos.O_CLOEXEC,
                0o640,
            )
        except OSError as error:
            sys.stderr.write(f"corral: cannot open log {self.path}: {error.strerror}\n")
            return
        try:
            fastos.write(fd, (line + "\n").encode())
        finally:
            fastos.close(fd)
