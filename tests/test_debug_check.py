"""``debug`` profiles, ``check``, ``quit [delay]`` of a node process, ``log syslog``."""

from __future__ import annotations

import asyncio
import logging
import os
import pstats
import socket
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hostfix import alive, error, ok, rows, vm_node
from noderecovery import NODE, start
from nodes import MiniNode

from megabus.bus.connection import Bus

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def hnode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with vm_node(tmp_path, "dbg") as n:
        yield n


async def test_debug_writes_profiles(hnode: MiniNode, tmp_path: Path) -> None:
    table = await rows(hnode, "debug")
    out = await hnode.run("debug")
    assert out[0][0].header == ["pyversion", "tasks", "threads"]
    assert int(table[0][1]) >= 1
    assert int(table[0][2]) >= 1

    mem = tmp_path / "mem.trace"
    try:
        await ok(hnode, f"debug memory {mem}")
        await ok(hnode, "vm config memory 256")
        await ok(hnode, f"debug memory {mem}")  # this one sees what was allocated since the first
        assert len(tracemalloc.Snapshot.load(str(mem)).traces) > 0
    finally:
        tracemalloc.stop()  # tracing slows everything after it in this process

    cpu = tmp_path / "cpu.pstats"
    await ok(hnode, f"debug cpu start {cpu}")
    assert await error(hnode, f"debug cpu start {cpu}") == "CPU profile still running"
    await ok(hnode, "vm config memory 128")
    await ok(hnode, "debug cpu stop")
    assert await error(hnode, "debug cpu stop") == "CPU profile not running"
    stats = pstats.Stats(str(cpu))
    assert any("dispatch" in fn[0] for fn in stats.stats)  # type: ignore[attr-defined]

    stacks = tmp_path / "stacks.txt"
    await ok(hnode, f"debug goroutine {stacks}")
    text = stacks.read_text()
    assert "task " in text
    assert "thread MainThread" in text

    # a relative name is under the files directory, as 2.8's -filepath
    files = Path(hnode.state.settings.files_dir)
    await asyncio.to_thread(files.mkdir, parents=True, exist_ok=True)
    await ok(hnode, "debug goroutine rel.txt")
    assert (files / "rel.txt").is_file()

    assert await error(hnode, f"debug memory {tmp_path}/no/such/file") == (
        f"open {tmp_path}/no/such/file: no such file or directory"
    )


async def test_check_reports_what_is_missing(
    hnode: MiniNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = await hnode.errors("check")
    # this host has every kernel feature megabus needs
    assert not [e for e in found for line in e.splitlines() if "kernel feature" in line]
    monkeypatch.setenv("PATH", str(tmp_path))
    lines = (await error(hnode, "check")).splitlines()
    assert 'exec: "qemu-system-x86_64": executable file not found in $PATH' in lines
    assert 'exec: "dnsmasq": executable file not found in $PATH' in lines
    assert 'exec: "ovs-vsctl": executable file not found in $PATH' in lines


async def _replies(bus: Bus, line: str) -> list[str]:
    out = []
    for rep in await bus.command(NODE, line, idle_timeout=30.0):
        out += [r.error or r.response for r in rep.responses]
    return out


async def test_quit_with_a_delay_ends_the_node_process(nats_url: str, tmp_path: Path) -> None:
    proc = await start(tmp_path / "base", nats_url, recover=False)
    bus = await Bus.connect([nats_url], name="quitter")
    try:
        assert await _replies(bus, "quit x") == ['strconv.Atoi: parsing "x": invalid syntax']
        assert await _replies(bus, "echo alive") == ["alive"]
        assert await _replies(bus, "quit 1") == ["quitting after 1 seconds"]
        assert alive(proc.pid)  # not before its second
        code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 0
        assert not (tmp_path / "base" / "megabus.json").exists()

        # without a delay: no answer but the node's end
        proc = await start(tmp_path / "base", nats_url, recover=False)
        assert await _replies(bus, "quit") == [""]
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await bus.close()


async def test_log_syslog_remote_udp_and_tcp(hnode: MiniNode) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    port = udp.getsockname()[1]
    loop = asyncio.get_running_loop()
    try:
        await ok(hnode, "log level info")
        await ok(hnode, f"log syslog remote udp 127.0.0.1:{port}")
        logging.getLogger("megabus.test").info("marker one")
        data = await asyncio.wait_for(loop.sock_recv(udp, 65536), 10)
        text = data.decode()
        assert text.startswith("<30>")  # daemon.info
        assert f"megabus[{os.getpid()}]: " in text
        assert "marker one" in text

        # a command's own log line gets there too
        await ok(hnode, f"debug goroutine {hnode.state.settings.base}-stacks")
        seen = b""
        while b"writing task stacks" not in seen:
            seen = await asyncio.wait_for(loop.sock_recv(udp, 65536), 10)

        await ok(hnode, "clear log syslog")
        logging.getLogger("megabus.test").warning("after clear")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(loop.sock_recv(udp, 65536), 0.5)
    finally:
        udp.close()

    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.put_nowait(await reader.readline())
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    tcp_port = server.sockets[0].getsockname()[1]
    try:
        await ok(hnode, f"log syslog remote tcp 127.0.0.1:{tcp_port}")
        logging.getLogger("megabus.test").error("marker tcp")
        line = await asyncio.wait_for(got.get(), 10)
        assert line.endswith(b"\n")
        assert b"marker tcp" in line
        assert line.startswith(b"<27>")
    finally:
        await ok(hnode, "clear log")
        server.close()


def _has_syslog() -> bool:
    return any(os.path.exists(p) for p in ("/dev/log", "/var/run/syslog", "/var/run/log"))


async def test_log_syslog_bad_input(hnode: MiniNode) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert await error(hnode, f"log syslog remote tcp 127.0.0.1:{closed}") == (
        f"dial tcp 127.0.0.1:{closed}: connection refused"
    )
    assert await error(hnode, "log syslog remote udp nocolon") == (
        "dial udp nocolon: address nocolon: missing port in address"
    )
    assert await error(hnode, "log syslog remote udp 127.0.0.1:99999") == (
        "dial udp 127.0.0.1:99999: address 127.0.0.1:99999: invalid port"
    )
    if not _has_syslog():
        assert await error(hnode, "log syslog local") == "Unix syslog delivery error"


async def test_log_syslog_local_reaches_the_hosts_socket(
    hnode: MiniNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a stand-in for the host's /dev/log: a unix datagram socket of this test
    from megabus.handlers.node import logs

    path = str(tmp_path / "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    monkeypatch.setattr(logs, "SYSLOG_SOCKETS", (path,))
    try:
        await ok(hnode, "log level info")
        await ok(hnode, "log syslog local")
        logging.getLogger("megabus.test").info("marker local")
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65536), 10)
        assert b"marker local" in data
    finally:
        await ok(hnode, "clear log syslog")
        sock.close()
