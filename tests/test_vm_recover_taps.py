"""``-recover`` puts KVM taps back in the bridge table: real node process, QEMU, Open vSwitch.

A KVM guest with two NICs (one in a QinQ tunnel) runs on a bridge the node
made; the node is killed with SIGKILL and restarted with ``-recover``. The
taps must be the table's again: ``vm info`` and ``bridge`` show what they
showed, ``vm net disconnect``/``connect`` move the recovered tap in Open
vSwitch, and ``clear all`` deletes the bridge the node made.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
from noderecovery import NODE, start
from ovsfix import ovs, unique

from megabus.bus.connection import Bus
from megabus.handlers.net._ovs import find_db

__all__ = ["ovs"]

pytestmark = [pytest.mark.usefixtures("ovs"), pytest.mark.timeout(240)]


async def run(bus: Bus, line: str) -> list[list[str]]:
    """The rows of a command (header first); fails on any error."""
    replies = await bus.command(NODE, ".annotate false " + line)
    responses = [r for rep in replies for r in rep.responses]
    assert [r.error for r in responses if r.error] == [], line
    rows: list[list[str]] = []
    for r in responses:
        if r.header:
            rows += [list(r.header), *(r.tabular or [])]
    return rows


async def info(bus: Bus) -> list[list[str]]:
    """``vm info`` but uptime and vnc_port (a recovered guest gets a new shim port, as in 2.8)."""
    rows = await run(bus, "vm info")
    drop = {rows[0].index("uptime"), rows[0].index("vnc_port")}
    return [[v for i, v in enumerate(row) if i not in drop] for row in rows]


def vsctl(*args: str) -> str:
    db, _ = find_db()
    done = subprocess.run(
        ["ovs-vsctl", f"--db={db}", *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else f"error: {done.stderr.strip()}"


async def test_recovered_kvm_taps_are_the_tables_again(
    tmp_path: Path, nats_url: str, client: Bus
) -> None:
    base = tmp_path / "base"
    bridge = unique("mbkt")
    node = await start(base, nats_url, recover=False)
    try:
        await run(client, "vm config memory 128")
        await run(client, f"vm config networks {bridge},101 {bridge},102,qinq")
        await run(client, "vm launch kvm k1")
        await run(client, "vm start k1")
        before = await info(client)
        bridges = await run(client, "bridge")
        taps = before[1][before[0].index("tap")].strip("[]").split(", ")
        assert len(taps) == 2
        assert vsctl("get", "port", taps[1], "vlan_mode") == "dot1q-tunnel"

        node.send_signal(signal.SIGKILL)
        await node.wait()
        node = await start(base, nats_url, recover=True)
        assert await info(client) == before
        assert await run(client, "bridge") == bridges

        await run(client, "vm net disconnect k1 0")
        assert taps[0] not in vsctl("list-ports", bridge).split()
        await run(client, f"vm net connect k1 0 103 {bridge}")
        assert vsctl("get", "port", taps[0], "tag") == "103"

        await run(client, "clear all")
        assert vsctl("br-exists", bridge).startswith("error")
    finally:
        if node.returncode is None:
            node.send_signal(signal.SIGKILL)
            await node.wait()
        vsctl("--if-exists", "del-br", bridge)
        for pidfile in base.glob("*/qemu.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
