"""Files across the cluster (2.8's iomeshage): three real nodes on one real
nats-server, each with its own files directory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from meshnodes import HEARTBEAT, Cluster, cluster, start_node
from nats.aio.msg import Msg
from natsd import free_port
from noderecovery import MEGABUS

from megabus.bus.codec import decode, encode
from megabus.bus.errors import BusDecodeError, CommandError
from megabus.bus.messages import (
    ErrorReply,
    FileChunk,
    FileChunkRequest,
    FileEntry,
    FileInfoReply,
    FilePartHave,
    FilePartQuery,
    Heartbeat,
)
from megabus.bus.server import EmbeddedServer
from megabus.handlers.files import PART_SIZE, Transfer, digest_file
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
        (root / "d" / "proc").mkdir()  # empty directories travel too
        (root / "d" / "sh").symlink_to("one.txt")  # links stay links
        (root / "d" / "abs").symlink_to("/etc/passwd")  # never followed
        (root / "x1.iso").write_bytes(b"1" * 1000)
        (root / "x2.iso").write_bytes(b"2" * 1000)
        await c.ok("gb", "file get d")
        await c.ok("gb", "file get x*.iso")
        await wait_transfers_done(c, "gb")
        got = files_of(c, "gb")
        assert (got / "d" / "one.txt").read_text() == "one\n"
        assert (got / "d" / "sub" / "two.txt").read_text() == "two\n"
        assert (got / "d" / "empty").read_bytes() == b""
        assert (got / "d" / "proc").is_dir()
        assert os.readlink(got / "d" / "sh") == "one.txt"
        assert os.readlink(got / "d" / "abs") == "/etc/passwd"
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


@contextlib.asynccontextmanager
async def node_process(
    url: str, base: Path, name: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A node in its own process (so that a test can kill it); stopped at the end."""
    info = base / "megabus.json"
    with contextlib.suppress(FileNotFoundError):
        info.unlink()  # a killed node leaves its own behind
    proc = await asyncio.create_subprocess_exec(
        MEGABUS, "node", "-name", name, "-nats", url, "-base", str(base),
        "-heartbeat", str(HEARTBEAT), "-level", "error",
        stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(TRIES):
            if info.exists() or proc.returncode is not None:
                break
            await asyncio.sleep(POLL)
        assert info.exists(), f"node {name} did not start (status {proc.returncode})"
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_a_source_killed_mid_transfer_and_the_file_comes_from_another(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, ["kb", "kc"]) as c:
        base = tmp_path / "ka"
        src = base / "files" / "big.img"
        await asyncio.to_thread(write_random, src, BIG)
        copy = files_of(c, "kb") / "big.img"
        await asyncio.to_thread(shutil.copyfile, src, copy)
        want = (await asyncio.to_thread(digest_file, str(src))).hash
        async with node_process(c.url, base, "ka") as ka:
            await c.settle(["ka", "kb", "kc"])
            await c.ok("kc", "file get big.img")
            # both ka and kb offered it; the transfer is under way when ka dies
            rows = await status_rows(c, "kc")
            assert len(rows) == 1
            assert rows[0][2] != "5/5"
            ka.kill()
            await ka.wait()
            await wait_transfers_done(c, "kc")
        got = files_of(c, "kc") / "big.img"
        assert (await asyncio.to_thread(digest_file, str(got))).hash == want


async def test_a_fetching_node_killed_mid_transfer_resumes_when_it_restarts(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, ["ra"]) as c:
        src = files_of(c, "ra") / "big.img"
        await asyncio.to_thread(write_random, src, BIG)
        want = (await asyncio.to_thread(digest_file, str(src))).hash
        base = tmp_path / "rb"
        files = base / "files"
        async with node_process(c.url, base, "rb") as rb:
            await c.settle(["ra", "rb"])
            await c.ok("rb", "file get big.img")
            # the temporary directory records the transfer before get returns
            temps = [p for p in files.iterdir() if p.name.startswith("transfer_")]
            assert len(temps) == 1
            assert (temps[0] / "state.json").is_file()
            rb.kill()
            await rb.wait()
        assert not (files / "big.img").exists()
        async with node_process(c.url, base, "rb"):
            for _ in range(TRIES):
                if (files / "big.img").exists():
                    break
                await asyncio.sleep(POLL)
            got = files / "big.img"
            assert (await asyncio.to_thread(digest_file, str(got))).hash == want
            assert not [p for p in files.iterdir() if p.name.startswith("transfer_")]


async def test_a_file_that_changes_while_served_is_refused_not_mixed(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, ["wa", "wb"]) as c:
        src = files_of(c, "wa") / "moving.img"
        await asyncio.to_thread(write_random, src, 3 * 1024 * 1024)
        # the version wb was told about, then a new one under the same name
        entry = (await state_of(c, "wa").files.server.entries("moving.img"))[0]
        await asyncio.to_thread(write_random, src, 3 * 1024 * 1024)
        os.utime(src, ns=(entry.mtime_ns + 10**9, entry.mtime_ns + 10**9))
        files = state_of(c, "wb").files
        t = await files._queue_transfer("moving.img", entry, {"wa": entry}, done=set(), tempdir="")
        with pytest.raises(CommandError) as err:
            await t.finished
        assert "moving.img: changed on wa" in str(err.value)
        assert not (files_of(c, "wb") / "moving.img").exists()
        # asked again, wb gets the new version whole
        await c.ok("wb", "file get moving.img")
        await wait_transfers_done(c, "wb")
        got = files_of(c, "wb") / "moving.img"
        assert got.read_bytes() == src.read_bytes()


async def test_hashfiles_follows_the_directory(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["ha"], hash_files=True) as c:
        root = files_of(c, "ha")
        index = state_of(c, "ha").files.index

        async def hash_column(name: str) -> str:
            resp = (await c.ok("ha", "file list / recursive"))[0]
            return {r[1]: r[4] for r in resp.tabular or []}.get(name, "-")

        async def until_hash(name: str, want: str) -> None:
            for _ in range(TRIES):
                if await hash_column(name) == want:
                    return
                await asyncio.sleep(POLL)
            raise AssertionError(f"{name}: hash {await hash_column(name)!r}, want {want!r}")

        (root / "a.txt").write_bytes(b"hello")
        # 2.8's murmur3-64 of "hello"
        await until_hash("a.txt", "cbd8a7b341bd9b02")
        (root / "a.txt").write_bytes(b"hello again")
        await until_hash("a.txt", digest_file(str(root / "a.txt")).hash)
        (root / "a.txt").unlink()
        for _ in range(TRIES):
            if "a.txt" not in index._digests:
                break
            await asyncio.sleep(POLL)
        assert "a.txt" not in index._digests
        # transfers' temporary files are never hashed
        (root / "transfer_x").mkdir()
        (root / "transfer_x" / "data").write_bytes(b"partial")
        (root / "b.txt").write_bytes(b"b")
        await until_hash("b.txt", digest_file(str(root / "b.txt")).hash)
        assert not [k for k in index._digests if k.startswith("transfer_")]


async def test_headnode_with_hashfiles_prefers_the_head_copy(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["hd"], hash_files=True) as c:
        c.nodes["hm"] = await start_node(nats_url, tmp_path, "hm", hash_files=True, log_node="hd")
        c.nodes["hx"] = await start_node(nats_url, tmp_path, "hx", hash_files=True)
        await c.settle()
        (files_of(c, "hd") / "cfg").write_text("head's\n")
        (files_of(c, "hx") / "cfg").write_text("newer elsewhere\n")
        (files_of(c, "hm") / "cfg").write_text("mine\n")
        # with -headnode, a local copy whose hash differs from the head's is replaced
        await c.ok("hm", "file get cfg")
        await wait_transfers_done(c, "hm")
        assert (files_of(c, "hm") / "cfg").read_text() == "head's\n"
        # without it (-hashfiles alone) the newest version wins for a node that has none
        (files_of(c, "hd") / "other").write_text("old\n")
        os.utime(files_of(c, "hd") / "other", (1, 1))
        (files_of(c, "hx") / "other").write_text("new\n")
        c.nodes["hn"] = await start_node(nats_url, tmp_path, "hn", hash_files=True)
        await c.settle()
        await c.ok("hn", "file get other")
        await wait_transfers_done(c, "hn")
        assert (files_of(c, "hn") / "other").read_text() == "new\n"


async def test_bad_requests_to_a_file_server_get_error_replies(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, ["sa"]) as c:
        root = files_of(c, "sa")
        (root / "ok.txt").write_text("fine")
        (root / "escape").symlink_to("/etc/passwd")
        nc, subjects = c.client.nc, c.client.subjects

        async def ask(data: bytes) -> str:
            reply = await nc.request(subjects.node_file("sa"), data, timeout=10)
            return decode(reply.data, ErrorReply).error

        assert (await ask(b"\xff not json")).startswith("bad chunk request: ")
        st = (root / "ok.txt").stat()

        def chunk(name: str, offset: int = 0, length: int = 4) -> bytes:
            req = FileChunkRequest(
                name=name, offset=offset, length=length, size=st.st_size, mtime_ns=st.st_mtime_ns
            )
            return encode(req)[0]

        assert await ask(chunk("../../etc/passwd")) == (
            "get ../../etc/passwd: outside of the files directory"
        )
        assert await ask(chunk("escape")) == "escape: not served"
        assert await ask(chunk("transfer_x/data")) == "transfer_x/data: not served"
        assert await ask(chunk("ok.txt", length=1 << 30)) == f"ok.txt: bad range 0+{1 << 30}"
        info = await nc.request(subjects.file_info(), b"[]", timeout=10)
        assert decode(info.data, ErrorReply).error.startswith("bad info request: ")
        # and it still serves
        good = await nc.request(subjects.node_file("sa"), chunk("ok.txt"), timeout=10)
        assert decode(good.data, FileChunk).data == b"fine"


async def test_a_transfer_survives_a_nats_server_restart(tmp_path: Path) -> None:
    port = free_port()
    server = EmbeddedServer(tmp_path / "nats", port=port)
    await server.start()
    try:
        async with cluster(server.client_url, tmp_path, ["na", "nb"]) as c:
            src = files_of(c, "na") / "big.img"
            await asyncio.to_thread(write_random, src, BIG)
            want = (await asyncio.to_thread(digest_file, str(src))).hash
            await c.ok("nb", "file get big.img")
            # the server freezes at once (mid-transfer), then dies and comes back
            assert server.pid is not None
            os.kill(server.pid, signal.SIGSTOP)
            rows = state_of(c, "nb").files.status()
            assert len(rows) == 1
            assert rows[0][2] != "5/5"
            os.kill(server.pid, signal.SIGKILL)
            await server.stop()
            server = EmbeddedServer(tmp_path / "nats", port=port)
            await server.start()
            got = files_of(c, "nb") / "big.img"
            for _ in range(TRIES * 2):
                if got.exists():
                    break
                await asyncio.sleep(POLL)
            assert (await asyncio.to_thread(digest_file, str(got))).hash == want
    finally:
        await server.stop()


async def test_entries_naming_places_outside_the_files_directory_are_ignored(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, ["ea", "eb"]) as c:
        bus = c.client
        # a rogue member of the mesh: it beats, and answers info requests with bad entries
        beat = Heartbeat(node="rogue", version="x", uptime=1.0, interval=60.0)
        await bus.publish(bus.subjects.heartbeat("rogue"), beat)
        bad = [
            FileEntry(name="../../evil", size=3, parts=["0"]),
            FileEntry(name="/abs/evil", size=3, parts=["0"]),
            FileEntry(name="transfer_x/evil", size=3, parts=["0"]),
            FileEntry(name="x", size=3, parts=[]),  # parts that do not fit the size
        ]

        async def answer(msg: Msg) -> None:
            await bus.publish(msg.reply, FileInfoReply(node="rogue", files=bad))

        sub = await bus.nc.subscribe(bus.subjects.file_info(), cb=answer)
        try:
            await bus.nc.flush()
            for _ in range(TRIES):
                live = state_of(c, "eb").membership
                if live is not None and "rogue" in live.live():
                    break
                await asyncio.sleep(POLL)
            assert await c.errors("eb", "file get x") == ["get x: file not found"]
        finally:
            await sub.unsubscribe()
        assert not (tmp_path / "evil").exists()
        assert not (tmp_path / "eb" / "evil").exists()
        assert state_of(c, "eb").files.transfers == {}


async def test_gets_of_one_file_at_once_make_one_transfer(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["oa", "ob"]) as c:
        src = files_of(c, "oa") / "disk.img"
        await asyncio.to_thread(write_random, src, 12 * 1024 * 1024)
        files = state_of(c, "ob").files
        # as when several launches name one disk: every caller waits for the one transfer
        seen: set[str] = set()
        fetches = asyncio.gather(*(files.fetch("disk.img") for _ in range(5)))
        while not fetches.done():
            seen.update([p.name for p in files_of(c, "ob").glob("transfer_*")])
            await asyncio.sleep(0.005)
        paths = await fetches
        assert len(seen) == 1  # one temporary directory: one transfer
        assert set(paths) == {str(files_of(c, "ob") / "disk.img")}
        assert (files_of(c, "ob") / "disk.img").read_bytes() == src.read_bytes()
        assert not [p for p in files_of(c, "ob").iterdir() if p.name.startswith("transfer_")]


async def test_a_stopped_node_resumes_with_the_parts_it_had(
    nats_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with cluster(nats_url, tmp_path, ["ua", "ub"]) as c:
        src = files_of(c, "ua") / "big.img"
        await asyncio.to_thread(write_random, src, BIG)
        want = (await asyncio.to_thread(digest_file, str(src))).hash
        files = state_of(c, "ub").files
        await c.ok("ub", "file get big.img")
        for _ in range(TRIES * 20):
            t = files.transfers.get("big.img")
            if t is None or t.done:
                break
            await asyncio.sleep(0.001)
        assert t is not None, "the transfer ended before a part was seen"
        had = len(t.done)
        assert 1 <= had < 5
        # the node stops, its transfers first (at once: no part lands after this)
        await files.stop()
        await c.nodes.pop("ub").stop()  # the temporary directory stays
        caplog.set_level(logging.INFO, logger="megabus.handlers.files._engine")
        c.nodes["ub"] = await start_node(nats_url, tmp_path, "ub")
        got = files_of(c, "ub") / "big.img"
        for _ in range(TRIES):
            if got.exists():
                break
            await asyncio.sleep(POLL)
        assert (await asyncio.to_thread(digest_file, str(got))).hash == want
        resumed = [r.getMessage() for r in caplog.records if "resuming with" in r.getMessage()]
        assert len(resumed) == 1
        done = int(resumed[0].split("resuming with ")[1].split("/")[0])
        assert done >= had  # the parts it had were kept (each checked against its hash)


async def test_a_node_still_fetching_serves_the_parts_it_has(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["pa", "pb"]) as c:
        src = files_of(c, "pa") / "big.img"
        await asyncio.to_thread(write_random, src, 12 * 1024 * 1024)  # two parts
        entry = (await state_of(c, "pa").files.server.entries("big.img"))[0]
        # pb's own transfer of that version, with part 0 in and part 1 not yet
        files = state_of(c, "pb").files
        tempdir = files_of(c, "pb") / "transfer_test"
        tempdir.mkdir()
        data = src.read_bytes()
        (tempdir / "data").write_bytes(data[:PART_SIZE] + bytes(len(data) - PART_SIZE))
        t = Transfer(name="big.img", entry=entry, tempdir=str(tempdir), sources={}, done={0})
        t.queued = False
        files.transfers["big.img"] = t
        bus = c.client

        async def has(part: int) -> list[FilePartHave]:
            query = FilePartQuery(name="big.img", hash=entry.hash, part=part, node="client")
            inbox = bus.nc.new_inbox()
            got: list[FilePartHave] = []

            async def keep(msg: Msg) -> None:
                got.append(decode(msg.data, FilePartHave))

            sub = await bus.nc.subscribe(inbox, cb=keep)
            await bus.publish(bus.subjects.file_whohas(), query, reply=inbox)
            for _ in range(TRIES):
                if len(got) == 2:
                    break
                await asyncio.sleep(POLL)
            await sub.unsubscribe()
            return sorted(got, key=lambda h: h.node)

        # 2.8's WHOHAS: pa has the whole file, pb part 0 only
        assert [(h.node, h.has) for h in await has(0)] == [("pa", True), ("pb", True)]
        assert [(h.node, h.has) for h in await has(1)] == [("pa", True), ("pb", False)]

        async def chunk(part: int) -> bytes | str:
            req = FileChunkRequest(
                name="big.img", offset=part * PART_SIZE, length=4096, size=0, mtime_ns=0,
                hash=entry.hash,
            )  # fmt: skip
            reply = await bus.nc.request(bus.subjects.node_file("pb"), encode(req)[0], timeout=10)
            try:
                return decode(reply.data, FileChunk).data
            except BusDecodeError:
                return decode(reply.data, ErrorReply).error

        assert await chunk(0) == data[:4096]
        assert await chunk(1) == "big.img: part not here"
        del files.transfers["big.img"]
