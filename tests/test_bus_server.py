"""The embedded nats-server starts, serves JetStream, stops, and says why it failed."""

from __future__ import annotations

import uuid
from pathlib import Path

import nats
import pytest
from natsd import ClusterFactory, start_server

from megabus.bus.errors import ServerStartError
from megabus.bus.server import EmbeddedServer, port_open


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_free_port_server_serves_jetstream_and_stops(tmp_path: Path) -> None:
    server = await start_server(tmp_path / "nats")
    try:
        assert server.client_url.startswith("nats://127.0.0.1:")
        assert await port_open("127.0.0.1", _port(server.client_url))
        nc = await nats.connect(server.client_url)
        try:
            info = await nc.jetstream(timeout=5).account_info()
            assert info.limits is not None
        finally:
            await nc.close()
    finally:
        await server.stop()
    assert not server.running
    assert not await port_open("127.0.0.1", _port(server.client_url))


async def test_stop_is_idempotent(tmp_path: Path) -> None:
    server = await start_server(tmp_path / "nats")
    await server.stop()
    await server.stop()
    assert not server.running


async def test_busy_port_fails_with_the_servers_error(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    second = EmbeddedServer(tmp_path / "other", port=_port(nats_server.client_url))
    with pytest.raises(ServerStartError, match="address already in use"):
        await second.start()
    assert not second.running


async def test_missing_binary_is_a_start_error(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "nats", port=0, binary=str(tmp_path / "no-such-binary"))
    with pytest.raises(ServerStartError, match="no-such-binary"):
        await server.start()


async def test_config_file_is_left_for_inspection(nats_server: EmbeddedServer) -> None:
    conf = nats_server.store_dir / "nats-server.conf"
    assert "jetstream" in conf.read_text()


async def test_large_messages_pass_the_raised_payload_limit(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        subject = f"big.{uuid.uuid4().hex}"
        sub = await nc.subscribe(subject)
        await nc.publish(subject, b"x" * (4 * 1024 * 1024))
        msg = await sub.next_msg(timeout=5)
        assert len(msg.data) == 4 * 1024 * 1024
    finally:
        await nc.close()


async def test_three_server_cluster_routes_and_replicates(nats_cluster: ClusterFactory) -> None:
    servers = await nats_cluster(3)
    first = await nats.connect(servers[0].client_url)
    last = await nats.connect(servers[2].client_url)
    try:
        kv = await first.jetstream(timeout=10).create_key_value(bucket="t", replicas=3)
        await kv.put("k", b"v")
        entry = await (await last.jetstream(timeout=10).key_value("t")).get("k")
        assert entry.value == b"v"
    finally:
        await first.close()
        await last.close()
