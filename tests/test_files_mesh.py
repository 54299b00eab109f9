"""Files across the cluster (2.8's iomeshage): three real nodes on one real
nats-server, each with its own files directory."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from meshnodes import Cluster, cluster

from megabus.handlers.files import digest_file
from megabus.handlers.node.dispatch import Dispatcher
from megabus.handlers.node.state import NodeState

#: The large file of these tests (the bench moves 200 MB and 1 GB).
BIG = 50 * 1024 * 1024
#: Bounded waits: this many tries, POLL seconds apart.
TRIES = 1200
POLL = 0.05


def state_of(c: Cluster, node: str) -> NodeState:
    executor = c.nodes[node].executor
    assert isinstance(executor, Dispatcher)
    return executor.state


def files_of(c: Cluster, node: str) -> Path:
    return Path(c.nodes[node].settings.files_dir)


def write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * 1024 * 1024)
            f.write(os.urandom(n))
            left -= n


def rot(path: Path, offset: int) -> None:
    """Overwrite bytes of ``path`` keeping its size and modification time."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\0" * 4096)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


async def status_rows(c: Cluster, node: str) -> list[list[str]]:
    resp = (await c.ok(node, "file status"))[0]
    assert resp.header == ["filename", "tempdir", "completed", "queued"]
    return resp.tabular or []


async def wait_transfers_done(c: Cluster, node: str) -> list[list[str]]:
    """Every ``file status`` table seen until the node has no transfer left."""
    seen: list[list[str]] = []
    for _ in range(TRIES):
        rows = await status_rows(c, node)
        if not rows:
            return seen
        seen.extend(rows)
        await asyncio.sleep(POLL)
    raise AssertionError(f"{node}: transfers still running: {seen[-3:]}")


async def test_a_large_file_on_one_node_is_fetched_by_the_other_two(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, ["fa", "fb", "fc"], hash_files=True) as c:
        src = files_of(c, "fa") / "images" / "big.img"
        await asyncio.to_thread(write_random, src, BIG)
        os.chmod(src, 0o640)
        want = (await asyncio.to_thread(digest_file, str(src))).hash
        # file get returns once the transfer is queued (non-blocking, as 2.8)
        await c.ok("fb", "file get images/big.img")
        await c.ok("fc", "file get /images/big.img")
        seen = await wait_transfers_done(c, "fb") + await wait_transfers_done(c, "fc")
        for row in seen:
            assert row[0] == "images/big.img"
            assert os.path.basename(row[1]).startswith("transfer_")
            done, total = row[2].split("/")
            assert total == "5"
            assert 0 <= int(done) <= 5
            assert row[3] in ("true", "false")
        for node in ("fb", "fc"):
            got = files_of(c, node) / "images" / "big.img"
            assert got.stat().st_size == BIG
            assert (got.stat().st_mode & 0o777) == 0o640
            assert (await asyncio.to_thread(digest_file, str(got))).hash == want
            # no temporary directory is left behind
            assert not [p for p in files_of(c, node).iterdir() if p.name.startswith("transfer_")]
        # the hash column (-hashfiles) is the same on every node
        for node in ("fa", "fb", "fc"):
            for _ in range(TRIES):
                resp = (await c.ok(node, "file list images"))[0]
                if resp.tabular and resp.tabular[0][4]:
                    break
                await asyncio.sleep(POLL)
            assert resp.header == ["dir", "name", "size", "modified", "hash"]
            assert resp.tabular is not None
            assert resp.tabular[0][1:3] == ["images/big.img", str(BIG)]
            assert resp.tabular[0][4] == want


async def test_get_of_a_directory_and_a_glob_fetches_every_file(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, ["ga", "gb"]) as c:
        root = files_of(c, "ga")
        (root / "d" / "sub").mkdir(parents=True)
        (root / "d" / "one.txt").write_text("one\n")
        (root / "d" / "sub" / "two.txt").write_text("two\n")
        (root / "d" / "empty").write_bytes(b"")
        (root / "x1.iso").write_bytes(b"1" * 1000)
        (root / "x2.iso").write_bytes(b"2" * 1000)
        await c.ok("gb", "file get d")
        await c.ok("gb", "file get x*.iso")
        await wait_transfers_done(c, "gb")
        got = files_of(c, "gb")
        assert (got / "d" / "one.txt").read_text() == "one\n"
        assert (got / "d" / "sub" / "two.txt").read_text() == "two\n"
        assert (got / "d" / "empty").read_bytes() == b""
        assert (got / "x1.iso").read_bytes() == b"1" * 1000
        assert (got / "x2.iso").read_bytes() == b"2" * 1000


async def test_bad_names_are_refused_and_missing_files_are_2_8s_error(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, ["ba", "bb"]) as c:
        (files_of(c, "ba") / "there").write_text("x")
        assert await c.errors("bb", "file get ../../etc/passwd") == [
            "get ../../etc/passwd: outside of the files directory"
        ]
        assert await c.errors("bb", "file get nothere") == ["get nothere: file not found"]
        # an absolute path outside the files directory is rooted in it, as 2.8 does:
        # no node has <files>/etc/passwd
        assert await c.errors("bb", "file get /etc/passwd") == ["get /etc/passwd: file not found"]
        assert not (files_of(c, "bb") / "etc").exists()
        # the node keeps serving
        await c.ok("bb", "file get there")
        await wait_transfers_done(c, "bb")
        assert (files_of(c, "bb") / "there").read_text() == "x"


async def test_a_single_node_mesh_returns_at_once(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["solo"]) as c:
        # 2.8's #1498: nothing to fetch from, no error even for a missing file
        assert await c.errors("solo", "file get missing") == []
        assert await status_rows(c, "solo") == []


async def test_a_corrupt_part_is_detected_and_the_file_never_appears(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, ["ca", "cb"]) as c:
        src = files_of(c, "ca") / "disk.img"
        await asyncio.to_thread(write_random, src, 12 * 1024 * 1024)
        # the source hashes its file, then its bytes rot without a change of
        # size or time (a bad disk): what it serves no longer matches the hash
        entries = await state_of(c, "ca").files.server.entries("disk.img")
        assert len(entries) == 1
        await asyncio.to_thread(rot, src, 11 * 1024 * 1024)
        errors = await c.errors("cb", "file stream disk.img")
        assert len(errors) == 1
        assert errors[0].startswith("get disk.img: part 1: hash mismatch"), errors
        assert not (files_of(c, "cb") / "disk.img").exists()
        assert not [p for p in files_of(c, "cb").iterdir() if p.name.startswith("transfer_")]
