"""Fault: Open vSwitch restarted, with a database made anew, under a running node.

The switch other tests use is never touched: a network namespace of this
test's own runs a private switch (``ops/ovs.sh`` with its own run directory;
two userspace switches cannot share a namespace, each wants the one
``ovs-netdev`` device) and a node process with its own NATS server, driven
with ``megabus -e`` as a user would. Two real containers on VLAN 101 of a
bridge ping each other, and IP learning has its flows on the bridge. The
switch is stopped, its database deleted and the switch started again:
nothing of the bridge is left in it. The node must put the bridge, both taps
with their VLAN, its ``bridge config`` and the flows back by itself, and the
containers ping again.
Then the switch restarts keeping its database (ports come back by
themselves, OpenFlow flows do not): the flows must come back too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from noderecovery import MEGABUS, cleanup, netns_of, ping, sh, start, until
from ovsfix import OVS_SH, unique
from procs import must

pytestmark = pytest.mark.timeout(300)

#: IP learning's flows carry this cookie (``handlers/net/_iplearn.py``).
COOKIE = "0x6d6269706c"


@contextlib.asynccontextmanager
async def private_netns() -> AsyncIterator[str]:
    name = unique("mbfns")
    await must("ip", "netns", "add", name)
    try:
        await must("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        await sh("ip", "netns", "del", name)


def switch_env(rundir: Path) -> dict[str, str]:
    return {"MEGABUS_OVS_RUNDIR": str(rundir), "OVS_RUNDIR": str(rundir)}


async def switch(netns: str, action: str, rundir: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", netns, str(OVS_SH), action,
        env={**os.environ, **switch_env(rundir)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"ovs.sh {action}: {out.decode()}"


async def plumbing(rundir: Path, bridge: str) -> tuple[dict[str, str], int]:
    """The bridge's ports with their tags, and how many of IP learning's flows it has."""
    db = f"--db=unix:{rundir}/db.sock"
    code, out = await sh("ovs-vsctl", db, "list-ports", bridge)
    if code != 0:
        return {}, 0
    tags = {}
    for port in out.split():
        tags[port] = (await must("ovs-vsctl", db, "get", "port", port, "tag")).strip()
    code, out = await sh(
        "env", f"OVS_RUNDIR={rundir}", "ovs-ofctl", "dump-flows", bridge, f"cookie={COOKIE}/-1"
    )
    flows = sum("cookie=" in line for line in out.splitlines()) if code == 0 else 0
    return tags, flows


async def test_bridge_taps_and_flows_come_back_after_a_switch_restart(
    tmp_path: Path, minicccfs: Path
) -> None:
    base = tmp_path / "base"
    bridge = unique("mbfault")
    rundir = Path("/run") / unique("mbovs")  # short: its sockets' paths must fit
    wrapper = tmp_path / "megabus-in-netns"
    pids: list[int] = []
    async with private_netns() as netns:
        # nsenter, not ip netns exec: that one remounts /sys, cgroups and all
        wrapper.write_text(f'#!/bin/sh\nexec nsenter --net=/run/netns/{netns} {MEGABUS} "$@"\n')
        wrapper.chmod(0o755)

        async def run(line: str) -> str:
            code, out = await sh(str(wrapper), "-base", str(base), "-e", *line.split())
            assert code == 0, f"{line}: {out}"
            assert "E:" not in out, f"{line}: {out}"
            return out

        async def vms() -> dict[str, dict[str, str]]:
            text = await run(".annotate false .columns name,state,pid,tap,cc_active vm info")
            rows = [[c.strip() for c in line.split("|")] for line in text.splitlines()]
            return {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}

        await switch(netns, "start", rundir)
        node = await start(
            base, "", recover=False, env={"MEGABUS": str(wrapper)} | switch_env(rundir)
        )
        try:
            await run(f"vm config filesystem {minicccfs}")
            await run(f"vm config networks {bridge},101")
            await run("vm launch container c[1-2]")
            await run("vm start all")

            async def agents() -> bool:
                return all(v["cc_active"] == "true" for v in (await vms()).values())

            await until(agents, "both agents (their init has brought veth0 up by then)")
            found = await vms()
            live = {n: int(v["pid"]) for n, v in found.items()}
            pids += list(live.values())
            taps = sorted(v["tap"].strip("[]") for v in found.values())
            for i, name in enumerate(("c1", "c2"), start=1):
                await must(
                    "ip", "netns", "exec", netns_of(live[name]),
                    "ip", "addr", "add", f"10.253.0.{i}/24", "dev", "veth0",
                )  # fmt: skip
            assert await ping(live["c1"], "10.253.0.2")
            await run(f"bridge config {bridge} external_ids:fault=ovs-restart")
            want = (dict.fromkeys(taps, "101"), 2)

            async def configured() -> bool:
                code, out = await sh(
                    "ovs-vsctl", f"--db=unix:{rundir}/db.sock",
                    "get", "bridge", bridge, "external_ids:fault",
                )  # fmt: skip
                return code == 0 and out.strip().strip('"') == "ovs-restart"

            async def plumbed() -> bool:
                return await plumbing(rundir, bridge) == want

            await until(plumbed, "the taps and flows on the first switch")
            assert await configured()

            await switch(netns, "stop", rundir)
            (rundir / "conf.db").unlink()
            await switch(netns, "start", rundir)
            await until(plumbed, "the taps and flows on the restarted switch")
            await until(configured, "the bridge's config on the restarted switch")
            assert await ping(live["c2"], "10.253.0.1")
            # restarted with its database: it rebuilds the ports, but not our flows
            await switch(netns, "stop", rundir)
            await switch(netns, "start", rundir)
            await until(plumbed, "the flows on the switch restarted with its database")
            assert await ping(live["c1"], "10.253.0.2")
            assert {n: v["state"] for n, v in (await vms()).items()} == {
                "c1": "RUNNING", "c2": "RUNNING"
            }  # fmt: skip
            await run("clear all")
            assert await plumbing(rundir, bridge) == ({}, 0)
        finally:
            # SIGTERM: the node stops the nats-server it started (SIGKILL would orphan it)
            if node.returncode is None:
                node.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(60):
                        await node.wait()
                except TimeoutError:
                    node.send_signal(signal.SIGKILL)
                    await node.wait()
            cleanup(base, pids, "")
            with contextlib.suppress(AssertionError):
                await switch(netns, "stop", rundir)
            shutil.rmtree(rundir, ignore_errors=True)
