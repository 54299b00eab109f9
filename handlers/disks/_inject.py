"""``disk inject`` without nbd, loop devices or mounts.

2.8 connects the image to ``/dev/nbdN``, waits for the partition devices
(retrying with backoff, #1490), mounts one and copies with ``cp -fr``. Our
machines have no nbd module, and a mount needs root and a kernel driver per
filesystem. Instead:

1. a qcow2 image is seen as raw bytes through ``qemu-storage-daemon``'s FUSE
   export (a raw image is used as it is); the export comes up
   asynchronously, so reading the partition table is retried with backoff
   as 2.8 retried finding the partition devices;
2. the partition is found in the MBR or GPT (:mod:`._partitions`): 2.8's
   rules and errors (no partition given and more than one: "please specify a
   partition"; ``:none`` for a filesystem on the whole disk);
3. the files go into the ext2/3/4 filesystem at that offset with e2fsprogs'
   ``debugfs -w`` (``image?offset=N``), parent directories created,
   directories copied recursively as ``cp -fr`` does. Other filesystems need
   a mount and are refused with a clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import AsyncIterator

from megabus.bus.errors import CommandError
from megabus.handlers.disks._partitions import Partition, partitions

logger = logging.getLogger(__name__)

#: Seconds between tries at the partition table, doubled each time (2.8: 100 ms steps, 5 s).
RETRY_FIRST = 0.1
RETRY_LIMIT = 5.0
#: Seconds the FUSE export gets to stop.
STOP_TIMEOUT = 10.0
_QCOW2_MAGIC = b"QFI\xfb"
_EXT_MAGIC = 0xEF53


def parse_image(image: str) -> tuple[str, str]:
    """``<image>[:<partition>]`` split as 2.8 does.

    Raises:
        CommandError: more than one ``:``.
    """
    if ":" not in image:
        return image, ""
    parts = image.split(":")
    if len(parts) != 2:
        raise CommandError("found way too many ':'s, expected <path/to/image>:<partition>")
    return parts[0], parts[1]


def parse_pairs(files: list[str]) -> dict[str, str]:
    """2.8's ``parseInjectPairs``: destination -> source.

    Raises:
        CommandError: a pair is not ``src:dst`` or a destination appears twice.
    """
    pairs: dict[str, str] = {}
    for arg in files:
        parts = arg.split(":")
        if len(parts) != 2:
            raise CommandError("malformed command; expected src:dst pairs")
        if parts[1] in pairs:
            raise CommandError(f"destination appears twice: `{parts[1]}`")
        pairs[parts[1]] = parts[0]
    return pairs


async def inject(image: str, partition: str, pairs: dict[str, str], work_dir: str) -> None:
    """Write ``pairs`` (destination -> local source) into ``image``'s partition.

    Raises:
        CommandError: 2.8's texts (``[image X] ...``) or what debugfs refused.
    """
    for src in pairs.values():
        if not await asyncio.to_thread(os.path.exists, src):
            raise CommandError(f"[image {image}] {src}: no such file or directory")
    async with _raw_view(image, work_dir) as raw:
        offset = await _find_partition(image, raw, partition)
        await _check_ext(image, raw, offset, partition)
        await _debugfs_write(image, raw, offset, pairs, work_dir)


@contextlib.asynccontextmanager
async def _raw_view(image: str, work_dir: str) -> AsyncIterator[str]:
    """The image as raw bytes: itself, or a qcow2 through a FUSE export."""
    try:
        magic = await asyncio.to_thread(_head, image, 4)
    except OSError as err:
        raise CommandError(f"[image {image}] {err.strerror or err}") from None
    if magic != _QCOW2_MAGIC:
        yield image
        return
    await asyncio.to_thread(os.makedirs, work_dir, exist_ok=True)
    tmp = await asyncio.to_thread(tempfile.mkdtemp, prefix="dstImg", dir=work_dir)
    raw = os.path.join(tmp, "raw")
    await asyncio.to_thread(_touch, raw)
    blockdev_file = {"driver": "file", "node-name": "file", "filename": image}
    blockdev_fmt = {"driver": "qcow2", "node-name": "fmt", "file": "file"}
    export: dict[str, object] = {
        "type": "fuse",
        "id": "exp",
        "node-name": "fmt",
        "mountpoint": raw,
        "writable": True,
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            "qemu-storage-daemon",
            "--blockdev", json.dumps(blockdev_file),
            "--blockdev", json.dumps(blockdev_fmt),
            "--export", json.dumps(export),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    except FileNotFoundError:
        await asyncio.to_thread(shutil.rmtree, tmp, True)
        raise CommandError(f"[image {image}] qemu-storage-daemon not found (qemu-utils)") from None
    try:
        await _wait_export(image, raw, proc)
        yield raw
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await asyncio.to_thread(shutil.rmtree, tmp, True)


async def _wait_export(image: str, raw: str, proc: asyncio.subprocess.Process) -> None:
    """Wait (with backoff) until the FUSE export is mounted over ``raw``."""
    delay, waited = RETRY_FIRST, 0.0
    while not await asyncio.to_thread(_mounted, raw):
        if proc.returncode is not None or waited >= RETRY_LIMIT:
            err = b""
            if proc.stderr is not None and proc.returncode is not None:
                err = await proc.stderr.read()
            text = err.decode(errors="replace").strip() or "the FUSE export did not come up"
            raise CommandError(f"[image {image}] qemu-storage-daemon: {text}")
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, 1.0)


async def _find_partition(image: str, raw: str, partition: str) -> int:
    """The byte offset of the filesystem to write (2.8's partition rules), with retries."""
    if partition == "none":
        return 0
    delay, waited = RETRY_FIRST, 0.0
    parts: list[Partition] = []
    while True:
        parts = await asyncio.to_thread(_read_partitions, raw)
        if parts or waited >= RETRY_LIMIT:
            break
        logger.debug("disk inject %s: no partitions yet, retrying in %.1fs", image, delay)
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, 1.0)
    if not parts:
        raise CommandError(f"[image {image}] no partitions found on image")
    if not partition:
        if len(parts) > 1:
            raise CommandError(f"[image {image}] please specify a partition; multiple found")
        partition = "1"
    for p in parts:
        if str(p.number) == partition:
            return p.offset
    raise CommandError(f"[image {image}] desired partition {partition} not found")


