"""Where a partition starts: the MBR and GPT tables read from the image's bytes.

Hand-written (about forty lines of ``struct``) because no tool here does it
without nbd or a loop device: ``sfdisk`` and ``parted`` are not installed,
and the formats are fixed by the UEFI and IBM PC specifications.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

SECTOR = 512
_MBR_ENTRY = struct.Struct("<B3sB3sII")
_GPT_HEADER = struct.Struct("<8s4sII4xQQQQ16sQIII")
_GPT_ENTRY_HEAD = struct.Struct("<16s16sQQ")
_PROTECTIVE = 0xEE
_EXTENDED = {0x05, 0x0F, 0x85}


@dataclass(frozen=True)
class Partition:
    """One partition: its number (from 1), first byte and length in bytes."""

    number: int
    offset: int
    size: int


def partitions(f: BinaryIO) -> list[Partition]:
    """The primary partitions of an MBR disk, or every partition of a GPT one."""
    f.seek(0)
    mbr = f.read(SECTOR)
    if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
        return []
    out: list[Partition] = []
    for i in range(4):
        _boot, _chs1, kind, _chs2, start, count = _MBR_ENTRY.unpack_from(mbr, 446 + 16 * i)
        if kind == _PROTECTIVE:
            return _gpt(f)
        if kind and kind not in _EXTENDED and count:
            out.append(Partition(i + 1, start * SECTOR, count * SECTOR))
    return out


def _gpt(f: BinaryIO) -> list[Partition]:
    f.seek(SECTOR)
    head = f.read(_GPT_HEADER.size)
    if len(head) < _GPT_HEADER.size:
        return []
    sig, *_rest = _GPT_HEADER.unpack(head)
    if sig != b"EFI PART":
        return []
    entries_lba, count, entry_size = _GPT_HEADER.unpack(head)[9:12]
    if not 0 < count <= 1024 or not _GPT_ENTRY_HEAD.size <= entry_size <= 4096:
        return []
    f.seek(entries_lba * SECTOR)
    table = f.read(count * entry_size)
    out = []
    for i in range(count):
        raw = table[i * entry_size : i * entry_size + _GPT_ENTRY_HEAD.size]
        if len(raw) < _GPT_ENTRY_HEAD.size:
            break
        kind, _uid, first, last = _GPT_ENTRY_HEAD.unpack(raw)
        if kind != bytes(16) and last >= first:
            out.append(Partition(i + 1, first * SECTOR, (last - first + 1) * SECTOR))
    return out
