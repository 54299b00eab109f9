"""A node networks out of the box: where no Open vSwitch runs it starts one, and stops only that.

Each test runs a real ``megabus node`` process in a network namespace of its
own (so its switch's bridges never meet the shared test switch) with
``MEGABUS_OVS_RUNDIR`` naming an empty run directory, as on a fresh machine.
The node starts its own NATS server there too (nothing listens in the
namespace), and the client is ``megabus -e`` in the same namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from noderecovery import MEGABUS, alive
from ovsfix import OVS_SH, unique
from procs import must, run

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def netns() -> AsyncIterator[str]:
    name = unique("mbsw")
    await must("ip", "netns", "add", name)
    try:
        await must("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        await run("ip", "netns", "del", name)


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@contextlib.asynccontextmanager
async def node_in(ns: str, base: Path, rundir: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "MEGABUS_OVS_RUNDIR": str(rundir)}
    env.pop("OVS_RUNDIR", None)
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, MEGABUS, "node", "-name", "sw", "-base", str(base),
        "-level", "error", env=env, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            while not (base / "megabus.json").exists():
                assert proc.returncode is None, "the node exited"
                await asyncio.sleep(0.1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def mm(ns: str, base: Path, line: str) -> tuple[int, str]:
    words = [".annotate", "false", *line.split()]
    return await run("ip", "netns", "exec", ns, MEGABUS, "-base", str(base), "-e", *words)


async def test_a_node_starts_a_switch_where_none_runs_and_stops_it(tmp_path: Path) -> None:
    rundir = tmp_path / "ovs"
    async with netns() as ns, node_in(ns, tmp_path / "base", rundir) as proc:
        code, out = await mm(ns, tmp_path / "base", "tap create 5")
        assert code == 0, out
        tap = out.strip()
        assert tap.startswith("mega_tap"), out
        code, out = await mm(ns, tmp_path / "base", ".columns bridge,vlans bridge")
        assert code == 0, out
        assert "mega_bridge" in out, out
        assert "[5]" in out, out
        pids = [_pid(rundir / f"{d}.pid") for d in ("ovsdb-server", "ovs-vswitchd")]
        assert all(p is not None and alive(p) for p in pids), pids
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        # the node started both daemons, so it stopped both
        assert not any(alive(p) for p in pids if p is not None)
        assert not (rundir / "db.sock").exists()


async def test_a_switch_that_ran_before_the_node_keeps_running(tmp_path: Path) -> None:
    rundir = tmp_path / "ovs"
    env = {**os.environ, "MEGABUS_OVS_RUNDIR": str(rundir)}
    async with netns() as ns:
        start = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", ns, str(OVS_SH), "start", env=env,
            stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert await start.wait() == 0
        try:
            async with node_in(ns, tmp_path / "base", rundir):
                code, out = await mm(ns, tmp_path / "base", "tap create 7")
                assert code == 0, out
                assert out.startswith("mega_tap"), out
            vswitchd = _pid(rundir / "ovs-vswitchd.pid")
            assert vswitchd is not None
            assert alive(vswitchd)
            status = await asyncio.create_subprocess_exec(
                str(OVS_SH), "status", env=env, stdout=asyncio.subprocess.DEVNULL
            )
            assert await status.wait() == 0
        finally:
            stop = await asyncio.create_subprocess_exec(
                str(OVS_SH), "stop", env=env, stdout=asyncio.subprocess.DEVNULL
            )
            await stop.wait()
