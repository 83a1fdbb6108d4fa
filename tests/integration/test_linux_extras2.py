"""tmpcopyup, linux.netDevices and linux.intelRdt, checked through the CLI as root."""

from __future__ import annotations

from conftest import requires_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    RunInside = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = requires_root


def test_tmpcopyup_copies_etc_into_a_tmpfs(run_inside: RunInside, busybox_rootfs: Path) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["mounts"].append(
            {"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
             "options": ["tmpcopyup", "nosuid", "nodev"]}
        )  # fmt: skip

    script = (
        "ls /etc; grep ' /etc ' /proc/self/mounts | cut -d' ' -f3; "
        "stat -c %a /etc/passwd; echo x > /etc/corral-copyup-probe && echo wrote"
    )
    lines = run_inside(script, edit=edit).stdout.split()
    assert "passwd" in lines
    assert "tmpfs" in lines
    assert oct((busybox_rootfs / "etc" / "passwd").stat().st_mode & 0o7777)[2:] in lines
    assert "wrote" in lines
    assert not (busybox_rootfs / "etc" / "corral-copyup-probe").exists()


def test_tmpcopyup_read_only(run_inside: RunInside) -> None:
    def edit(spec: dict[str, Any]) -> None:
        spec["mounts"].append(
            {"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
             "options": ["tmpcopyup", "ro"]}
        )  # fmt: skip

    out = run_inside("cat /etc/passwd >/dev/null && touch /etc/x || echo refused", edit=edit)
    assert "refused" in out.stdout
