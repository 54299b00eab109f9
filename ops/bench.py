#!/usr/bin/env python3
"""Measure megabus on this machine and print ONE JSON object.

It starts its own nats-server (free port, loopback) and two ``megabus node``
processes with temporary bases, then measures:

* ``oneshot_ms``: whole-process wall time of ``megabus -e version`` (p50, p99);
* ``roundtrip_ms``: ``Bus.command`` round trips from one connection (p50, p99);
* ``commands_per_s``: one node serving 50 concurrent clients;
* ``vlan_allocs_per_s``: new VLAN aliases (``vm config net``) allocated with
  both nodes contending for the same namespace's pool;
* ``node_rss_mb``: a node's resident memory when idle.

Every loop is bounded; run it with the repo's venv: ``.venv/bin/python ops/bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from megabus.bus.connection import Bus
from megabus.bus.server import EmbeddedServer

BIN = Path(sys.executable).parent
MEGABUS = str(BIN / "megabus")


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds, from samples in seconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50": round(statistics.median(ordered) * 1000, 2),
        "p99": round(p99 * 1000, 2),
        "n": len(ordered),
    }


async def start_node(name: str, url: str, base: Path) -> asyncio.subprocess.Process:
    """A ``megabus node`` process; returns once it wrote ``<base>/megabus.json``."""
    info = base / "megabus.json"
    proc = await asyncio.create_subprocess_exec(
        MEGABUS,
        "node",
        "-name",
        name,
        "-nats",
        url,
        "-base",
        str(base),
        "-heartbeat",
        "1",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    for _ in range(300):  # 30 s at most
        if info.exists() or proc.returncode is not None:
            break
        await asyncio.sleep(0.1)
    if not info.exists():
        proc.kill()
        raise SystemExit(f"bench: node {name} did not start (status {proc.returncode})")
    return proc


def oneshot(base: Path, runs: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEGABUS_")}
    # Measure what users get: cached bytecode (an environment may turn it off).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    samples = []
    for _ in range(runs + 3):  # the first runs warm the page cache and .pyc files
        t0 = time.perf_counter()
        result = subprocess.run(
            [MEGABUS, "-base", str(base), "-e", "version"],
            capture_output=True,
            env=env,
            check=False,
        )
        samples.append(time.perf_counter() - t0)
        if result.returncode != 0:
            raise SystemExit(f"bench: megabus -e version failed: {result.stderr.decode()}")
    return samples[3:]


async def roundtrips(bus: Bus, node: str, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await bus.command(node, "version")
        samples.append(time.perf_counter() - t0)
    return samples


async def throughput(url: str, node: str, clients: int, per_client: int) -> float:
    buses = [await Bus.connect([url], name=f"bench{i}") for i in range(clients)]

    async def client(bus: Bus) -> None:
        for _ in range(per_client):
            await bus.command(node, "version")

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(b) for b in buses))
        elapsed = time.perf_counter() - t0
    finally:
        for b in buses:
            await b.close()
    return clients * per_client / elapsed


async def vlan_allocs(bus: Bus, nodes: list[str], aliases: int, concurrency: int) -> float:
    """Allocate ``aliases`` new aliases, spread over ``nodes``, ``concurrency`` at a time each."""
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for i in range(aliases):
        queue.put_nowait((nodes[i % len(nodes)], f"bench{i}"))
    errors: list[str] = []

    async def worker() -> None:
        while not queue.empty():
            node, alias = queue.get_nowait()
            for reply in await bus.command(node, f"vm config net {alias}"):
                errors.extend(r.error for r in reply.responses if r.error)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency * len(nodes))))
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"bench: vlan allocation failed: {errors[0]}")
    # Every alias must have got its own VLAN, whichever node allocated it.
    (reply,) = await bus.command(nodes[0], "vlans")
    rows = [row for r in reply.responses for row in (r.tabular or [])]
    vlans = {row[-1] for row in rows if row[-2].startswith("bench")}
    if len(vlans) != aliases:
        raise SystemExit(f"bench: {aliases} aliases got {len(vlans)} distinct VLANs")
    return aliases / elapsed


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def main(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="megabus-bench-") as tmp:
        root = Path(tmp)
        server = EmbeddedServer(root / "nats", port=0)
        await server.start()
        url = server.client_url
        procs = []
        try:
            procs.append(await start_node("bench1", url, root / "b1"))
            procs.append(await start_node("bench2", url, root / "b2"))
            await asyncio.sleep(2)  # settle: caches warm, first heartbeats out
            idle_rss = rss_mb(procs[0].pid)
            shots = await asyncio.to_thread(oneshot, root / "b1", args.oneshot_runs)
            bus = await Bus.connect([url], name="bench")
            try:
                rtt = await roundtrips(bus, "bench1", args.roundtrips)
                cps = await throughput(url, "bench1", args.clients, args.per_client)
                vps = await vlan_allocs(bus, ["bench1", "bench2"], args.aliases, 5)
            finally:
                await bus.close()
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
                    try:
                        await asyncio.wait_for(proc.wait(), 10)
                    except TimeoutError:
                        proc.kill()
                        await proc.wait()
            await server.stop()
    return {
        "oneshot_ms": percentiles(shots),
        "roundtrip_ms": percentiles(rtt),
        "commands_per_s": round(cps, 1),
        "concurrent_clients": args.clients,
        "vlan_allocs_per_s": round(vps, 1),
        "vlan_nodes": 2,
        "node_rss_mb": idle_rss,
        "cpus": os.cpu_count(),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oneshot-runs", type=int, default=30)
    parser.add_argument("--roundtrips", type=int, default=500)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--per-client", type=int, default=40)
    parser.add_argument("--aliases", type=int, default=400)
    return parser.parse_args()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # closing 50 clients logs 50 "disconnected"
    print(json.dumps(asyncio.run(main(parse_args()))))
