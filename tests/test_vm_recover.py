"""``megabus node -recover`` after SIGKILL: real node processes, real QEMU, real NATS.

A node launches KVM guests in two namespaces (running, paused, building,
quit, unnamed, tagged through its config), is killed with SIGKILL, and a new
node started by ``ops/mm-recover.sh`` with ``MM_RECOVER=true`` (2.8's
``-recover`` spelling) must show the same ``vm info`` (uptime aside) and
drive the same QEMU processes. SIGTERM, as in 2.8, takes the VMs down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

import pytest
from noderecovery import NODE, POLL, TRIES, alive, start

from megabus.bus.connection import Bus

pytestmark = pytest.mark.timeout(240)


async def run(bus: Bus, line: str, namespace: str = "") -> list[list[str]]:
    """The rows of a command (header first); fails on any error."""
    replies = await bus.command(NODE, ".annotate false " + line, namespace=namespace)
    responses = [r for rep in replies for r in rep.responses]
    assert [r.error for r in responses if r.error] == [], line
    rows: list[list[str]] = []
    for r in responses:
        if r.header:
            rows += [list(r.header), *(r.tabular or [])]
    return rows


async def info(bus: Bus, namespace: str) -> list[list[str]]:
    """``vm info`` but uptime and vnc_port (a recovered guest gets a new shim port, as in 2.8)."""
    rows = await run(bus, "vm info", namespace)
    drop = {rows[0].index("uptime"), rows[0].index("vnc_port")}
    return [[v for i, v in enumerate(row) if i not in drop] for row in rows]


async def rfb_banner(port: int) -> bytes:
    """The first bytes a VNC server sends on ``port``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await asyncio.wait_for(reader.readexactly(12), 10)
    finally:
        writer.close()


async def qmp_status(bus: Bus, vm: str, namespace: str) -> str:
    replies = await bus.command(
        NODE, f"""vm qmp {vm} '{{"execute": "query-status"}}'""", namespace=namespace
    )
    return str(json.loads(replies[-1].responses[0].response)["return"]["status"])


async def test_sigkill_then_recover_shows_the_same_vms(
    tmp_path: Path, nats_url: str, client: Bus
) -> None:
    base = tmp_path / "base"
    node = await start(base, nats_url, recover=False)
    pids: list[int] = []
    try:
        await run(client, "vm config memory 128")
        await run(client, "vm config tags group red")
        await run(client, "vm launch kvm a[1-3]")
        await run(client, "vm launch kvm 2")
        await run(client, "vm start a1,a2,vm-0")
        await run(client, "vm stop a2")
        await run(client, "vm kill a3")
        await run(client, "vm config memory 128", "other")
        await run(client, "vm launch kvm b", "other")
        await run(client, "vm start b", "other")
        before = {ns: await info(client, ns) for ns in ("minimega", "other")}
        pid_col = before["minimega"][0].index("pid")
        pids = [int(r[pid_col]) for ns in before.values() for r in ns[1:] if r[pid_col] != "0"]
        states = {r[1]: r[2] for r in before["minimega"][1:]}
        assert states == {
            "a1": "RUNNING", "a2": "PAUSED", "a3": "QUIT", "vm-0": "RUNNING", "vm-1": "BUILDING"
        }  # fmt: skip

        node.send_signal(signal.SIGKILL)
        await node.wait()
        running = [p for p in pids if alive(p)]
        assert len(running) == 5  # every QEMU but a3's outlived the node

        node = await start(base, nats_url, recover=True)
        after = {ns: await info(client, ns) for ns in ("minimega", "other")}
        changed = [
            (ns, rb[1], col, b, a)
            for ns in before
            for rb, ra in zip(before[ns], after[ns], strict=True)
            for col, b, a in zip(before[ns][0], rb, ra, strict=True)
            if a != b
        ]
        assert changed == []
        assert after == before
        assert await qmp_status(client, "a1", "") == "running"
        assert await qmp_status(client, "a2", "") == "paused"
        assert await qmp_status(client, "b", "other") == "running"
        # each live guest has a new VNC shim, and QEMU's VNC answers through it
        ports = await run(client, ".columns name,state,vnc_port vm info")
        for name, state, port in ports[1:]:
            if state == "QUIT":
                continue
            assert await rfb_banner(int(port)) == b"RFB 003.008\n", name

        # the recovered VMs obey: stop, start, kill, and new VMs get new IDs and names
        await run(client, "vm stop a1")
        assert await qmp_status(client, "a1", "") == "paused"
        await run(client, "vm start all")
        assert await qmp_status(client, "a2", "") == "running"
        await run(client, "vm launch kvm 1")
        rows = await run(client, ".columns id,name .filter name=vm-2 vm info")
        assert rows[1][0] == "6"
        await run(client, "vm kill b", "other")
        assert not alive(pids[-1])
        rows = await run(client, ".columns state vm info", "other")
        assert rows[1] == ["QUIT"]
        # a QUIT VM relaunches as a child of the new node
        await run(client, "vm start a3")
        rows = await run(client, ".columns name,state,pid .filter name=a3 vm info")
        pids.append(int(rows[1][2]))
        assert rows[1][1] == "RUNNING"

        # SIGTERM: as 2.8, the node takes its VMs down
        rows = await run(client, ".columns pid vm info")
        pids += [int(r[0]) for r in rows[1:]]
        node.send_signal(signal.SIGTERM)
        await node.wait()
        for _ in range(TRIES):
            if not any(alive(p) for p in pids):
                break
            await asyncio.sleep(POLL)
        assert [p for p in pids if alive(p)] == []
    finally:
        if node.returncode is None:
            node.send_signal(signal.SIGKILL)
            await node.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
