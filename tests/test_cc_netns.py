"""cc over TCP across network namespaces: agents in namespaces this test creates dial
``cc listen`` on the node's veth addresses, as guests on a network would.

Each namespace gets a veth pair, one end in the root namespace (the node's
side, ``100.X.i.1/24``) and one inside (``100.X.i.2/24``); ``X`` comes from
the process ID so concurrent runs do not share addresses. The agents report
their namespace's address, filters by CIDR pick them out, and ``cc
test-conn`` runs from inside a namespace.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from ccworld import CcWorld, cc_world, free_port, wait_for

COUNT = 3
TAG = f"mbc{os.getpid() % 100000}"
OCTET = 64 + os.getpid() % 64


def _ip(*args: str) -> None:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"ip {' '.join(args)}: {out.stderr}"


def uuid(i: int) -> str:
    return f"{i:08d}-aaaa-4aaa-8aaa-{i:012d}"


def host_ip(i: int) -> str:
    return f"100.{OCTET}.{i}.1"


def guest_ip(i: int) -> str:
    return f"100.{OCTET}.{i}.2"


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    names: list[str] = []
    try:
        for i in range(COUNT):
            ns = f"{TAG}n{i}"
            _ip("netns", "add", ns)
            names.append(ns)
            outside, inside = f"{TAG}h{i}", f"{TAG}g{i}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", ns)
            _ip("addr", "add", f"{host_ip(i)}/24", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", ns, "addr", "add", f"{guest_ip(i)}/24", "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield names
    finally:
        for ns in names:
            # the veth pair goes with its namespace
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture
async def world(nats_url: str, tmp_path: Path) -> AsyncIterator[CcWorld]:
    async with cc_world(nats_url, tmp_path / "node") as w:
        yield w


async def test_agents_in_namespaces_dial_cc_listen_on_veth_addresses(
    world: CcWorld, namespaces: list[str]
) -> None:
    port = free_port()
    await world.ok(f"cc listen {port}")
    for i, ns in enumerate(namespaces):
        # each agent reaches the node only through its own veth
        await world.agent(ns, "-parent", host_ip(i), "-port", str(port), "-uuid", uuid(i), netns=ns)
    want = {uuid(i) for i in range(COUNT)}

    async def all_in() -> bool:
        return await world.clients() == want

    await wait_for(all_in, f"{COUNT} agents from their namespaces")
    rows = await world.rows("cc clients")
    # the namespace's IPv4 first (an IPv6 link-local address may follow)
    assert {r[0]: r[4].strip("[]").split()[0] for r in rows} == {
        uuid(i): guest_ip(i) for i in range(COUNT)
    }

    # the whole /24 of namespace 1 and one address of namespace 2
    await world.ok(f"cc filter ip=100.{OCTET}.1.0/24")
    await world.ok("cc exec ip -o -4 addr show scope global")
    await world.ok(f"cc filter ip={guest_ip(2)}")
    await world.ok("cc exec ip -o -4 addr show scope global")
    await world.ok("clear cc filter")

    # test-conn from namespace 0 to a listener on its node-side address
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, host_ip(0), 0)
    listening = server.sockets[0].getsockname()[1]
    try:
        await world.ok(f"cc filter uuid={uuid(0)}")
        await world.ok(f"cc test-conn tcp {host_ip(0)} {listening} wait 5s")
        # namespace 0 has no route to namespace 1's side
        await world.ok(f"cc test-conn tcp {guest_ip(1)} {port} wait 1s")
        responses = world.files / "miniccc_responses"

        async def answered() -> bool:
            return all((responses / str(n) / uuid(0) / "stdout").exists() for n in (3, 4))

        await wait_for(answered, "test-conn results from namespace 0")
    finally:
        server.close()
    assert sorted(os.listdir(responses / "1")) == [uuid(1)]
    assert sorted(os.listdir(responses / "2")) == [uuid(2)]
    assert f"inet {guest_ip(1)}/24" in (responses / "1" / uuid(1) / "stdout").read_text()
    assert f"inet {guest_ip(2)}/24" in (responses / "2" / uuid(2) / "stdout").read_text()
    assert (responses / "3" / uuid(0) / "stdout").read_text() == (
        f"{host_ip(0)}:{listening} | pass\n"
    )
    assert (responses / "4" / uuid(0) / "stdout").read_text() == f"{guest_ip(1)}:{port} | fail\n"
