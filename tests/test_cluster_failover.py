"""A three-server NATS cluster loses a server while four nodes allocate VLANs.

Real routed nats-servers with JetStream, real nodes with the real dispatcher,
each node on its own order of the server list. The VLAN bucket is R3; the
server that leads it is killed (SIGKILL) halfway through. Every allocation
command is retried until it succeeds (a command may fail while its node
reconnects or the bucket elects a new leader), and afterwards every alias
maps to exactly one VLAN, on every node, and none is lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
from pathlib import Path

import pytest
from failover import allocate, nodes, until_table, vlans_table
from natsd import ClusterFactory, free_port, until, wait_jetstream

from megabus.bus.connection import Bus
from megabus.bus.errors import NoRespondersError
from megabus.bus.messages import CommandReply
from megabus.bus.server import server_binary
from megabus.config.settings import Settings
from megabus.handlers.main import Node

OPS = Path(__file__).resolve().parent.parent / "ops" / "nats"
ALIASES = 120
BUCKET_STREAM = "KV_mb_vlans"


async def test_commands_keep_working_and_aliases_stay_unique_when_a_server_dies(
    nats_cluster: ClusterFactory, tmp_path: Path
) -> None:
    servers = await nats_cluster(3)
    urls = [s.client_url for s in servers]
    client = await Bus.connect(urls[::-1], name="client")
    try:
        async with nodes(urls, tmp_path) as ns:
            info = await client.js.stream_info(BUCKET_STREAM)
            assert info.config.num_replicas == 3
            assert info.cluster is not None
            leader = next(s for s in servers if s.server_name == info.cluster.leader)
            names = [n.name for n in ns]
            # every alias is asked for by two nodes at once: they must agree
            jobs: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
            for k in range(ALIASES):
                jobs.put_nowait((names[k % 4], f"a{k}"))
                jobs.put_nowait((names[(k + 1) % 4], f"a{k}"))
            done = 0
            half = asyncio.Event()
            failures: list[str] = []

            async def worker() -> None:
                nonlocal done
                while not jobs.empty():
                    node, alias = jobs.get_nowait()
                    await allocate(client, node, alias, failures)
                    done += 1
                    if done >= ALIASES:
                        half.set()

            async def killer() -> None:
                await half.wait()
                assert leader.pid is not None
                os.kill(leader.pid, signal.SIGKILL)
                await leader.stop()

            async with asyncio.TaskGroup() as tg:
                for _ in range(8):
                    tg.create_task(worker())
                tg.create_task(killer())
            assert not leader.running
            assert done == 2 * ALIASES

            # the bucket has a new leader among the survivors, and all agree
            info = await client.js.stream_info(BUCKET_STREAM)
            assert info.cluster is not None
            assert info.cluster.leader != leader.server_name
            expected = sorted(f"a{k}" for k in range(ALIASES))
            tables = {}
            for name in names:
                await until_table(client, name, expected)
                tables[name] = await vlans_table(client, name)
            first = tables[names[0]]
            assert all(t == first for t in tables.values())
            assert sorted(alias for alias, _ in first) == expected  # none lost, none twice
            vlans = [vlan for _, vlan in first]
            assert len(set(vlans)) == len(vlans)  # no VLAN shared by two aliases
            print(f"failover: {len(failures)} failed attempts retried; first: {failures[:3]}")
    finally:
        await client.close()


async def test_a_node_started_while_the_cluster_elects_a_meta_leader_starts(
    nats_cluster: ClusterFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Until the survivors of a dead meta leader elect another, JetStream answers
    # no API call; a node started then must wait for it, not exit (one started
    # during the lab's 7 s election did, in CI).
    caplog.set_level(logging.DEBUG, logger="megabus.bus.server")
    servers = await nats_cluster(3)
    await wait_jetstream(servers[0].client_url, replicas=3)

    def meta_leader() -> str:
        said = [
            r.name.rsplit(".", 1)[-1]
            for r in caplog.records
            if "Self is new JetStream cluster metadata leader" in r.getMessage()
        ]
        return said[-1] if said else ""

    await until(lambda: bool(meta_leader()), within=30)
    (leader,) = [s for s in servers if s.server_name == meta_leader()]
    survivors = [s.client_url for s in servers if s is not leader]
    assert leader.pid is not None
    os.kill(leader.pid, signal.SIGKILL)
    await leader.stop()
    node = Node(Settings(name="late", nats=survivors, base=str(tmp_path / "late"), heartbeat=0.5))
    await asyncio.wait_for(node.start(), 120)
    client = await Bus.connect(survivors, name="client")
    try:
        replies = await client.command("late", "vm config net fresh", idle_timeout=60)
        assert [r.error for rep in replies for r in rep.responses if r.error] == []
        assert await vlans_table(client, "late") == [("fresh", "101")]
    finally:
        await client.close()
        await node.stop()


# --- the ops/nats configs themselves ----------------------------------------------


def _local(conf: str, ports: dict[str, int], store: Path) -> str:
    """An ops config with loopback addresses, free ports and a temporary store."""
    text = conf
    for host, port in ports.items():
        if host.endswith("-leaf"):
            continue
        text = text.replace(f"nats://{host}:6222", f"nats://127.0.0.1:{port}")
        text = text.replace(
            f"nats-leaf://{host}:7422", f"nats-leaf://127.0.0.1:{ports[host + '-leaf']}"
        )
    text = text.replace("/var/lib/nats/jetstream", str(store))
    text = re.sub(r"\nhttp: .*", "", text)
    return text


async def test_the_ops_configs_make_an_r3_cluster_reached_through_a_leaf(
    tmp_path: Path,
) -> None:
    ports: dict[str, int] = {}
    for i in (1, 2, 3):
        ports[f"nats-{i}"] = free_port()
        ports[f"nats-{i}-leaf"] = free_port()
    procs: list[asyncio.subprocess.Process] = []
    client_ports = [free_port() for _ in range(4)]
    try:
        for i in (1, 2, 3):
            text = _local((OPS / f"server-{i}.conf").read_text(), ports, tmp_path / f"js{i}")
            text = text.replace("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{client_ports[i - 1]}")
            text = text.replace("listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{ports[f'nats-{i}']}")
            text = text.replace(
                "listen: 0.0.0.0:7422", f"listen: 127.0.0.1:{ports[f'nats-{i}-leaf']}"
            )
            procs.append(await _run_server(tmp_path / f"server-{i}.conf", text))
        leaf = _local((OPS / "leaf.conf").read_text(), ports, tmp_path / "unused")
        leaf = leaf.replace("listen: 127.0.0.1:4222", f"listen: 127.0.0.1:{client_ports[3]}")
        procs.append(await _run_server(tmp_path / "leaf.conf", leaf, env={"HOSTNAME": "h1"}))
        hubs = [f"nats://127.0.0.1:{p}" for p in client_ports[:3]]
        await wait_jetstream(hubs[0], replicas=3)
        node = Node(Settings(name="h1", nats=hubs[1:] + hubs[:1], base=str(tmp_path / "base")))
        await node.start()
        try:
            # a client on the host's leaf reaches the node on a hub
            local = f"nats://127.0.0.1:{client_ports[3]}"
            bus = await Bus.connect([local], name="client")
            try:
                (reply,) = await until_reply(bus, "h1", "vlans add dmz 200")
                assert [r.error for r in reply.responses] == [""]
                assert ("dmz", "200") in await vlans_table(bus, "h1")
            finally:
                await bus.close()
            hub = await Bus.connect([hubs[2]], name="hub-client")
            try:
                info = await hub.js.stream_info(BUCKET_STREAM)
                assert info.config.num_replicas == 3
            finally:
                await hub.close()
        finally:
            await node.stop()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()


async def until_reply(bus: Bus, node: str, line: str) -> list[CommandReply]:
    # The leaf learns the node's subscription once its leaf connection is up.
    async with asyncio.timeout(30):
        while True:
            try:
                return await bus.command(node, line)
            except NoRespondersError:
                await asyncio.sleep(0.2)


async def _run_server(
    conf: Path, text: str, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    await asyncio.to_thread(conf.write_text, text)
    proc = await asyncio.create_subprocess_exec(
        server_binary(),
        "-c",
        str(conf),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    port = int(re.search(r"listen: 127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]
    await until(lambda: _listening(port), within=10)
    return proc


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
