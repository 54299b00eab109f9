"""Hugepages for new KVM guests: the path QEMU backs guest RAM with (``-mem-path``).

2.8 only warned when the path did not exist, and a guest then failed at
launch. Here ``optimize hugepages <path>`` checks, when it runs, what the
guest will need: a kernel with hugetlbfs, pages reserved, and a hugetlbfs
mount at the path; each missing piece is a clear error.
"""

from __future__ import annotations

import os

from megabus.bus.errors import CommandError


def _filesystems() -> str:
    try:
        with open("/proc/filesystems") as fh:
            return fh.read()
    except OSError:
        return ""


def reserved_pages(meminfo: str = "/proc/meminfo") -> int:
    """``HugePages_Total`` of the host (0 when unknown)."""
    try:
        with open(meminfo) as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key == "HugePages_Total":
                    return int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _mount_type(path: str) -> str:
    """The filesystem type mounted exactly at ``path`` ("" when none)."""
    real = os.path.realpath(path)
    found = ""
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) > 4 and _unescape(fields[4]) == real:
                    found = right.split()[0]  # the last mount on top wins
    except OSError:
        return ""
    return found


def _unescape(text: str) -> str:
    """mountinfo's octal escapes (``\\040`` for a space)."""
    if "\\" not in text:
        return text
    return text.encode().decode("unicode_escape")


def check(path: str) -> None:
    """Whether KVM guests can get their RAM from ``path`` (blocking: /proc reads).

    Raises:
        CommandError: what is missing, and how to provide it.
    """
    if "hugetlbfs" not in _filesystems():
        raise CommandError("hugepages: this host's kernel has no hugetlbfs")
    if reserved_pages() == 0:
        raise CommandError(
            "hugepages: none reserved on this host (HugePages_Total is 0 in /proc/meminfo; "
            "reserve some with sysctl vm.nr_hugepages=<pages>)"
        )
    if not os.path.isdir(path):
        raise CommandError(f"hugepages: {path} does not exist")
    if _mount_type(path) != "hugetlbfs":
        raise CommandError(
            f"hugepages: {path} is not a hugetlbfs mount (mount -t hugetlbfs none {path})"
        )
