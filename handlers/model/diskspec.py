"""Diskspecs (``vm config disks``) and minimega's file-root path rule.

A diskspec is ``<path>[,<interface>][,<cache>]``. Paths, here and in the other
path-valued ``vm config`` fields, go through :func:`check_path`: a relative
path is taken inside the file root (minimega ``-filepath``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import msgspec

from megabus.bus.errors import CommandError
from megabus.handlers.model.paths import bounded_path

logger = logging.getLogger(__name__)

#: QEMU's drive interfaces plus minimega's own ``ahci``.
INTERFACES = frozenset({"ahci", "ide", "scsi", "sd", "mtd", "floppy", "pflash", "virtio"})
CACHES = frozenset({"none", "writeback", "unsafe", "directsync", "writethrough"})
DEFAULT_INTERFACE = "ide"

_MALFORMED = "malformed diskspec"


class DiskConfig(msgspec.Struct, kw_only=True):
    """One disk of a VM's configuration."""

    path: str = ""
    #: The per-VM overlay once launched in snapshot mode.
    snapshot_path: str = ""
    interface: str = ""
    cache: str = ""
    #: The spec as typed.
    raw: str = ""

    def spec(self) -> str:
        """The canonical spec: the path, then interface and cache when set."""
        return ",".join(x for x in (self.path, self.interface, self.cache) if x)


def check_path(value: str, files_dir: str) -> str:
    """minimega's ``checkPath``: relative paths live in the file root.

    A missing file is only logged, as 2.8 does; it may be sent there later.

    Raises:
        CommandError: the path has a NUL byte or is longer than the kernel takes.
    """
    if not os.path.isabs(value):
        # filepath.Join cleans the result
        value = os.path.normpath(os.path.join(files_dir, value))
    bounded_path(value)
    if not os.path.exists(value):
        logger.warning("file does not exist: %s", value)
    return value


def parse_diskspec(spec: str, files_dir: str) -> DiskConfig:
    """Parse one diskspec, resolving its path against ``files_dir``."""
    f = spec.split(",")
    interface = cache = ""
    if len(f) == 1:
        path = f[0]
    elif len(f) == 2 and f[1] in CACHES:
        path, cache = f
    elif len(f) == 2 and f[1] in INTERFACES:
        path, interface = f
    elif len(f) == 3 and f[1] in INTERFACES and f[2] in CACHES:
        path, interface, cache = f
    else:
        raise CommandError(_MALFORMED)
    logger.debug("diskspec %r: path=%r interface=%r cache=%r", spec, path, interface, cache)
    return DiskConfig(path=check_path(path, files_dir), interface=interface, cache=cache, raw=spec)


def parse_diskspecs(specs: Sequence[str], files_dir: str) -> list[DiskConfig]:
    """Parse the disks of one VM; the same path twice is a conflict."""
    disks: list[DiskConfig] = []
    ide = 0
    for spec in specs:
        disk = parse_diskspec(spec, files_dir)
        if (disk.interface or DEFAULT_INTERFACE) == "ide":
            ide += 1
        for other in disks:
            if other.path == disk.path:
                raise CommandError(f"disk conflict: {other.path}")
        disks.append(disk)
    if ide > 3:
        logger.warning("too many IDE devices, one for cdrom and %d for disks", ide)
    return disks


def disks_string(disks: Sequence[DiskConfig]) -> str:
    """The space-separated specs of ``disks``."""
    return " ".join(d.spec() for d in disks)
