"""``disk inject`` without nbd: files written into ext4 partitions of qcow2 and
raw images, read back with debugfs; 2.8's errors for bad input."""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nodes import MiniNode, node_at
from procs import must, run

from megabus.bus.server import EmbeddedServer

MiB = 1024 * 1024


def write_mbr(path: Path, parts: list[tuple[int, int]]) -> None:
    """A disk of 40 MiB with MBR partitions (start, length in MiB) of type Linux."""
    with open(path, "wb") as f:
        f.truncate(40 * MiB)
        mbr = bytearray(512)
        for i, (start, length) in enumerate(parts):
            entry = struct.pack(
                "<B3sB3sII", 0, b"\0" * 3, 0x83, b"\0" * 3, start * 2048, length * 2048
            )
            mbr[446 + 16 * i : 462 + 16 * i] = entry
        mbr[510:512] = b"\x55\xaa"
        f.write(mbr)


async def mkfs(path: Path, offset_mib: int, size_mib: int) -> None:
    await must(
        "mkfs.ext4", "-q", "-F", "-E", f"offset={offset_mib * MiB}", str(path), f"{size_mib}M"
    )


async def cat(image: Path, offset_mib: int, path: str) -> str:
    target = f"{image}?offset={offset_mib * MiB}" if offset_mib else str(image)
    code, out = await run("debugfs", "-R", f"cat {path}", target)
    assert code == 0, out
    # debugfs prints its banner on stderr, merged here: drop it
    return "".join(
        line for line in out.splitlines(keepends=True) if not line.startswith("debugfs ")
    )


@pytest.fixture
async def dnode(tmp_path: Path) -> AsyncIterator[tuple[MiniNode, Path]]:
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "disk", base=tmp_path / "base") as n,
    ):
        files = Path(n.state.settings.files_dir)
        os.makedirs(files, exist_ok=True)
        yield n, files


async def test_inject_two_files_into_a_qcow2_partition(dnode: tuple[MiniNode, Path]) -> None:
    node, files = dnode
    raw = files / "disk.raw"
    write_mbr(raw, [(1, 30)])
    await mkfs(raw, 1, 30)
    await must("qemu-img", "convert", "-O", "qcow2", str(raw), str(files / "disk.qcow2"))
    (files / "hello.txt").write_text("hello\n")
    (files / "conf").mkdir()
    (files / "conf" / "a.conf").write_text("a=1\n")
    (files / "conf" / "sub").mkdir()
    (files / "conf" / "sub" / "b.conf").write_text("b=2\n")
    assert await node.errors("disk inject disk.qcow2 files hello.txt:/etc/motd conf:/etc/app") == []
    back = files / "back.raw"
    await must("qemu-img", "convert", "-O", "raw", str(files / "disk.qcow2"), str(back))
    assert await cat(back, 1, "/etc/motd") == "hello\n"
    assert await cat(back, 1, "/etc/app/a.conf") == "a=1\n"
    assert await cat(back, 1, "/etc/app/sub/b.conf") == "b=2\n"
    # injecting again replaces the file (cp -f)
    (files / "hello.txt").write_text("again\n")
    assert await node.errors("disk inject disk.qcow2:1 files hello.txt:/etc/motd") == []
    await must("qemu-img", "convert", "-O", "raw", str(files / "disk.qcow2"), str(back))
    assert await cat(back, 1, "/etc/motd") == "again\n"


async def test_inject_into_a_raw_image_without_partitions(dnode: tuple[MiniNode, Path]) -> None:
    node, files = dnode
    img = files / "whole.img"
    await must("truncate", "-s", "20M", str(img))
    await must("mkfs.ext4", "-q", "-F", str(img))
    (files / "x").write_text("x\n")
    assert await node.errors("disk inject whole.img:none files x:/x") == []
    assert await cat(img, 0, "/x") == "x\n"
    # without :none the image has no partition table: 2.8's error
    assert await node.errors("disk inject whole.img files x:/x") == [
        f"[image {img}] no partitions found on image"
    ]


async def test_partition_rules_and_bad_input_get_2_8s_errors(dnode: tuple[MiniNode, Path]) -> None:
    node, files = dnode
    two = files / "two.raw"
    write_mbr(two, [(1, 10), (12, 10)])
    await mkfs(two, 1, 10)
    (files / "f").write_text("f\n")
    assert await node.errors("disk inject two.raw files f:/f") == [
        f"[image {two}] please specify a partition; multiple found"
    ]
    assert await node.errors("disk inject two.raw:3 files f:/f") == [
        f"[image {two}] desired partition 3 not found"
    ]
    assert await node.errors("disk inject two.raw:2 files f:/f") == [
        f"[image {two}] partition 2 is not an ext2/3/4 filesystem: "
        "only those can be written without mounting"
    ]
    assert await node.errors("disk inject two.raw:1:2 files f:/f") == [
        "found way too many ':'s, expected <path/to/image>:<partition>"
    ]
    assert await node.errors("disk inject two.raw:1 files f") == [
        "malformed command; expected src:dst pairs"
    ]
    assert await node.errors("disk inject two.raw:1 files f:/a f:/a") == [
        "destination appears twice: `/a`"
    ]
    assert await node.errors("disk inject two.raw:1 files nothere:/a") == [
        f"[image {two}] {files / 'nothere'}: no such file or directory"
    ]
    assert await node.errors('disk inject two.raw:1 options "-t vfat" files f:/f') == [
        f"[image {two}] vfat: only ext2/3/4 filesystems can be written"
    ]
    assert await node.errors('disk inject two.raw:1 options "-o rw" files f:/f') == []
    assert await cat(two, 1, "/f") == "f\n"
