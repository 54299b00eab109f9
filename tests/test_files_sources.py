"""What names a file fetches it first: ``vm launch``, ``cc send``, ``file:``,
``tar:`` and ``http://`` arguments, with real nodes on one real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import os
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

from ccworld import cc_world, wait_for
from meshnodes import HEARTBEAT, cluster, start_node
from nats.aio.msg import Msg
from procs import must
from test_files_mesh import files_of, state_of, write_random

from megabus.bus.codec import decode
from megabus.bus.messages import StatusUpdate

U1 = "33333333-3333-4333-8333-333333333333"


async def test_file_prefix_fetches_from_the_node_that_has_it(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["pa", "pb"]) as c:
        (files_of(c, "pa") / "notes").mkdir()
        (files_of(c, "pa") / "notes" / "a.txt").write_text("from pa\n")
        out = await c.text("pb", "shell cat file:notes/a.txt")
        assert out == "from pa"
        assert (files_of(c, "pb") / "notes" / "a.txt").read_text() == "from pa\n"
        assert await c.errors("pb", "echo file:nowhere.txt") == ["get nowhere.txt: file not found"]
        assert await c.errors("pb", "echo file:../../etc/passwd") == [
            "get ../../etc/passwd: outside of the files directory"
        ]


async def test_kvm_launch_fetches_its_disk_and_backing_file(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["ka", "kb"]) as c:
        src = files_of(c, "ka")
        await must("qemu-img", "create", "-q", "-f", "qcow2", str(src / "base.qcow2"), "16M")
        # a relative backing name: the chain is found next to the image on any node
        await must(
            "qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
            str(src / "child.qcow2"),
        )  # fmt: skip
        updates: list[StatusUpdate] = []

        async def on_status(msg: Msg) -> None:
            updates.append(decode(msg.data, StatusUpdate))

        sub = await c.client.nc.subscribe(c.client.subjects.status("kb", "file get"), cb=on_status)
        try:
            await c.ok("kb", "vm config disk child.qcow2")
            await c.ok("kb", "vm launch kvm v0")
            await c.client.nc.flush()
            # the fetch reported its progress as a status update (2.8's iomHelper does)
            assert [u.status for u in updates][-1].endswith(": 1/1 parts")
            got = files_of(c, "kb")
            assert (got / "child.qcow2").is_file()
            assert (got / "base.qcow2").is_file()
            rows = (await c.ok("kb", ".columns name,state,disks vm info"))[0].tabular
            assert rows is not None
            assert rows[0][0] == "v0"
            assert rows[0][1] != "ERROR"
            # a disk no node has: 2.8's error, and the node carries on
            await c.ok("kb", "vm config disk lost.qcow2")
            errors = await c.errors("kb", "vm launch kvm v1")
            assert errors == ["get lost.qcow2: file not found"]
        finally:
            await sub.unsubscribe()
            await c.responses("kb", "vm kill all")
            await c.responses("kb", "vm flush")


def make_tar(src: Path, dst: Path, top: str) -> None:
    with tarfile.open(dst, "w:gz") as tf:
        tf.add(src, arcname=top)


async def test_container_filesystem_from_a_tarball_on_another_node(
    nats_url: str, tmp_path: Path, minicccfs: Path
) -> None:
    async with cluster(nats_url, tmp_path, ["ta", "tb"]) as c:
        tarball = files_of(c, "ta") / "fs.tar.gz"
        await asyncio.to_thread(make_tar, minicccfs, tarball, "rootfs")
        try:
            await c.ok("tb", "vm config filesystem tar:fs.tar.gz")
            unpacked = files_of(c, "tb") / "rootfs"
            conf = await c.text("tb", "vm config filesystem")
            assert conf == str(unpacked)
            assert (unpacked / "init").is_file()
            # unpacked once: a second use takes the same tree
            marker = unpacked / "marker"
            marker.write_text("kept")
            await c.ok("tb", "vm config filesystem tar:fs.tar.gz")
            assert marker.read_text() == "kept"
            await c.ok("tb", "vm launch container c0")
            await c.ok("tb", "vm start c0")
            rows = (await c.ok("tb", ".columns name,state vm info"))[0].tabular
            assert rows == [["c0", "RUNNING"]]
            # a tarball of two top-level entries is refused
            (files_of(c, "tb") / "bad").mkdir()
            (files_of(c, "tb") / "bad" / "x").write_text("x")
            bad = files_of(c, "tb") / "bad.tar"
            with tarfile.open(bad, "w") as tf:
                tf.add(files_of(c, "tb") / "bad" / "x", arcname="one")
                tf.add(files_of(c, "tb") / "bad" / "x", arcname="two")
            assert await c.errors("tb", "vm config filesystem tar:bad.tar") == [
                f"{bad}: tar must contain exactly one top-level directory"
            ]
        finally:
            await c.responses("tb", "vm kill all")
            await c.responses("tb", "vm flush")


async def test_cc_send_of_a_file_only_another_node_has(nats_url: str, tmp_path: Path) -> None:
    async with cc_world(nats_url, tmp_path / "node") as world:
        other = await start_node(nats_url, tmp_path, "holder")
        try:
            payload = Path(other.settings.files_dir) / "payload.bin"
            await asyncio.to_thread(write_random, payload, 3 * 1024 * 1024 + 17)
            want = payload.read_bytes()

            async def meshed() -> bool:
                return world.state.membership is not None and "holder" in (
                    world.state.membership.live()
                )

            await wait_for(meshed, "holder seen", limit=HEARTBEAT * 40)
            sock = await world.unix_socket()
            await world.agent("u", "-family", "unix", "-parent", sock, "-uuid", U1)

            async def connected() -> bool:
                return await world.clients() == {U1}

            await wait_for(connected, "agent connected")
            await world.ok("cc send payload.bin")
            got = world.base / "agents" / "u" / "files" / "payload.bin"

            async def arrived() -> bool:
                return got.exists() and got.stat().st_size == len(want)

            await wait_for(arrived, "payload at the agent")
            assert got.read_bytes() == want
            assert (world.files / "payload.bin").read_bytes() == want
        finally:
            await other.stop()


class _Slow(http.server.SimpleHTTPRequestHandler):
    """Serves files slowly enough that other commands run during a download."""

    def log_message(self, format: str, *args: object) -> None:
        return None

    def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
        while chunk := source.read(256 * 1024):
            outputfile.write(chunk)
            threading.Event().wait(0.02)


@contextlib.contextmanager
def http_server(root: Path) -> Iterator[int]:
    handler = functools.partial(_Slow, directory=str(root))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


async def test_http_download_while_other_commands_answer(nats_url: str, tmp_path: Path) -> None:
    web = tmp_path / "web"
    await asyncio.to_thread(write_random, web / "img" / "disk.img", 8 * 1024 * 1024)
    want = (web / "img" / "disk.img").read_bytes()
    with http_server(web) as port:
        async with cluster(nats_url, tmp_path, ["ha"]) as c:
            url = f"http://127.0.0.1:{port}/img/disk.img"
            download = asyncio.create_task(c.text("ha", f"echo {url}"))
            answered = 0
            while not download.done():
                # the node keeps answering while it downloads
                assert await c.text("ha", "echo still here") == "still here"
                answered += 1
                await asyncio.sleep(0.05)
            local = files_of(c, "ha") / "img" / "disk.img"
            assert await download == str(local)
            assert answered > 0
            assert local.read_bytes() == want
            assert not [p for p in files_of(c, "ha").iterdir() if p.name.startswith("transfer_")]
            # served from the files directory from now on
            assert await c.text("ha", f"echo {url}") == str(local)
            missing = f"http://127.0.0.1:{port}/nothere"
            assert await c.errors("ha", f"echo {missing}") == [f"get {missing}: 404 File not found"]
            assert state_of(c, "ha").files.transfers == {}


async def test_a_script_and_its_files_read_from_another_node(nats_url: str, tmp_path: Path) -> None:
    # how an "ns snapshot" is restored elsewhere: read file:snapshots/<name>/launch.mm,
    # whose lines name their files with file:
    async with cluster(nats_url, tmp_path, ["sa", "sb"]) as c:
        snap = files_of(c, "sa") / "snapshots" / "s1"
        snap.mkdir(parents=True)
        (snap / "state.bin").write_text("saved state")
        (snap / "launch.mm").write_text("shell cat file:snapshots/s1/state.bin\n")
        out = await c.text("sb", "read file:snapshots/s1/launch.mm")
        assert out == "saved state"
        assert (files_of(c, "sb") / "snapshots" / "s1" / "state.bin").is_file()


async def test_container_filesystem_directory_on_another_node(
    nats_url: str, tmp_path: Path, minicccfs: Path
) -> None:
    async with cluster(nats_url, tmp_path, ["da", "db"]) as c:
        await asyncio.to_thread(shutil.copytree, minicccfs, files_of(c, "da") / "fs", symlinks=True)
        try:
            await c.ok("db", f"vm config filesystem {files_of(c, 'db') / 'fs'}")
            await c.ok("db", "vm launch container c0")
            await c.ok("db", "vm start c0")
            rows = (await c.ok("db", ".columns name,state vm info"))[0].tabular
            assert rows == [["c0", "RUNNING"]]
            got = files_of(c, "db") / "fs"
            assert (got / "init").is_file()
            assert os.readlink(got / "linuxrc") == os.readlink(minicccfs / "linuxrc")
        finally:
            await c.responses("db", "vm kill all")
            await c.responses("db", "vm flush")
