"""``--log`` and ``--log-format``: where error and debug lines go, in runc's formats.

containerd's runc shim passes ``--log <file> --log-format json`` and, when a call
fails, reads that file for the error: each line is one JSON object with ``level``,
``msg`` and ``time`` (RFC 3339), as logrus writes them. The text format is
logrus's ``time="..." level=error msg="..."``. Errors also go to stderr as one
``corral: <message>`` line, which is what a person reads; that line is written with
:func:`corral.core.fastos.tell`, which survives a stderr that takes nothing.
"""

from __future__ import annotations

from corral.core import fastos


class Logger:
    __slots__ = ("debug_enabled", "format", "path")

    def __init__(self, path: str = "", format: str = "text", debug: bool = False) -> None:
        self.path = path
        self.format = format
        self.debug_enabled = debug

    def error(self, message: str) -> None:
        # The log first: it is what the shim reads, and stderr may take nothing.
        if self.path:
            self._write("error", message)
        fastos.tell(f"corral: {message}\n")

    def warning(self, message: str) -> None:
        if self.path:
            self._write("warning", message)
        fastos.tell(f"corral: warning: {message}\n")

    def debug(self, message: str) -> None:
        if not self.debug_enabled:
            return
        if self.path:
            self._write("debug", message)
        else:
            fastos.tell(f"corral: debug: {message}\n")

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
            fastos.tell(f"corral: cannot open log {self.path}: {error.strerror}\n")
            return
        try:
            fastos.write(fd, (line + "\n").encode())
        finally:
            fastos.close(fd)
