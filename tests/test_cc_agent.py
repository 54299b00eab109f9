"""Real agents against a real node: clients, exec, background, files, test-conn, filters."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from ccworld import CcWorld, cc_world, free_port, wait_for
from nats.aio.msg import Msg

from megabus.bus.cc_messages import ResponseEvent

U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"


@pytest.fixture
async def world(nats_url: str, tmp_path: Path) -> AsyncIterator[CcWorld]:
    async with cc_world(nats_url, tmp_path / "node") as w:
        yield w


async def _two_agents(world: CcWorld) -> None:
    port = free_port()
    await world.ok(f"cc listen {port}")
    sock = await world.unix_socket()
    await world.agent("tcp", "-parent", "127.0.0.1", "-port", str(port), "-uuid", U1)
    await world.agent("unix", "-family", "unix", "-parent", sock, "-uuid", U2)

    async def both() -> bool:
        return await world.clients() == {U1, U2}

    await wait_for(both, "two agents connected")


async def test_clients_table_and_count(world: CcWorld) -> None:
    await _two_agents(world)
    rows = await world.rows("cc clients")
    assert sorted(r[0] for r in rows) == [U1, U2]
    host = socket.gethostname()
    assert all(r[1] == host and r[2] and r[3] == "linux" for r in rows)
    assert await world.rows("cc") == [["2"]]


async def test_exec_stdout_stderr_exitcode_on_disk_and_on_the_bus(world: CcWorld) -> None:
    await _two_agents(world)
    events: list[ResponseEvent] = []

    async def keep(msg: Msg) -> None:
        events.append(msgspec.json.decode(msg.data, type=ResponseEvent))

    sub = await world.bus.nc.subscribe(world.bus.subjects.cc("minimega", "resp") + ".>", cb=keep)
    await world.ok("cc exec sh -c 'echo out; echo err >&2; exit 3'")

    async def all_in() -> bool:
        return len(events) == 2

    await wait_for(all_in, "both responses published")
    await sub.unsubscribe()
    assert {(e.id, e.uuid, e.stdout, e.stderr, e.exit_code) for e in events} == {
        (1, U1, "out\n", "err\n", 3),
        (1, U2, "out\n", "err\n", 3),
    }
    for uuid in (U1, U2):
        d = world.files / "miniccc_responses" / "1" / uuid
        assert (d / "stdout").read_text() == "out\n"
        assert (d / "stderr").read_text() == "err\n"
        assert (d / "exitcode").read_text() == "3"
        assert [r.response for r in await world.ok(f"cc exitcode 1 {uuid}")] == ["3"]
    text = (await world.ok("cc responses 1"))[0].response
    assert f"1/{U1}/stderr:\nerr\n\n1/{U1}/stdout:\nout\n\n" in text
    raw = (await world.ok("cc responses 1 raw"))[0].response
    assert raw == "err\n\nout\n\n" * 2
    rows = await world.rows("cc commands")
    assert rows[0][:7] == [
        "1",
        "",
        "[sh -c echo out; echo err >&2; exit 3]",
        "2",
        "false",
        "false",
        "[]",
    ]


async def test_background_process_list_and_kill(world: CcWorld) -> None:
    await _two_agents(world)
    await world.ok("cc filter uuid=" + U1)
    await world.ok("cc background sleep 300")

    async def listed() -> bool:
        return any(r[3] == "sleep 300" for r in await world.rows(f"cc process list {U1}"))

    await wait_for(listed, "background sleep listed")
    rows = await world.rows("cc process list all")
    assert [(r[1], r[3]) for r in rows] == [(U1, "sleep 300")]
    await world.ok(f"cc process kill {rows[0][2]}")

    async def gone() -> bool:
        return not await world.rows("cc process list all")

    await wait_for(gone, "background sleep killed")


async def test_send_and_recv_50_mb(world: CcWorld) -> None:
    await _two_agents(world)
    data = os.urandom(50 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    world.files.mkdir(parents=True, exist_ok=True)
    (world.files / "big.bin").write_bytes(data)
    (world.files / "small.txt").write_text("hello\n")
    await world.ok("cc send big.bin small.txt")  # both arguments are kept
    agent_file = world.base / "agents" / "tcp" / "files" / "big.bin"
    await world.ok(f"cc exec sha256sum {agent_file}")
    await world.ok(f"cc recv {agent_file}")

    async def received() -> bool:
        back = world.files / "miniccc_responses" / "3" / U1 / str(agent_file).lstrip("/")
        return back.exists() and back.stat().st_size == len(data)

    await wait_for(received, "50 MB file back", limit=60)
    back = world.files / "miniccc_responses" / "3" / U1 / str(agent_file).lstrip("/")
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest
    out = (world.files / "miniccc_responses" / "2" / U1 / "stdout").read_text()
    assert out.split()[0] == digest
    assert (world.base / "agents" / "unix" / "files" / "small.txt").read_text() == "hello\n"


async def test_send_refuses_paths_outside_the_files_directory(world: CcWorld) -> None:
    world.files.mkdir(parents=True, exist_ok=True)
    errors = [r.error for r in await world.run("cc send ../secret")]
    assert errors == ["can only send files from " + str(world.files)]
    errors = [r.error for r in await world.run("cc send /etc/passwd")]
    assert errors == ["can only send files from " + str(world.files)]


async def test_conn_test_tcp_and_udp_pass_and_fail(world: CcWorld) -> None:
    await _two_agents(world)
    await world.ok("cc filter uuid=" + U1)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    tcp_port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(data, addr)  # type: ignore[attr-defined]

    udp, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    udp_port = udp.get_extra_info("sockname")[1]
    closed = free_port()
    try:
        await world.ok(f"cc test-conn tcp 127.0.0.1 {tcp_port} wait 2s")
        await world.ok(f"cc test-conn tcp 127.0.0.1 {closed} wait 1s")
        await world.ok(f"cc test-conn udp 127.0.0.1 {udp_port} wait 2s aGVsbG8=")
        await world.ok(f"cc test-conn udp 127.0.0.1 {closed} wait 1s aGVsbG8=")

        async def done() -> bool:
            return all(
                (world.files / "miniccc_responses" / str(i) / U1 / "stdout").exists()
                for i in range(1, 5)
            )

        await wait_for(done, "four test-conn results")
    finally:
        server.close()
        udp.close()
    got = [
        (world.files / "miniccc_responses" / str(i) / U1 / "stdout").read_text()
        for i in range(1, 5)
    ]
    assert got == [
        f"127.0.0.1:{tcp_port} | pass\n",
        f"127.0.0.1:{closed} | fail\n",
        f"127.0.0.1:{udp_port} | pass\n",
        f"127.0.0.1:{closed} | fail\n",
    ]
    rows = await world.rows("cc commands")
    assert rows[0][8] == f"tcp://127.0.0.1:{tcp_port} (2s wait)"


async def test_filters_by_hostname_and_tag_and_prefix(world: CcWorld) -> None:
    await _two_agents(world)
    tag = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m", "megabus.agent", "-path", str(world.base / "agents" / "unix"), "-tag", "role", "db",
    )  # fmt: skip
    assert await tag.wait() == 0

    async def tagged() -> bool:
        srv_clients = await world.clients()

        srv = await world.state.cc.server("minimega")
        return U2 in srv_clients and srv.clients[U2].info.tags.get("role") == "db"

    await wait_for(tagged, "tag reached the node")
    await world.ok("cc filter role=db")
    await world.ok("cc prefix dbonly")
    await world.ok("cc exec echo db")
    await world.ok("clear cc filter")
    await world.ok("clear cc prefix")
    await world.ok(f"cc filter hostname={socket.gethostname()} uuid={U1}")
    await world.ok("cc exec echo one")

    async def done() -> bool:
        r = world.files / "miniccc_responses"
        return (r / "1" / U2 / "stdout").exists() and (r / "2" / U1 / "stdout").exists()

    await wait_for(done, "filtered responses")
    r = world.files / "miniccc_responses"
    assert sorted(os.listdir(r / "1")) == [U2]
    assert sorted(os.listdir(r / "2")) == [U1]
    assert (await world.ok("cc responses dbonly"))[0].response.startswith(f"1/{U2}/stdout:\ndb\n")
    rows = await world.rows("cc commands")
    assert [(row[0], row[1], row[10]) for row in rows] == [
        ("1", "dbonly", "role=db"),
        ("2", "", f"uuid={U1} && hostname={socket.gethostname()}"),
    ]
