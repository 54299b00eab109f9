"""The Linux system calls containers need that Python 3.11's ``os`` lacks.

``mount``, ``umount2``, ``unshare``, ``capget``/``capset`` and ``prctl`` through
libc with ctypes. Standard library only: the container shim imports this
before it isolates itself, and nothing here may pull in the node's packages.
Every call raises :class:`OSError` with the errno, as ``os`` functions do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

# <sys/mount.h>
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SLAVE = 1 << 19
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

# <sched.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# <sys/prctl.h>
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24

_CAPV3 = 0x20080522


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    """mount(2)."""
    ret = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(ret, f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), f"umount {target}")


def unshare(flags: int) -> None:
    """unshare(2)."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def prctl(option: int, arg: int) -> None:
    """prctl(2) with one argument."""
    ret = _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), 0, 0, 0)
    _check(ret, "prctl")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def last_cap() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def limit_capabilities(keep: int) -> None:
    """Drop every capability not in the bit mask ``keep``: bounding set first, then capset.

    The bounding set is what matters for root: at ``execve`` a root process
    gets its bounding set as permitted capabilities.
    """
    for cap in range(last_cap() + 1):
        if keep & (1 << cap):
            continue
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError as err:
            if err.errno != 22:  # EINVAL: a capability this kernel lacks
                raise
    header = _CapHeader(_CAPV3, 0)
    data = (_CapData * 2)()
    for word in range(2):
        bits = (keep >> (32 * word)) & 0xFFFFFFFF
        data[word] = _CapData(bits, bits, bits)
    _check(_libc.capset(ctypes.byref(header), data), "capset")
