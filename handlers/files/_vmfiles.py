"""What a VM's launch fetches first: 2.8's pre-fetch in ``VMs.Launch``.

Disks, kernel, initrd, cdrom, migrate and preinit files and a container's
filesystem (a directory: every file below it), when they lie under the
files directory, and a qcow2 disk's backing file after the disk itself
(2.8's ``iomHelper`` does the same; the backing file must be under the
files directory too). Paths elsewhere are the user's own and used as they
are.
"""

from __future__ import annotations

import asyncio
import os
import struct
from typing import TYPE_CHECKING

from megabus.handlers.files._paths import under
from megabus.handlers.model.config import VMConfig

if TYPE_CHECKING:
    from megabus.handlers.files._engine import Files, PartProgress

#: qcow2's magic, then version, backing file offset and size (big-endian).
_QCOW2 = struct.Struct(">4sIQI")


def vm_paths(cfg: VMConfig) -> list[str]:
    """Every file path a VM config names, in 2.8's order."""
    paths = [d.path for d in cfg.disks]
    paths += [cfg.kernel, cfg.initrd, cfg.cdrom, cfg.migrate, cfg.preinit, cfg.filesystem]
    return [p for p in paths if p]


def backing_file(path: str) -> str:
    """The backing file a qcow2 image names (absolute), or ``""`` (blocking).

    Read from the header, not through ``qemu-img info``: 20 bytes need no
    process.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(_QCOW2.size)
            if len(head) < _QCOW2.size:
                return ""
            magic, _version, offset, size = _QCOW2.unpack(head)
            if magic != b"QFI\xfb" or not offset or not 0 < size <= 1023:
                return ""
            f.seek(offset)
            name = f.read(size).decode(errors="replace")
    except OSError:
        return ""
    return name if os.path.isabs(name) else os.path.join(os.path.dirname(path), name)


async def fetch_vm_files(files: Files, cfg: VMConfig, progress: PartProgress | None = None) -> None:
    """Fetch every file ``cfg`` names that lies under the files directory.

    Raises:
        CommandError: a file is nowhere in the cluster, or its transfer failed.
    """
    for path in vm_paths(cfg):
        if not under(files.root, path):
            continue
        local = await files.fetch(path, progress)
        seen = {local}
        while True:
            backing = await asyncio.to_thread(backing_file, local)
            if not backing or backing in seen or not under(files.root, backing):
                break
            seen.add(backing)
            local = await files.fetch(backing, progress)
