"""The mount table of a process, from ``/proc/<pid>/mountinfo`` (proc(5)).

Each line is ``id parent major:minor root mount-point options [optional...] - fstype
source super-options``: a variable number of optional fields (``shared:5``) ends at a
lone ``-``, after which come the filesystem type, the source and the superblock's
options. Paths are written with space, tab, newline and backslash as octal escapes
(``\\040``), undone here.

:func:`parse` gives ``(mount point, root, fstype, super options)`` per mount, in the
table's order (parents before the mounts on top of them). The rootfs code reads it to
find what is mounted where, the cgroup code to find the cgroup hierarchies, the Intel
RDT code to find resctrl.
"""

from __future__ import annotations


def parse(text: str) -> list[tuple[str, str, str, str]]:
    """``(mount point, root, fstype, super options)`` of each well-formed line."""
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            dash = fields.index("-", 6)  # the fixed fields are 0-5
        except ValueError:
            continue
        if len(fields) < dash + 2:
            continue
        super_options = fields[dash + 3] if len(fields) > dash + 3 else ""
        entries.append((unescape(fields[4]), unescape(fields[3]), fields[dash + 1], super_options))
    return entries


def read(path: str = "/proc/self/mountinfo") -> list[tuple[str, str, str, str]]:
    """:func:`parse` of the file at ``path`` (names that are not UTF-8 kept as
    surrogate escapes, so that they round-trip to the kernel)."""
    with open(path, "rb") as file:
        return parse(file.read().decode("utf-8", "surrogateescape"))


def unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` for a space)."""
    if "\\" not in field:
        return field
    out = []
    index = 0
    while index < len(field):
        if field[index] == "\\" and field[index + 1 : index + 4].isdigit():
            out.append(chr(int(field[index + 1 : index + 4], 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)
