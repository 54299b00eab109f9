"""``megabus node -recover`` after SIGKILL, with containers (2.8 recovers only KVM).

A real node process launches real containers of the ``minicccfs`` image (its
init starts the cc agent and a shell on the console) on a real Open vSwitch
bridge: running, paused, building and quit ones. The node is killed with
SIGKILL: the containers, their consoles and their network must live on. A
node restarted with ``-recover`` must show the same ``vm info`` (uptime
aside), the same ``bridge`` table, and drive the containers: cc reconnects,
two containers still ping each other through their veths, ``vm net``,
stop/start/kill/flush, a relaunch and ``clear all`` work.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from noderecovery import (
    alive,
    cc_active,
    cleanup,
    info,
    netns_of,
    ping,
    run,
    sh,
    start,
    until,
    vsctl,
)
from ovsfix import ovs, unique

from megabus.bus.connection import Bus
from megabus.handlers.vms._container_cgroup import ROOT, node_key

__all__ = ["ovs"]

pytestmark = [pytest.mark.usefixtures("ovs"), pytest.mark.timeout(300)]

CALL_TIMEOUT = 30.0


async def console_says(path_or_port: str | int, word: str) -> None:
    """Type ``echo`` on the console's shell and wait for its answer."""
    if isinstance(path_or_port, int):
        reader, writer = await asyncio.open_connection("127.0.0.1", path_or_port)
    else:
        reader, writer = await asyncio.open_unix_connection(path_or_port)
    try:
        writer.write(f"echo {word}-$((6*7))\n".encode())
        await writer.drain()
        seen = b""
        while f"{word}-42".encode() not in seen:
            chunk = await asyncio.wait_for(reader.read(4096), CALL_TIMEOUT)
            assert chunk, f"console closed; got {seen!r}"
            seen += chunk
    finally:
        writer.close()


def ovs_ports(bridge: str) -> list[str]:
    run = vsctl("list-ports", bridge)
    return run.stdout.split() if run.returncode == 0 else []


def bridge_exists(bridge: str) -> bool:
    return vsctl("br-exists", bridge).returncode == 0


def frozen(base: Path, vm_id: str) -> str:
    path = Path(ROOT, "freezer", "megabus", node_key(str(base)), vm_id, "freezer.state")
    return path.read_text().strip()


