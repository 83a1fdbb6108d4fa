"""``process.rlimits``: the type table, the check, and prlimit calls in config order."""

from __future__ import annotations

import os
import resource

import pytest

from corral.errors import ConfigError, CreateError
from corral.linux.rlimits import RLIMITS, apply_rlimits, check_rlimits
from corral.linux.syscalls import Syscalls
from corral.spec.model import Rlimit


def test_table_agrees_with_python() -> None:
    # Python's resource module lacks RLIMIT_LOCKS; where it has a name, it must agree.
    for name, number in RLIMITS.items():
        assert getattr(resource, name, number) == number, name
    known = {n for n in dir(resource) if n.startswith("RLIMIT_") and n != "RLIMIT_OFILE"}
    assert known <= set(RLIMITS)


HEADER = "/usr/include/asm-generic/resource.h"


@pytest.mark.skipif(not os.path.exists(HEADER), reason=f"{HEADER} is not installed")
def test_table_is_the_kernel_header() -> None:
    defined = {}
    with open(HEADER) as f:
        for line in f:
            words = line.replace("#", "# ", 1).split()
            if words[:2] == ["#", "define"] and words[2].startswith("RLIMIT_"):
                defined[words[2]] = int(words[3])
    assert defined == RLIMITS


def test_known_types_pass() -> None:
    check_rlimits([Rlimit("RLIMIT_NOFILE", 1, 2), Rlimit("RLIMIT_RTTIME", 0, 0)])


def test_unknown_type_names_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        check_rlimits([Rlimit("RLIMIT_NOFILE", 1, 2), Rlimit("RLIMIT_NOFILES", 1, 2)])
    assert info.value.path == "process.rlimits[1].type"
    assert info.value.message == 'unknown rlimit "RLIMIT_NOFILES"'


class RecordingPrlimit:
    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[tuple[int, int, int]] = []
        self.fail_on = fail_on

    def prlimit(self, resource: int, soft: int, hard: int) -> None:
        if resource == self.fail_on:
            raise PermissionError(1, "Operation not permitted")
        self.calls.append((resource, soft, hard))


def test_apply_sets_each_limit_in_order() -> None:
    fake = RecordingPrlimit()
    apply_rlimits(
        fake,  # type: ignore[arg-type]
        [Rlimit("RLIMIT_NOFILE", 1024, 4096), Rlimit("RLIMIT_CORE", 0, 2**64 - 1)],
    )
    assert fake.calls == [(7, 1024, 4096), (4, 0, 2**64 - 1)]


def test_apply_failure_names_the_limit() -> None:
    fake = RecordingPrlimit(fail_on=6)
    limits = [Rlimit("RLIMIT_NOFILE", 10, 20), Rlimit("RLIMIT_NPROC", 5, 99)]
    with pytest.raises(CreateError) as info:
        apply_rlimits(fake, limits)  # type: ignore[arg-type]
    assert str(info.value) == (
        "process.rlimits[1]: setting RLIMIT_NPROC to soft 5, hard 99: Operation not permitted"
    )


def test_apply_for_real_in_a_child() -> None:
    # Lowering limits needs no privilege; a child keeps the test process untouched.
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            apply_rlimits(
                Syscalls(),
                [Rlimit("RLIMIT_NOFILE", 100, 200), Rlimit("RLIMIT_CORE", 0, 0)],
            )
            got = resource.getrlimit(resource.RLIMIT_NOFILE) + resource.getrlimit(
                resource.RLIMIT_CORE
            )
            os.write(write_fd, repr(got).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        answer = f.read()
    os.waitpid(pid, 0)
    assert answer == repr((100, 200, 0, 0))
