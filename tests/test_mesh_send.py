"""``mesh send``: scatter-gather over real nodes, 2.8's guards, a frozen node named.

The frozen node is a real ``megabus node`` process stopped with SIGSTOP: its
connection stays open, so only the idle timeout or its missing heartbeats can
tell the gather to stop waiting for it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from meshnodes import HEARTBEAT, cluster

MEGABUS = str(Path(sys.executable).with_name("megabus"))


async def test_mesh_send_all_gives_one_set_per_node(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["kn1", "kn2", "kn3"]) as c:
        responses = await c.ok("kn1", "mesh send all version")
        # all = every node but this one, as in 2.8
        assert sorted(r.host for r in responses) == ["kn2", "kn3"]
        ranged = await c.ok("kn1", "mesh send kn[1-3] .columns name vm info")
        assert sorted(r.host for r in ranged) == ["kn1", "kn2", "kn3"]
        rendered = (await c.replies("kn1", "mesh send kn[2-3] host"))[0].rendered
        assert rendered.splitlines()[0].split("|")[0].strip() == "host"
        assert [line.split()[0] for line in rendered.splitlines()[1:]] == ["kn2", "kn3"]


async def test_nested_and_forbidden_commands_are_refused(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        assert await c.errors("a", "mesh send b mesh send a version") == [
            "cannot run `mesh send a version` via meshage"
        ]
        assert await c.errors("a", "mesh send b vm launch kvm foo") == [
            "cannot run `vm launch kvm foo` via meshage"
        ]
        assert await c.errors("a", "mesh send b ns run version") == [
            "cannot run `ns run version` via meshage"
        ]
        assert await c.errors("a", "mesh send all,b version") == [
            "wildcard included amongst list of recipients"
        ]


async def test_an_unknown_node_is_named(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        responses = await c.responses("a", "mesh send b,ghost version")
        assert [r.host for r in responses if not r.error] == ["b"]
        assert [r.error for r in responses if r.error] == ["ghost: no such node"]


async def test_a_frozen_node_is_named_once_its_heartbeats_stop(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        proc = await asyncio.create_subprocess_exec(
            MEGABUS, "node", "-name", "frozen", "-nats", nats_url, "-base",
            str(tmp_path / "frozen"), "-heartbeat", str(HEARTBEAT),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await c.settle(["a", "b", "frozen"])
            assert sorted(r.host for r in await c.ok("a", "mesh send all version")) == [
                "b",
                "frozen",
            ]
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                responses = await c.responses("a", "mesh send all version")
                assert [r.host for r in responses if not r.error] == ["b"]
                assert [r.error for r in responses if r.error] == [
                    "frozen: not responding (missed 3 heartbeats)"
                ]
                # gone from the mesh too
                await c.settle(["a", "b"])
            finally:
                os.kill(proc.pid, signal.SIGCONT)
        finally:
            proc.terminate()
            async with asyncio.timeout(30):
                await proc.wait()