async def _check_ext(image: str, raw: str, offset: int, partition: str) -> None:
    sb = await asyncio.to_thread(_read_at, raw, offset + 1024, 64)
    if len(sb) < 58 or struct.unpack_from("<H", sb, 56)[0] != _EXT_MAGIC:
        where = f"partition {partition}" if partition not in ("", "none") else "the image"
        raise CommandError(
            f"[image {image}] {where} is not an ext2/3/4 filesystem: "
            "only those can be written without mounting"
        )


async def _debugfs_write(
    image: str, raw: str, offset: int, pairs: dict[str, str], work_dir: str
) -> None:
    script = await asyncio.to_thread(_script, pairs)
    await asyncio.to_thread(os.makedirs, work_dir, exist_ok=True)
    fd, path = await asyncio.to_thread(tempfile.mkstemp, prefix="inject", dir=work_dir)
    try:
        await asyncio.to_thread(_write_fd, fd, script.encode())
        target = f"{raw}?offset={offset}" if offset else raw
        proc = await asyncio.create_subprocess_exec(
            "debugfs", "-w", "-f", path, target,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _out, err = await proc.communicate()
    except FileNotFoundError:
        raise CommandError(f"[image {image}] debugfs not found (e2fsprogs)") from None
    finally:
        await asyncio.to_thread(_unlink, path)
    problems = [
        line
        for line in err.decode(errors="replace").splitlines()
        if line.strip()
        and not line.startswith(("debugfs ", "rm:", "mkdir:"))
        # rm of a file not there yet, mkdir of a directory already there: expected
        and "File not found by ext2_lookup" not in line
        and "directory already exists" not in line
    ]
    if proc.returncode != 0 or problems:
        text = "; ".join(problems) or f"debugfs exit status {proc.returncode}"
        raise CommandError(f"[image {image}] {text}")


def _quote(path: str) -> str:
    """A debugfs argument: double quotes, with quotes and backslashes escaped."""
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _script(pairs: dict[str, str]) -> str:
    """debugfs commands for ``cp -fr src dst`` of every pair (blocking: walks directories)."""
    lines: list[str] = []
    made: set[str] = set()

    def mkdirs(path: str) -> None:
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in made:
                made.add(d)
                lines.append(f"mkdir {_quote(d)}")

    def put(src: str, dst: str) -> None:
        lines.append(f"rm {_quote(dst)}")
        lines.append(f"write {_quote(src)} {_quote(dst)}")

    for dst, src in pairs.items():
        dst = "/" + dst.strip("/")
        if os.path.isdir(src):
            mkdirs(dst)
            for dirpath, dirs, files in os.walk(src):
                rel = os.path.relpath(dirpath, src)
                base = dst if rel == "." else f"{dst}/{rel}"
                for d in sorted(dirs):
                    mkdirs(f"{base}/{d}")
                for name in sorted(files):
                    put(os.path.join(dirpath, name), f"{base}/{name}")
        else:
            mkdirs(os.path.dirname(dst))
            put(src, dst)
    return "\n".join(lines) + "\n"


def _head(path: str, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _read_at(path: str, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def _read_partitions(path: str) -> list[Partition]:
    try:
        with open(path, "rb") as f:
            return partitions(f)
    except OSError:
        return []


def _mounted(path: str) -> bool:
    try:
        with open("/proc/self/mounts") as f:
            return any(line.split()[1] == path for line in f if len(line.split()) > 1)
    except OSError:
        return False


def _touch(path: str) -> None:
    with open(path, "wb"):
        pass


def _write_fd(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