async def test_containers_outlive_a_sigkill_and_recover(
    tmp_path: Path, nats_url: str, client: Bus, minicccfs: Path
) -> None:
    base = tmp_path / "base"
    bridge = unique("mbrec")
    node = await start(base, nats_url, recover=False)
    pids: list[int] = []
    try:
        await run(client, f"vm config filesystem {minicccfs}")
        await run(client, f"vm config networks {bridge},101")
        await run(client, "vm config tags role web")
        await run(client, "vm launch container c[1-5]")
        await run(client, "vm start c1,c2,c3,c5")
        await cc_active(client, "c1", "c2", "c3")
        await run(client, "vm stop c3")
        await run(client, "vm kill c5")
        before = await info(client)
        assert {n: v["state"] for n, v in before.items()} == {
            "c1": "RUNNING", "c2": "RUNNING", "c3": "PAUSED",
            "c4": "BUILDING", "c5": "QUIT",
        }  # fmt: skip
        live = {n: int(v["pid"]) for n, v in before.items() if v["state"] != "QUIT"}
        pids += list(live.values())
        monitors = {n: int((base / before[n]["id"] / "shim.pid").read_text()) for n in live}
        pids += list(monitors.values())
        bridges_before = await run(client, "bridge")
        # addresses inside the containers, set from the host side of their netns
        for i, name in enumerate(("c1", "c2"), start=1):
            netns = netns_of(live[name])
            code, out = await sh(
                *("ip", "netns", "exec", netns, "ip", "addr", "add", f"10.253.0.{i}/24"),
                *("dev", "veth0"),
            )
            assert code == 0, out
        await console_says(str(base / before["c1"]["id"] / "console"), "before")

        node.send_signal(signal.SIGKILL)
        await node.wait()
        # the containers, their consoles and their network outlive the node
        assert [n for n, p in live.items() if not alive(p)] == []
        await console_says(int(before["c2"]["console_port"]), "orphan")
        assert await ping(live["c1"], "10.253.0.2")

        node = await start(base, nats_url, recover=True)
        await cc_active(client, "c1", "c2")
        after = await info(client)
        # a frozen agent cannot redial: c3's cc comes back when it is started
        assert before["c3"]["cc_active"] == "true"
        assert after["c3"]["cc_active"] == "false"
        after["c3"]["cc_active"] = "true"
        # ip/ip6 are learned from traffic: the addresses were added and pinged
        # after `before` was read, so the recovered node may have seen them
        for name in ("c1", "c2"):
            for col in ("ip", "ip6"):
                after[name][col] = before[name][col]
        changed = [
            (name, col, before[name][col], after[name].get(col))
            for name in before
            for col in before[name]
            if after[name].get(col) != before[name][col]
        ]
        assert changed == [], "\n".join(map(str, changed))
        assert after == before
        assert await run(client, "bridge") == bridges_before
        assert frozen(base, before["c3"]["id"]) == "FROZEN"

        # console (TCP and unix), network and cc work as before the crash
        await console_says(int(after["c1"]["console_port"]), "after")
        await console_says(str(base / before["c2"]["id"] / "console"), "after")
        assert await ping(live["c2"], "10.253.0.1")
        await run(client, "cc exec hostname")
        responses = base / "files" / "miniccc_responses"

        async def answered() -> bool:
            found = list(responses.glob(f"*/{before['c1']['uuid']}/stdout"))
            return bool(found) and found[0].read_text().strip() == "c1"

        await until(answered, "c1's cc response")

        # vm net works on recovered taps
        tap2 = before["c2"]["tap"].strip("[]")
        await run(client, "vm net disconnect c2 0")
        assert tap2 not in ovs_ports(bridge)
        code, _ = await sh(
            "ip", "netns", "exec", netns_of(live["c1"]), "ping", "-c", "1", "-W", "1", "10.253.0.2"
        )
        assert code != 0
        await run(client, f"vm net connect c2 0 101 {bridge}")
        assert ovs_ports(bridge).count(tap2) == 1
        assert await ping(live["c1"], "10.253.0.2")

        # stop/start/kill on adopted containers
        await run(client, "vm stop c1")
        assert frozen(base, before["c1"]["id"]) == "FROZEN"
        await run(client, "vm start c1,c3,c4")
        assert frozen(base, before["c3"]["id"]) == "THAWED"
        await cc_active(client, "c3", "c4")
        tap1 = before["c1"]["tap"].strip("[]")
        await run(client, "vm kill c1")
        assert not alive(live["c1"])
        assert not alive(monitors["c1"])
        assert tap1 not in ovs_ports(bridge)
        assert not await asyncio.to_thread(os.path.lexists, base / before["c1"]["id"] / "console")
        states = {n: v["state"] for n, v in (await info(client)).items()}
        assert states == {
            "c1": "QUIT", "c2": "RUNNING", "c3": "RUNNING", "c4": "RUNNING", "c5": "QUIT"
        }  # fmt: skip

        # a container that was QUIT before the crash relaunches as the new node's child
        await run(client, "vm start c5")
        vms = await info(client)
        assert vms["c5"]["state"] == "RUNNING"
        pids.append(int(vms["c5"]["pid"]))
        await run(client, "vm flush")
        vms = await info(client)
        assert sorted(vms) == ["c2", "c3", "c4", "c5"]
        assert not (base / before["c1"]["id"]).exists()

        # clear all takes everything down, the bridge the node made included
        await run(client, "clear all")
        assert await info(client) == {}
        assert [p for p in pids if alive(p)] == []
        assert not bridge_exists(bridge)
        assert list(base.glob("[0-9]*")) == []
        key = node_key(str(base))
        assert not await asyncio.to_thread(os.path.exists, Path(ROOT, "freezer", "megabus", key))
    finally:
        if node.returncode is None:
            node.send_signal(signal.SIGKILL)
            await node.wait()
        cleanup(base, pids, bridge)
