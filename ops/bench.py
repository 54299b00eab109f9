#!/usr/bin/env python3
"""Measure megabus on this machine and print ONE JSON object.

It starts its own nats-server (free port, loopback) and two ``megabus node``
processes with temporary bases, then measures:

* ``oneshot_ms``: whole-process wall time of ``megabus -e version`` (p50, p99);
* ``roundtrip_ms``: ``Bus.command`` round trips from one connection (p50, p99);
* ``commands_per_s``: one node serving 50 concurrent clients;
* ``vlan_allocs_per_s``: new VLAN aliases (``vm config net``) allocated with
  both nodes contending for the same namespace's pool;
* ``node_rss_mb``: a node's resident memory when idle;
* ``mesh_send_vm_info_ms``: ``mesh send`` of ``vm info`` to 20 nodes (p50, p99),
  and with one of them frozen by SIGSTOP, the seconds until the answer names it;
* ``pipe_msgs_per_s``, ``pipe_fanout_*``, ``pipe_round_robin_msgs_per_s``:
  values through a pipe from one node to another, to 10 readers on the other
  node, and in round-robin mode (``--pipe-messages``, 0 skips them);
* ``router_*``: ``router <vm> commit`` of N router containers at once until
  their routes are in place (seconds), and the router daemons' resident memory
  (``--routers N``, 0 by default: it needs root, Open vSwitch and the router image);
* ``security``: round trips, commands/s (20 clients) and ``megabus -e`` with
  auth and TLS off, then on: the cost of security (``--security-roundtrips``);
* ``fuzz``: executions per second of ``ops/fuzz.py`` against a live node
  (``--fuzz-cases``);
* ``client``: ``megabus.client``'s connect (schema fetched, methods made),
  and a generated method's round trip next to ``Bus.command``'s, on a node
  with its own secured server (``--client-roundtrips``).
* ``files``: one node's file of ``--files-mb`` MB (1 GB) fetched by three
  other nodes at once with ``file get`` (aggregate MB/s, every node's peak
  resident memory during the transfer), and the murmur3-64 hash time of
  ``--files-hash-mb`` MB (0 skips them).
* ``speed``: the measures of issue 16's table on a node of its own, with the
  node's and the client's CPU time per command (wall time is noisy on a
  shared machine): round trips of ``vm config memory 512``, 8 clients x 500
  of it and of ``version``, ``vm info`` of 100 defined VMs (whole and
  ``.columns name,state``), polled with 10, of 1000, 1000 x ``vlans add`` and new-alias
  ``vm config net`` on a fresh node and after ``clear vlans``, and the idle
  memory of node plus nats-server before and after 100,000 commands
  (``--speed-commands``).
* ``lifecycle``: the rest of issue 16's table: ``vm start all`` of 10 KVM
  guests (``--life-kvm``), and for 10 and 30 containers (``--life-containers``)
  their start until every agent is connected, ``vm kill all`` until every one
  is QUIT, and ``vm flush``.
* ``lab``: on a 3-host ``ops/lab.py`` lab (userspace datapath): ping RTT and
  TCP throughput between containers on different hosts over the trunk and
  over VXLAN, and ``vm launch container`` of N over the hosts, their start,
  and ``cc exec hostname`` until all N answered (``--lab-containers N``, 0
  by default: it needs root, Open vSwitch and the minicccfs image).
* ``screens``: the web UI with N VMs (``--web-vms``, 200): first paint and
  the time until the table holds them all in headless chromium, and how long a
  VM launched by another client takes to show (p50, p99); screenshots per
  second through the web; RFB framebuffer MB/s through a guest's VNC shim and
  straight from QEMU's socket.

``--only a,b`` runs only those parts (``oneshot``, ``commands``, ``vms``, ``mesh``,
``nic``, ``taps``, ``failover``, ``cc``, ``pipes``, ``routers``, ``security``, ``fuzz``,
``speed``, ``lifecycle``, ``client``, ``files``, ``lab``, ``screens``); ``--compare FILE`` then
prints, after the JSON, each figure's ratio to the same figure in FILE (an
earlier run's JSON), so a change that makes one slower shows.

Every loop is bounded; run it with the repo's venv: ``.venv/bin/python ops/bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from megabus.bus.connection import Bus
from megabus.bus.security import TlsFiles, ensure_local_credentials, server_users
from megabus.bus.server import EmbeddedServer, ServerTLS
from megabus.handlers.files import digest_file

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


async def start_node(name: str, url: str, base: Path, *extra: str) -> asyncio.subprocess.Process:
    """A ``megabus node`` process (``extra``: more node flags); returns once it
    wrote ``<base>/megabus.json``."""
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
        *extra,
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


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: a node leaves nothing running."""
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        proc.kill()
        await proc.wait()


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


async def throughput(url: str, node: str, clients: int, per_client: int, **connect: Any) -> float:
    """Commands per second of ``clients`` connections (``connect``: credentials, tls)."""
    buses = [await Bus.connect([url], name=f"bench{i}", **connect) for i in range(clients)]

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


async def _vm_cmd(bus: Bus, node: str, line: str) -> tuple[float, list[str]]:
    """Run ``line``; its wall time and its errors."""
    t0 = time.perf_counter()
    replies = await bus.command(node, line, idle_timeout=120)
    took = time.perf_counter() - t0
    return took, [r.error for rep in replies for r in rep.responses if r.error]


async def _states(bus: Bus, node: str) -> list[str]:
    replies = await bus.command(node, ".annotate false .columns state vm info")
    return [row[0] for rep in replies for r in rep.responses for row in r.tabular or []]


async def vm_bench(url: str, base: Path, proc_count: int) -> dict[str, object]:
    """The VM figures (see the module docstring) on a node of their own."""
    node = "benchvm"
    proc = await start_node(node, url, base)
    bus = await Bus.connect([url], name="bench-vm")
    out: dict[str, object] = {}
    try:
        await asyncio.sleep(1)
        out["rss_idle_mb"] = rss_mb(proc.pid)
        await _vm_cmd(bus, node, "ns queueing true")
        took, errors = await _vm_cmd(bus, node, "vm launch kvm q[1-1000]")
        assert not errors, errors[:3]
        out["queue_1000_ms"] = round(took * 1000, 1)
        await _vm_cmd(bus, node, "ns flush")
        await _vm_cmd(bus, node, "ns queueing false")

        await _vm_cmd(bus, node, "vm config qemu /nonexistent/qemu-for-bench")
        took, _ = await _vm_cmd(bus, node, "vm launch kvm d[1-1000]")
        out["define_1000_ms"] = round(took * 1000, 1)
        states = await _states(bus, node)
        assert len(states) == 1000, len(states)
        out["rss_1000_mb"] = rss_mb(proc.pid)
        samples = [(await _vm_cmd(bus, node, "vm info"))[0] for _ in range(10)]
        out["info_1000_ms"] = percentiles(samples)
        await _vm_cmd(bus, node, "clear all")

        await _vm_cmd(bus, node, "vm config memory 128")
        took, errors = await _vm_cmd(bus, node, f"vm launch kvm r[1-{proc_count}]")
        assert not errors, errors[:3]
        assert set(await _states(bus, node)) == {"BUILDING"}
        out["launch_kvm_ms"] = round(took * 1000, 1)
        out["kvm_count"] = proc_count
        t0 = time.perf_counter()
        _, errors = await _vm_cmd(bus, node, "vm start r[1-10]")
        assert not errors, errors[:3]
        for _ in range(600):  # the states follow QMP at once; bounded anyway
            if (await _states(bus, node)).count("RUNNING") == 10:
                break
            await asyncio.sleep(0.05)
        out["start_10_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        await _vm_cmd(bus, node, "clear all")
    finally:
        await bus.close()
        if proc.returncode is None:
            proc.terminate()  # kills any guest left, as 2.8 does on exit
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    return out


async def main(args: argparse.Namespace) -> dict[str, object]:
    def want(part: str) -> bool:
        return args.only is None or part in args.only

    out: dict[str, object] = {"cpus": os.cpu_count()}
    if want("commands") or want("oneshot") or want("vms"):
        out.update(await first_parts(args, want))
    parts: list[tuple[str, Callable[[], Awaitable[dict[str, object]]]]] = [
        ("mesh", lambda: mesh_fanout(args.mesh_runs)),
        ("nic", lambda: nic_attach(args.nic_vms)),
        ("taps", lambda: tap_scale(args.taps)),
        ("failover", lambda: nats_failover(args.failover_aliases)),
        (
            "cc",
            lambda: cc_bench(args.cc_agents, args.cc_rounds, args.cc_send_agents, args.cc_send_mb),
        ),
        ("pipes", lambda: pipe_bench(args.pipe_messages)),
        ("routers", lambda: router_bench(args.routers)),
        ("security", lambda: security_bench(args.security_roundtrips, 20, 25)),
        ("fuzz", lambda: fuzz_bench(args.fuzz_cases)),
        ("speed", lambda: speed_bench(args.speed_commands)),
        ("lifecycle", lambda: lifecycle_bench(args.life_kvm, args.life_containers)),
        ("client", lambda: client_bench(args.client_roundtrips)),
        ("files", lambda: files_bench(args.files_mb, args.files_hash_mb)),
        ("lab", lambda: lab_bench(args.lab_containers)),
        ("screens", lambda: screens_bench(args.web_vms)),
    ]
    for part, run in parts:
        if want(part):
            out.update(await run())
    return out


async def first_parts(args: argparse.Namespace, want: Callable[[str], bool]) -> dict[str, object]:
    """One-shot runs, round trips, throughput and VLANs on two nodes; the VM figures."""
    out: dict[str, object] = {}
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
            out["node_rss_mb"] = rss_mb(procs[0].pid)
            if want("oneshot"):
                shots = await asyncio.to_thread(oneshot, root / "b1", args.oneshot_runs)
                out["oneshot_ms"] = percentiles(shots)
            if want("commands"):
                bus = await Bus.connect([url], name="bench")
                try:
                    rtt = await roundtrips(bus, "bench1", args.roundtrips)
                    cps = await throughput(url, "bench1", args.clients, args.per_client)
                    vps = await vlan_allocs(bus, ["bench1", "bench2"], args.aliases, 5)
                finally:
                    await bus.close()
                out.update(
                    roundtrip_ms=percentiles(rtt),
                    commands_per_s=round(cps, 1),
                    concurrent_clients=args.clients,
                    vlan_allocs_per_s=round(vps, 1),
                    vlan_nodes=2,
                )
            if want("vms") and args.kvm:
                out["vms"] = await vm_bench(url, root / "bvm", args.kvm)
        finally:
            for proc in procs:
                await stop_process(proc, 10)
            await server.stop()
    return out


# --- issue 16's table: the command path, vm info, VLANs, idle memory -------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _timed(bus: Bus, node: str, line: str, runs: int, namespace: str = "") -> list[float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await bus.command(node, line, namespace=namespace)
        samples.append(time.perf_counter() - t0)
    return samples


async def _per_command(
    bus: Bus, node: str, pid: int, line: str, runs: int, namespace: str = ""
) -> dict[str, object]:
    """p50/p99 of ``runs`` round trips of ``line``, and the CPU each side spent per command."""
    node0, client0 = cpu_seconds(pid), time.process_time()
    samples = await _timed(bus, node, line, runs, namespace)
    return {
        **percentiles(samples),
        "node_cpu_us": round((cpu_seconds(pid) - node0) / runs * 1e6, 1),
        "client_cpu_us": round((time.process_time() - client0) / runs * 1e6, 1),
    }


async def _clients(
    url: str, node: str, pid: int, line: str, clients: int, each: int
) -> dict[str, float]:
    """Commands per second of ``clients`` connections running ``each`` lines in turn."""
    buses = [await Bus.connect([url], name=f"speed{i}") for i in range(clients)]
    node0 = cpu_seconds(pid)
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(_timed(b, node, line, each) for b in buses))
        elapsed = time.perf_counter() - t0
    finally:
        for b in buses:
            await b.close()
    total = clients * each
    return {
        "per_s": round(total / elapsed, 1),
        "node_cpu_us": round((cpu_seconds(pid) - node0) / total * 1e6, 1),
    }


async def _seconds(bus: Bus, node: str, lines: list[str]) -> float:
    t0 = time.perf_counter()
    for line in lines:
        for reply in await bus.command(node, line):
            errors = [r.error for r in reply.responses if r.error]
            if errors:
                raise SystemExit(f"bench: {line!r} failed: {errors[0]}")
    return round(time.perf_counter() - t0, 3)


async def speed_bench(commands: int) -> dict[str, object]:
    """Issue 16's measures on a node (at log level error) and nats-server of their own."""
    if commands <= 0:
        return {}
    out: dict[str, object] = {}
    node = "speed"
    with tempfile.TemporaryDirectory(prefix="megabus-speed-") as tmp:
        root = Path(tmp)
        async with EmbeddedServer(root / "nats", port=0) as server:
            url = server.client_url
            proc = await start_node(node, url, root / "base", "-level", "error")
            bus = await Bus.connect([url], name="speed")
            try:
                await asyncio.sleep(2)  # settle
                assert server.pid is not None
                out["idle_mb"] = {"node": rss_mb(proc.pid), "server": rss_mb(server.pid)}
                pid = proc.pid
                await _timed(bus, node, "vm config memory 512", 200)  # warm
                out["roundtrip_vm_config_ms"] = await _per_command(
                    bus, node, pid, "vm config memory 512", 1000
                )
                out["clients8_vm_config"] = await _clients(
                    url, node, pid, "vm config memory 512", 8, 500
                )
                out["clients8_version"] = await _clients(url, node, pid, "version", 8, 500)

                # defined VMs (no QEMU behind them): vm info renders what the node keeps.
                # vm config is per namespace: each one needs it, or 1000 real guests start
                for ns in ("", "poll", "big"):
                    await bus.command(
                        node, "vm config qemu /nonexistent/qemu-for-bench", namespace=ns
                    )
                await bus.command(node, "vm launch kvm v[1-100]")
                await bus.command(node, "vm launch kvm p[1-10]", namespace="poll")
                out["vm_info_100_ms"] = await _per_command(bus, node, pid, "vm info", 200)
                out["vm_info_columns_100_ms"] = await _per_command(
                    bus, node, pid, ".columns name,state vm info", 200
                )
                out["vm_info_polled_10_ms"] = await _per_command(
                    bus, node, pid, "vm info", 1000, namespace="poll"
                )
                await bus.command(
                    node, "vm launch kvm w[1-1000]", namespace="big", idle_timeout=120
                )
                out["vm_info_1000_ms"] = await _per_command(
                    bus, node, pid, "vm info", 20, namespace="big"
                )
                for ns in ("", "poll", "big"):
                    await bus.command(node, "clear all", namespace=ns, idle_timeout=120)

                vlans: dict[str, float] = {}
                for run in ("fresh", "after_clear"):
                    if run == "after_clear":
                        await bus.command(node, "clear vlans")
                    vlans[f"vlans_add_1000_s_{run}"] = await _seconds(
                        bus, node, [f"vlans add {run}{i} {1000 + i}" for i in range(1000)]
                    )
                    vlans[f"vm_config_net_1000_s_{run}"] = await _seconds(
                        bus, node, [f"vm config net {run}-net{i}" for i in range(1000)]
                    )
                out["vlans"] = vlans

                # memory stays flat under load: idle again after many commands
                # (the node's figure before them includes what the 1000 VMs above
                # left in the allocator, so it is taken again here)
                each = max(1, commands // 8)
                before = {"node": rss_mb(proc.pid), "server": rss_mb(server.pid)}
                await _clients(url, node, pid, "vm config memory 512", 8, each)
                await asyncio.sleep(2)
                out["idle_mb_after"] = {
                    "commands": each * 8,
                    "before": before,
                    "node": rss_mb(proc.pid),
                    "server": rss_mb(server.pid),
                }
            finally:
                await bus.close()
                await stop_process(proc, 30)
    return {"speed": out}


async def _image(script: str, name: str, *args: str) -> Path:
    """Build (or find current) an image with ``ops/<script>``; the path of ``name`` in it."""
    build = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(Path(__file__).parent / script), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        raise SystemExit(f"bench: ops/{script} failed:\n{build.stderr}")
    return Path(build.stdout.strip().splitlines()[-1]) / name


async def _until(check: Callable[[], Awaitable[bool]], limit: float) -> float:
    """Seconds until ``check()`` holds, polled every 5 ms; SystemExit past ``limit``."""
    t0 = time.perf_counter()
    while not await check():
        if time.perf_counter() - t0 > limit:
            raise SystemExit(f"bench: not done within {limit:g}s")
        await asyncio.sleep(0.005)
    return time.perf_counter() - t0


async def lifecycle_bench(kvm: int, containers: list[int]) -> dict[str, object]:
    """Issue 16's lifecycle rows on a node of its own (at log level error).

    ``vm start all`` of ``kvm`` KVM guests (the command's round trip, QEMU under
    TCG where /dev/kvm is missing); for each count of containers (minicccfs):
    ``vm start all`` until every agent has connected (``cc`` counts them),
    ``vm kill all`` until every one is QUIT, then ``vm flush``.
    """
    if not kvm and not containers:
        return {}
    fs = await _image("images.py", "minicccfs")
    out: dict[str, object] = {}
    node = "life"
    with tempfile.TemporaryDirectory(prefix="megabus-life-") as tmp:
        root = Path(tmp)
        async with EmbeddedServer(root / "nats", port=0) as server:
            proc = await start_node(node, server.client_url, root / "base", "-level", "error")
            bus = await Bus.connect([server.client_url], name="life")

            async def run(line: str) -> tuple[float, list[list[str]]]:
                t0 = time.perf_counter()
                replies = await bus.command(node, line, idle_timeout=120)
                took = time.perf_counter() - t0
                errors = [r.error for rep in replies for r in rep.responses if r.error]
                if errors:
                    raise SystemExit(f"bench: {line}: {errors[:3]}")
                rows = [row for rep in replies for r in rep.responses for row in r.tabular or []]
                return took, rows

            async def states() -> list[str]:
                return [row[0] for row in (await run(".annotate false .columns state vm info"))[1]]

            try:
                await asyncio.sleep(1)
                if kvm:
                    await run("vm config memory 128")
                    await run(f"vm launch kvm k[1-{kvm}]")
                    took, _ = await run("vm start all")
                    out[f"kvm_start_all_{kvm}_ms"] = round(took * 1000, 1)
                    await run("clear all")
                for count in containers:
                    await run(f"vm config filesystem {fs}")
                    await run(f"vm launch container c[1-{count}]")
                    t0 = time.perf_counter()
                    await run("vm start all")

                    async def connected(n: int = count) -> bool:
                        return (await run("cc"))[1] == [[str(n)]]

                    await _until(connected, 120)
                    started = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    await run("vm kill all")

                    async def quit_all() -> bool:
                        return set(await states()) == {"QUIT"}

                    await _until(quit_all, 120)
                    killed = time.perf_counter() - t0
                    flushed, _ = await run("vm flush")
                    out[f"containers_{count}"] = {
                        "start_to_agents_s": round(started, 3),
                        "kill_all_to_quit_ms": round(killed * 1000, 1),
                        "flush_ms": round(flushed * 1000, 1),
                    }
                    await run("clear all")
            finally:
                await bus.close()
                await stop_process(proc, 30)
    return {"lifecycle": out}


def _figures(value: object, path: str = "") -> dict[str, float]:
    """Every number of a bench JSON by its dotted path (counts and settings included)."""
    if isinstance(value, dict):
        found: dict[str, float] = {}
        for key, inner in value.items():
            found.update(_figures(inner, f"{path}.{key}" if path else str(key)))
        return found
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {path: float(value)}
    return {}


def compare(new: dict[str, object], old_file: Path) -> dict[str, object]:
    """Each figure of ``new`` divided by the same figure of an earlier run."""
    old = _figures(json.loads(old_file.read_text()))
    ratios = {
        key: round(value / old[key], 3)
        for key, value in _figures(new).items()
        if old.get(key) and not key.endswith(".n")
    }
    return {"file": str(old_file), "ratio_new_to_old": ratios}


# --- mesh fan-out (the cluster issue) --------------------------------------------------

MESH_NODES = 20


async def mesh_fanout(runs: int) -> dict[str, object]:
    """``mesh send <all 20 nodes> vm info``: 19 nodes in this process, one in a subprocess.

    Then the subprocess node is frozen with SIGSTOP and the time until the
    answer arrives naming it is measured: first while its heartbeats are still
    fresh (the gather drops it once three are missed), then once it is known
    to be gone (it is named at once).
    """
    from megabus.config.settings import Settings
    from megabus.handlers.main import Node

    names = [f"m{i:02d}" for i in range(MESH_NODES)]
    spec = f"m[00-{MESH_NODES - 1}]"
    line = f"mesh send {spec} vm info"
    with tempfile.TemporaryDirectory(prefix="megabus-bench-mesh-") as tmp:
        root = Path(tmp)
        server = EmbeddedServer(root / "nats", port=0)
        await server.start()
        url = server.client_url
        nodes: list[Node] = []
        frozen = await start_node(names[-1], url, root / names[-1])
        bus = await Bus.connect([url], name="bench-mesh")
        try:
            for name in names[:-1]:
                node = Node(Settings(name=name, nats=[url], base=str(root / name), heartbeat=1.0))
                await node.start()
                nodes.append(node)

            async def answer() -> list[str]:
                replies = await bus.command(names[0], line, idle_timeout=60)
                return [r.error or r.host for rep in replies for r in rep.responses]

            for _ in range(300):  # 30 s at most for everyone to be seen
                listed = await bus.command(names[0], "mesh list all")
                if len(listed[-1].responses[0].data or []) == MESH_NODES:
                    break
                await asyncio.sleep(0.1)
            for _ in range(5):
                await answer()  # warm up
            samples = []
            for _ in range(runs):
                t0 = time.perf_counter()
                got = await answer()
                samples.append(time.perf_counter() - t0)
            if sorted(got) != sorted(names):
                raise SystemExit(f"bench: mesh send answered {got}")
            os.kill(frozen.pid, signal.SIGSTOP)
            try:
                t0 = time.perf_counter()
                got = await answer()
                first = time.perf_counter() - t0
                named = [g for g in got if names[-1] in g and g != names[-1]]
                dead = []
                for _ in range(20):
                    t0 = time.perf_counter()
                    await answer()
                    dead.append(time.perf_counter() - t0)
            finally:
                os.kill(frozen.pid, signal.SIGCONT)
        finally:
            await bus.close()
            for node in nodes:
                await node.stop()
            frozen.terminate()
            await frozen.wait()
            await server.stop()
    return {
        "mesh_send_vm_info_ms": {**percentiles(samples), "nodes": MESH_NODES},
        "mesh_send_sigstop_first_s": round(first, 2),
        "mesh_send_sigstop_named": named,
        "mesh_send_sigstop_known_dead_ms": percentiles(dead),
    }


# --- VM NICs (the networks issue) ------------------------------------------------------


async def nic_attach(vms: int) -> dict[str, object]:
    """Seconds to give ``vms`` VMs one NIC each (MAC, tap, OVS port), as that many
    concurrent launches do, and to destroy them again (needs Open vSwitch)."""
    from megabus.handlers.model.netspec import NetConfig
    from megabus.handlers.net import vmnics
    from megabus.handlers.net._bridges import Bridges

    if not vms:
        return {}
    net = Bridges(default=f"mb_bench{os.getpid() % 10000}")
    nics = [[NetConfig(alias="101", vlan=101, bridge=net.default)] for _ in range(vms)]
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(vmnics.create_taps(net, n) for n in nics))
        attach = time.perf_counter() - t0
        t0 = time.perf_counter()
        await net.destroy_taps([n[0].tap for n in nics])
        detach = time.perf_counter() - t0
    finally:
        await net.destroy_all()
    return {
        "vm_nics_attach_s": round(attach, 2),
        "vm_nics_destroy_s": round(detach, 2),
        "vm_nics": vms,
    }


async def tap_scale(count: int) -> dict[str, object]:
    """Seconds to create and to delete ``count`` taps on one bridge, in one batch each
    (2.8 took 90 s to delete 250); needs Open vSwitch."""
    from megabus.handlers.net._bridges import Bridges, TapSpec

    if not count:
        return {}
    net = Bridges(default=f"mb_taps{os.getpid() % 10000}")
    try:
        await net.get()
        t0 = time.perf_counter()
        names = await net.create_taps([TapSpec(net.default, 100 + i % 4) for i in range(count)])
        created = time.perf_counter() - t0
        t0 = time.perf_counter()
        await net.destroy_taps(names)
        deleted = time.perf_counter() - t0
    finally:
        await net.destroy_all()
    return {"taps": count, "taps_create_s": round(created, 2), "taps_delete_s": round(deleted, 2)}


# --- VLAN allocation through a NATS server failover (the cluster issue) ----------------

FAILOVER_NODES = 4


async def nats_failover(aliases: int) -> dict[str, object]:
    """VLAN aliases allocated by 4 nodes on a 3-server JetStream cluster whose
    bucket leader is killed (SIGKILL) halfway.

    Each alias is asked for by two nodes at once; a failed command is retried
    (and counted) until it succeeds. Afterwards every alias must have exactly
    one VLAN and no VLAN two aliases: ``failover_duplicates`` and
    ``failover_lost`` count the breaches.
    """
    import socket

    from megabus.config.settings import Settings
    from megabus.handlers.main import Node

    if not aliases:
        return {}

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port

    with tempfile.TemporaryDirectory(prefix="megabus-bench-failover-") as tmp:
        root = Path(tmp)
        routes = [free_port() for _ in range(3)]
        servers = [
            EmbeddedServer(
                root / f"s{i}",
                port=0,
                server_name=f"s{i}",
                cluster_name="bench",
                cluster_port=routes[i],
                routes=[f"nats://127.0.0.1:{p}" for j, p in enumerate(routes) if j != i],
            )
            for i in range(3)
        ]
        nodes: list[Node] = []
        bus: Bus | None = None
        try:
            await asyncio.gather(*(s.start() for s in servers))
            urls = [s.client_url for s in servers]
            bus = await Bus.connect(urls[::-1], name="bench-failover")
            for _ in range(300):  # 30 s for the cluster to place an R3 stream
                try:
                    await bus.js.add_stream(name="probe", subjects=["probe"], num_replicas=3)
                    await bus.js.delete_stream("probe")
                    break
                except Exception:  # not ready yet, whatever the error
                    await asyncio.sleep(0.1)
            orders = [urls, urls[1:] + urls[:1], urls[2:] + urls[:2], urls[::-1]]
            for i in range(FAILOVER_NODES):
                node = Node(
                    Settings(name=f"f{i}", nats=orders[i], base=str(root / f"f{i}"), heartbeat=1.0)
                )
                await node.start()
                nodes.append(node)
            info = await bus.js.stream_info(f"KV_{bus.subjects.bucket('vlans')}")
            leader = next(s for s in servers if s.server_name == info.cluster.leader)  # type: ignore[union-attr]
            names = [n.name for n in nodes]
            jobs = [
                (names[(k + d) % FAILOVER_NODES], f"fo{k}") for k in range(aliases) for d in (0, 1)
            ]
            queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
            for job in jobs:
                queue.put_nowait(job)
            failed = 0
            done = 0
            latencies: list[float] = []
            killed_at = 0.0
            half = asyncio.Event()

            async def allocate(node: str, alias: str) -> None:
                nonlocal failed
                assert bus is not None
                for _ in range(600):
                    try:
                        replies = await bus.command(node, f"vm config net {alias}", idle_timeout=15)
                        if not any(r.error for rep in replies for r in rep.responses):
                            return
                    except Exception:  # every failure is retried and counted
                        pass
                    failed += 1
                    await asyncio.sleep(0.05)
                raise SystemExit(f"bench: {alias} on {node} never allocated")

            async def worker() -> None:
                nonlocal done
                while not queue.empty():
                    node, alias = queue.get_nowait()
                    t0 = time.perf_counter()
                    await allocate(node, alias)
                    latencies.append(time.perf_counter() - t0)
                    done += 1
                    if done >= len(jobs) // 2:
                        half.set()

            async def killer() -> None:
                nonlocal killed_at
                await half.wait()
                assert leader.pid is not None
                os.kill(leader.pid, signal.SIGKILL)
                killed_at = time.perf_counter()
                await leader.stop()

            t0 = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                for _ in range(4 * FAILOVER_NODES):
                    tg.create_task(worker())
                tg.create_task(killer())
            elapsed = time.perf_counter() - t0
            after = time.perf_counter() - killed_at
            # every node's table, once its cache has caught up
            tables = []
            for name in names:
                rows: list[list[str]] = []
                for _ in range(300):
                    (reply,) = await bus.command(name, "vlans")
                    rows = [r for resp in reply.responses for r in resp.tabular or []]
                    if len([r for r in rows if r[-2].startswith("fo")]) >= aliases:
                        break
                    await asyncio.sleep(0.1)
                tables.append(sorted((r[-2], r[-1]) for r in rows if r[-2].startswith("fo")))
        finally:
            if bus is not None:
                await bus.close()
            for node in nodes:
                await node.stop()
            for server in servers:
                await server.stop()
    table = tables[0]
    by_alias: dict[str, set[str]] = {}
    for alias, vlan in table:
        by_alias.setdefault(alias, set()).add(vlan)
    vlan_list = [vlan for _, vlan in table]
    duplicates = sum(len(v) - 1 for v in by_alias.values()) + len(vlan_list) - len(set(vlan_list))
    return {
        "failover_allocs_per_s": round(len(jobs) / elapsed, 1),
        "failover_aliases": aliases,
        "failover_commands": len(jobs),
        "failover_nodes": FAILOVER_NODES,
        "failover_servers": 3,
        "failover_retried_attempts": failed,
        "failover_duplicates": duplicates,
        "failover_lost": aliases - len(by_alias),
        "failover_nodes_agree": all(t == table for t in tables),
        "failover_alloc_ms": percentiles(latencies),
        "failover_after_kill_s": round(after, 2),
    }


# --- cc: exec to 50 agents, send to 10 (the cc issue) -----------------------------------


async def cc_bench(agents: int, rounds: int, send_agents: int, send_mb: int) -> dict[str, object]:
    """``cc exec hostname`` to ``agents`` real agents (TCP, ``cc listen``) until every
    response is in, ``rounds`` times; then ``cc send`` of a ``send_mb`` MB file to
    ``send_agents`` of them until each has it (aggregate MB/s: bytes delivered over
    wall time, the node reading the file once per agent).

    Responses are counted as the node publishes them on
    ``<root>.cc.minimega.resp.<id>.<uuid>``; agents are ``python -m megabus.agent``
    processes on this machine, sharing its cores with the node.
    """
    import socket

    from nats.aio.msg import Msg

    from megabus.config.settings import Settings
    from megabus.handlers.main import Node

    if not agents:
        return {}
    with tempfile.TemporaryDirectory(prefix="megabus-bench-cc-") as tmp:
        root = Path(tmp)
        server = EmbeddedServer(root / "nats", port=0)
        await server.start()
        url = server.client_url
        node = Node(Settings(name="cc1", nats=[url], base=str(root / "cc1"), heartbeat=1.0))
        await node.start()
        bus = await Bus.connect([url], name="bench-cc")
        procs: list[asyncio.subprocess.Process] = []
        got: dict[int, set[str]] = {}
        arrived = asyncio.Event()

        async def on_response(msg: Msg) -> None:
            parts = msg.subject.split(".")
            got.setdefault(int(parts[-2]), set()).add(parts[-1])
            arrived.set()

        async def until(cmd_id: int, count: int, limit: float) -> None:
            async with asyncio.timeout(limit):
                while len(got.get(cmd_id, ())) < count:
                    arrived.clear()
                    await arrived.wait()

        async def create(line: str) -> int:
            (reply,) = await bus.command("cc1", line, idle_timeout=60)
            (resp,) = reply.responses
            if resp.error:
                raise SystemExit(f"bench: {line}: {resp.error}")
            return int(str(resp.data))

        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            await bus.command("cc1", f"cc listen {port}")
            sub = await bus.nc.subscribe(bus.subjects.cc("minimega", "resp") + ".>", cb=on_response)
            for i in range(agents):
                argv = [sys.executable, "-m", "megabus.agent", "-parent", "127.0.0.1"]
                argv += ["-port", str(port), "-uuid", f"{i:08d}-0000-4000-8000-{i:012d}"]
                argv += ["-path", str(root / "agents" / str(i)), "-retry", "0.5"]
                procs.append(
                    await asyncio.create_subprocess_exec(
                        *argv,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                )
            t0 = time.perf_counter()
            for _ in range(1200):  # 120 s at most for every agent to dial in
                (reply,) = await bus.command("cc1", "cc")
                if reply.responses[0].tabular == [[str(agents)]]:
                    break
                await asyncio.sleep(0.1)
            else:
                raise SystemExit(f"bench: {agents} agents did not all connect")
            connect_s = time.perf_counter() - t0
            samples = []
            for _ in range(rounds + 1):  # the first round warms up
                t0 = time.perf_counter()
                cmd_id = await create("cc exec hostname")
                await until(cmd_id, agents, 60)
                samples.append(time.perf_counter() - t0)
            samples = samples[1:]
            # the send goes to send_agents of them: stop the others
            for proc in procs[send_agents:]:
                proc.kill()
                await proc.wait()
            for _ in range(600):
                (reply,) = await bus.command("cc1", "cc")
                if reply.responses[0].tabular == [[str(send_agents)]]:
                    break
                await asyncio.sleep(0.1)
            files = root / "cc1" / "files"
            files.mkdir(parents=True, exist_ok=True)
            size = send_mb * 1024 * 1024
            await asyncio.to_thread(_random_file, files / "big.bin", send_mb)
            t0 = time.perf_counter()
            cmd_id = await create("cc send big.bin")
            await until(cmd_id, send_agents, 600)
            send_s = time.perf_counter() - t0
            delivered = [
                (root / "agents" / str(i) / "files" / "big.bin").stat().st_size
                for i in range(send_agents)
            ]
            if delivered != [size] * send_agents:
                raise SystemExit(f"bench: cc send delivered {delivered}")
            await sub.unsubscribe()
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            await bus.close()
            await node.stop()
            await server.stop()
    return {
        "cc_exec_all_ms": {**percentiles(samples), "agents": agents},
        "cc_agents_connect_s": round(connect_s, 2),
        "cc_send_mb_per_s": round(send_mb * send_agents / send_s, 1),
        "cc_send": {"mb": send_mb, "agents": send_agents, "seconds": round(send_s, 2)},
    }


# --- pipes (the pipes issue) -------------------------------------------------------------

PIPE_FANOUT = 10


async def pipe_bench(messages: int) -> dict[str, object]:
    """Values per second through a pipe from one node to another, and to 10 readers.

    The reader node is a ``megabus node`` process; the writer is the pipes
    engine of a second node's worth (its own connection, in this process),
    writing as fast as it is let. A value counts as through once the reader
    node's ``pipe`` counts it (``bp``), or once each of the 10 ``plumb fan
    fout<i>`` pipelines on the reader node has passed it on. Round-robin,
    which asks every node for its readers before each value, is measured on a
    tenth as many values.
    """
    from megabus.handlers.pipes import Plumber

    if not messages:
        return {}
    with tempfile.TemporaryDirectory(prefix="megabus-bench-pipe-") as tmp:
        root = Path(tmp)
        server = EmbeddedServer(root / "nats", port=0)
        await server.start()
        url = server.client_url
        reader_node = await start_node("pr", url, root / "pr")
        bus = await Bus.connect([url], name="bench-pipe")
        wbus = await Bus.connect([url], name="pw")
        writer = Plumber("pw")
        await writer.start(wbus, lambda: ["pw", "pr"])
        try:

            async def counts() -> dict[str, int]:
                replies = await bus.command("pr", ".columns name,count pipe", idle_timeout=30)
                return {
                    row[0].removeprefix("minimega//"): int(row[1])
                    for rep in replies
                    for r in rep.responses
                    for row in r.tabular or []
                }

            async def until(want: dict[str, int], limit: float = 120.0) -> None:
                async with asyncio.timeout(limit):
                    while True:
                        have = await counts()
                        if all(have.get(k, 0) >= v for k, v in want.items()):
                            return
                        await asyncio.sleep(0.02)

            async def write(pipe: str, n: int, tag: str) -> float:
                t0 = time.perf_counter()
                for i in range(n):
                    await writer.write(f"minimega//{pipe}", f"{tag} {i}")
                return t0

            await bus.command("pr", "plumb bp bpout")
            await write("bp", 200, "warm")
            await until({"bp": 200})
            t0 = await write("bp", messages, "m")
            await until({"bp": 200 + messages})
            one = messages / (time.perf_counter() - t0)

            for i in range(PIPE_FANOUT):
                await bus.command("pr", f"plumb fan fout{i}")
            fan_n = max(1, messages // 4)
            t0 = await write("fan", fan_n, "f")
            await until({f"fout{i}": fan_n for i in range(PIPE_FANOUT)})
            fan = fan_n / (time.perf_counter() - t0)

            await bus.command("pr", "plumb rr rrout")
            writer.set_mode("minimega//rr", "round-robin")
            rr_n = max(1, messages // 10)
            t0 = await write("rr", rr_n, "r")
            await until({"rrout": rr_n})
            rr = rr_n / (time.perf_counter() - t0)
        finally:
            await writer.stop()
            await wbus.close()
            await bus.close()
            reader_node.terminate()
            await reader_node.wait()
            await server.stop()
    return {
        "pipe_msgs_per_s": round(one, 1),
        "pipe_msgs": messages,
        "pipe_fanout_msgs_per_s": round(fan, 1),
        "pipe_fanout_deliveries_per_s": round(fan * PIPE_FANOUT, 1),
        "pipe_fanout_readers": PIPE_FANOUT,
        "pipe_round_robin_msgs_per_s": round(rr, 1),
    }


# --- routers: commit to routes in place (the router issue) -------------------------------

#: Static routes each benched router gets (all must reach its kernel table).
ROUTER_ROUTES = 5


def _router_daemons() -> dict[str, list[int]]:
    """PIDs of running router daemons (``python3 -m megabus.router`` without ``-u``) by pid ns."""
    found: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            ns = os.readlink(f"/proc/{entry}/ns/pid")
        except OSError:
            continue
        if b"megabus.router" in argv and b"-u" not in argv:
            found.setdefault(ns, []).append(int(entry))
    return found


def _bird_routes(pid: int) -> int:
    """How many routes BIRD put in the kernel table of the container whose init is ``pid``."""
    out = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "ip", "-4", "route", "show", "proto", "bird"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return len(out.splitlines())


async def router_bench(routers: int) -> dict[str, object]:
    """``router <vm> commit`` for ``routers`` router containers at once: seconds from the
    commits until every router has its static routes in its kernel table; and the resident
    memory of the router daemons (``minirouterfs``; needs root and Open vSwitch).

    Each router gets two addresses, a DHCP range, a DNS entry and :data:`ROUTER_ROUTES`
    static routes. The time covers the commit, the delivery through cc (three commands
    each), ``minirouter -u`` applying the config (dnsmasq and BIRD restarted) and BIRD
    installing the routes.
    """
    from nats.aio.msg import Msg

    from megabus.config.settings import Settings
    from megabus.handlers.main import Node

    if not routers:
        return {}
    fs = await _image("router_image.py", "minirouterfs", "--no-kvm")
    bridge = f"mb_rtr{os.getpid() % 10000}"
    with tempfile.TemporaryDirectory(prefix="megabus-bench-router-") as tmp:
        root = Path(tmp)
        server = EmbeddedServer(root / "nats", port=0)
        await server.start()
        node = Node(
            Settings(name="rt1", nats=[server.client_url], base=str(root / "rt1"), heartbeat=1.0)
        )
        await node.start()
        bus = await Bus.connect([server.client_url], name="bench-router")
        done: dict[int, int] = {}
        arrived = asyncio.Event()

        async def on_response(msg: Msg) -> None:
            event = json.loads(msg.data)
            done[int(event["id"])] = int(event.get("exit_code", 0))
            arrived.set()

        async def run(line: str) -> list[list[str]]:
            (reply,) = await bus.command("rt1", line, idle_timeout=120)
            errors = [r.error for r in reply.responses if r.error]
            if errors:
                raise SystemExit(f"bench: {line}: {errors}")
            return [row for r in reply.responses for row in (r.tabular or [])]

        try:
            sub = await bus.nc.subscribe(bus.subjects.cc("minimega", "resp") + ".>", cb=on_response)
            await run(f"vm config filesystem {fs}")
            await run(f"vm config preinit {fs}/preinit")
            await run(f"vm config net {bridge},3001 {bridge},3002")
            await run(f"vm launch container rtr[0-{routers - 1}]")
            await run("vm start all")
            for _ in range(1200):  # 120 s at most for every agent to dial in
                if await run("cc") == [[str(routers)]]:
                    break
                await asyncio.sleep(0.1)
            else:
                raise SystemExit(f"bench: {routers} router agents did not all connect")
            for i in range(routers):
                lines = [
                    f"interface 0 10.200.{i}.1/24",
                    f"interface 1 10.201.{i}.1/24",
                    f"dhcp 10.200.{i}.1 range 10.200.{i}.100 10.200.{i}.200",
                    f"dns 10.200.{i}.9 host{i}.bench",
                ]
                lines += [
                    f"route static 10.{210 + r}.{i}.0/24 10.200.{i}.2" for r in range(ROUTER_ROUTES)
                ]
                for line in lines:
                    await run(f"router rtr{i} {line}")
            pids = {row[0]: int(row[1]) for row in await run(".columns name,pid vm info")}
            t0 = time.perf_counter()
            await asyncio.gather(*(run(f"router rtr{i} commit") for i in range(routers)))
            commit_s = time.perf_counter() - t0
            # each router's last command is its `minirouter -u`
            last: dict[str, int] = {}
            for row in await run(".columns id,prefix cc commands"):
                last[row[1]] = max(last.get(row[1], 0), int(row[0]))
            wanted = [last[f"minirouter-rtr{i}"] for i in range(routers)]
            async with asyncio.timeout(120):
                while not all(i in done for i in wanted):
                    arrived.clear()
                    await arrived.wait()
            applied_s = time.perf_counter() - t0
            failed = [i for i in wanted if done[i] != 0]
            if failed:
                raise SystemExit(f"bench: router configs {failed} did not apply")
            async with asyncio.timeout(60):
                while True:
                    counts = await asyncio.gather(
                        *(asyncio.to_thread(_bird_routes, pid) for pid in pids.values())
                    )
                    if all(c >= ROUTER_ROUTES for c in counts):
                        break
                    await asyncio.sleep(0.05)
            routes_s = time.perf_counter() - t0
            await sub.unsubscribe()
            rss = []
            for pid in pids.values():
                ns = os.readlink(f"/proc/{pid}/ns/pid")
                rss += [rss_mb(p) for p in _router_daemons().get(ns, [])]
        finally:
            try:
                await run("clear all")
            finally:
                await bus.close()
                await node.stop()
                await server.stop()
    return {
        "routers": routers,
        "router_commit_s": round(commit_s, 3),
        "router_applied_s": round(applied_s, 2),
        "router_routes_in_place_s": round(routes_s, 2),
        "router_daemon_rss_mb": {
            "p50": round(statistics.median(rss), 1) if rss else 0.0,
            "max": max(rss, default=0.0),
            "n": len(rss),
        },
    }


def _random_file(path: Path, mb: int) -> None:
    with open(path, "wb") as fh:
        for _ in range(mb):
            fh.write(os.urandom(1024 * 1024))


# --- the cost of security (issue 15) ------------------------------------------------------


def _bench_ca(folder: Path) -> dict[str, str]:
    """A throw-away CA (``openssl`` CLI, EC keys) with one certificate for 127.0.0.1.

    The same certificate serves the server and the clients (both usages).
    """
    folder.mkdir(parents=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    f = {k: str(folder / k) for k in ("ca.pem", "ca.key", "cert.pem", "key.pem", "req", "ext")}
    openssl("req", "-x509", *ec, "-keyout", f["ca.key"], "-out", f["ca.pem"], "-days", "1",
            "-subj", "/CN=bench CA", "-addext", "basicConstraints=critical,CA:TRUE")  # fmt: skip
    openssl("req", "-new", *ec, "-keyout", f["key.pem"], "-out", f["req"], "-subj", "/CN=bench")
    Path(f["ext"]).write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    openssl("x509", "-req", "-in", f["req"], "-CA", f["ca.pem"], "-CAkey", f["ca.key"],
            "-CAcreateserial", "-out", f["cert.pem"], "-days", "1",
            "-extfile", f["ext"])  # fmt: skip
    return f


async def security_bench(runs: int, clients: int, per_client: int) -> dict[str, object]:
    """Round trips, commands/s and ``megabus -e`` with security off, then on.

    "on" is what a secured site runs: user/password login with per-role
    permissions, and TLS both ways (the server asks for client certificates).
    """
    if runs <= 0:
        return {}
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="megabus-bench-sec-") as tmp:
        root = Path(tmp)
        ca = await asyncio.to_thread(_bench_ca, root / "ca")
        for mode in ("off", "on"):
            folder = root / mode
            connect: dict[str, Any] = {}
            flags: list[str] = []
            users: list[dict[str, object]] = []
            tls = None
            if mode == "on":
                creds = await asyncio.to_thread(ensure_local_credentials, folder / "auth")
                users = server_users(creds, "mb")
                tls = ServerTLS(cert=ca["cert.pem"], key=ca["key.pem"], ca=ca["ca.pem"])
                files = TlsFiles(ca["ca.pem"], ca["cert.pem"], ca["key.pem"])
                connect = {"credentials": creds["operator"], "tls": files}
                flags = ["-tls-ca", ca["ca.pem"], "-tls-cert", ca["cert.pem"],
                         "-tls-key", ca["key.pem"]]  # fmt: skip
            server = EmbeddedServer(folder / "nats", port=0, users=users, tls=tls)
            await server.start()
            url = server.client_url
            node_flags = [*flags, "-credentials", str(folder / "auth" / "node.json")]
            proc = await start_node("sec", url, folder / "b", *(node_flags if users else []))
            try:
                bus = await Bus.connect([url], name="bench-sec", **connect)
                try:
                    await roundtrips(bus, "sec", 20)  # warm-up
                    rtt = await roundtrips(bus, "sec", runs)
                finally:
                    await bus.close()
                cps = await throughput(url, "sec", clients, per_client, **connect)
                cli = [MEGABUS, "-nats", url, "-node", "sec", "-base", str(folder / "b"), *flags]
                if users:
                    cli += ["-credentials", str(folder / "auth" / "operator.json")]
                shots = await asyncio.to_thread(_oneshots, cli, 10)
            finally:
                if proc.returncode is None:
                    proc.terminate()
                    await proc.wait()
                await server.stop()
            out[mode] = {
                "roundtrip_ms": percentiles(rtt),
                "commands_per_s": round(cps, 1),
                "oneshot_ms": percentiles(shots),
            }
    return {"security": {**out, "on_is": "user/password and per-role permissions, mutual TLS"}}


def _oneshots(cli: list[str], runs: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEGABUS_")}
    samples = []
    for _ in range(runs + 2):
        t0 = time.perf_counter()
        done = subprocess.run([*cli, "-e", "version"], capture_output=True, env=env, check=False)
        samples.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"bench: megabus -e version failed: {done.stderr.decode()}")
    return samples[2:]


async def fuzz_bench(cases: int) -> dict[str, object]:
    """Executions per second of a short ``ops/fuzz.py`` run against a live node."""
    if cases <= 0:
        return {}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("fuzz.py")), "--cases", str(cases),
        "--seed", "1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    result = json.loads(out)
    return {"fuzz": {k: result[k] for k in ("cases", "execs_per_s", "ok", "rss_growth_mb", "seed")}}


async def client_bench(runs: int) -> dict[str, object]:
    """The typed client's costs over a node's own secured server."""
    if runs <= 0:
        return {}
    from megabus.client import Client

    with tempfile.TemporaryDirectory(prefix="megabus-bench-client-") as tmp:
        base = Path(tmp) / "base"
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = str(free.getsockname()[1])
        proc = await asyncio.create_subprocess_exec(
            MEGABUS, "node", "-name", "benchc", "-base", str(base), "-nats-port", port,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(300):  # 30 s at most
                if (base / "megabus.json").exists() or proc.returncode is not None:
                    break
                await asyncio.sleep(0.1)
            connects = []
            for _ in range(20):
                t0 = time.perf_counter()
                client = await Client.connect(base=str(base))
                connects.append(time.perf_counter() - t0)
                await client.close()
            async with await Client.connect(base=str(base)) as mm:
                typed = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    await mm.version()
                    typed.append(time.perf_counter() - t0)
                raw = await roundtrips(mm.bus, "benchc", runs)
                methods = len(mm.methods)
        finally:
            proc.terminate()
            await proc.wait()
    return {
        "client": {
            "connect_ms": percentiles(connects),
            "method_roundtrip_ms": percentiles(typed),
            "bus_command_roundtrip_ms": percentiles(raw),
            "methods": methods,
        }
    }


# --- many hosts (ops/lab.py) ------------------------------------------------------------

LAB = Path(__file__).resolve().parent / "lab.py"
#: Bytes each throughput run sends.
LAB_STREAM_BYTES = 200 * 1024 * 1024
_SINK = (
    "import socket,sys\n"
    "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind((sys.argv[1],5201));s.listen(1);print('ready',flush=True)\n"
    "c,_=s.accept()\n"
    "while c.recv(1<<20):pass\n"
)
_SOURCE = (
    "import socket,sys,time\n"
    "s=socket.create_connection((sys.argv[1],5201),timeout=30);b=bytes(1<<20);n=int(sys.argv[2])\n"
    "t=time.perf_counter()\n"
    "for _ in range(n>>20):s.sendall(b)\n"
    "s.shutdown(socket.SHUT_WR);s.recv(1);print(time.perf_counter()-t)\n"
)


def _lab(directory: Path, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, str(LAB), "--dir", str(directory), *args],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if run.returncode != 0:
        raise RuntimeError(f"ops/lab.py {' '.join(args)}: {run.stderr.strip()}")
    return run.stdout


async def _in_netns(pid: str, *argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "nsenter", "-t", pid, "-n", *argv, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return out.decode()


async def _ensure_ip(pid: str, cidr: str) -> None:
    # the container's DHCP client flushes veth0 once as it starts: add until it stays
    for _ in range(120):
        if cidr in await _in_netns(pid, "ip", "-4", "-o", "addr", "show", "dev", "veth0"):
            await asyncio.sleep(1)
            if cidr in await _in_netns(pid, "ip", "-4", "-o", "addr", "show", "dev", "veth0"):
                return
        await _in_netns(pid, "ip", "addr", "add", cidr, "dev", "veth0")
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{cidr} does not stay on container {pid}")


async def _rtt_ms(pid: str, ip: str) -> dict[str, float]:
    out = await _in_netns(pid, "ping", "-q", "-c", "50", "-i", "0.02", "-W", "2", ip)
    for line in out.splitlines():
        if line.startswith("rtt"):  # rtt min/avg/max/mdev = a/b/c/d ms
            lo, avg, hi, mdev = (float(x) for x in line.split("=")[1].split()[0].split("/"))
            return {"min": lo, "avg": avg, "max": hi, "mdev": mdev}
    raise RuntimeError(f"ping {ip}: {out}")


async def _tcp_mb_s(src: str, dst: str, dst_ip: str) -> float:
    py = sys.executable
    sink = await asyncio.create_subprocess_exec(
        "nsenter", "-t", dst, "-n", py, "-c", _SINK, dst_ip, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert sink.stdout is not None
        await asyncio.wait_for(sink.stdout.readline(), 30)
        secs = float(await _in_netns(src, py, "-c", _SOURCE, dst_ip, str(LAB_STREAM_BYTES)))
    finally:
        if sink.returncode is None:
            sink.kill()
        await sink.wait()
    return round(LAB_STREAM_BYTES / secs / 1e6, 1)


async def lab_bench(containers: int) -> dict[str, object]:
    if not containers:
        return {}
    import random

    with tempfile.TemporaryDirectory(prefix="megabus-bench-lab-") as tmp:
        t0 = time.perf_counter()
        status = json.loads(_lab(
            Path(tmp), "up", "3", "--name", "bench", "--net", "10.78.0",
            "--port", str(random.randrange(20000, 40000)),
        ))  # fmt: skip
        up_s = time.perf_counter() - t0
        bus = await Bus.connect(status["nats"].split(","), name="bench")
        try:

            async def ok(line: str, ns: str) -> list[Any]:
                replies = await bus.command("mm1", line, namespace=ns, idle_timeout=300)
                responses = [r for rep in replies for r in rep.responses]
                errors = [r.error for r in responses if r.error]
                if errors:
                    raise RuntimeError(f"{line}: {errors[:3]}")
                return responses

            for line in (
                "ns add-hosts localhost",
                "ns run bridge trunk mega_bridge eth1",
                "ns bridge tun vxlan",
                "vm config filesystem /root/uminicccfs",
            ):
                await ok(line, "net")  # fmt: skip
            for net, host, name in (
                ("10", "mm1", "t1"),
                ("10", "mm2", "t2"),
                ("tun,30", "mm1", "v1"),
                ("tun,30", "mm2", "v2"),
            ):
                for line in (
                    f"vm config net {net}",
                    f"vm config schedule {host}",
                    f"vm launch container {name}",
                ):
                    await ok(line, "net")  # fmt: skip
            await ok("vm start all", "net")
            pids = {row[0]: row[1] for r in await ok(".columns name,pid vm info", "net")
                    for row in r.tabular or []}  # fmt: skip
            for i, name in enumerate(("t1", "t2", "v1", "v2"), start=1):
                await _ensure_ip(pids[name], f"10.9.0.{i}/24")
            links = {
                "trunk": {
                    "ping_ms": await _rtt_ms(pids["t1"], "10.9.0.2"),
                    "tcp_mb_per_s": await _tcp_mb_s(pids["t1"], pids["t2"], "10.9.0.2"),
                },
                "vxlan": {
                    "ping_ms": await _rtt_ms(pids["v1"], "10.9.0.4"),
                    "tcp_mb_per_s": await _tcp_mb_s(pids["v1"], pids["v2"], "10.9.0.4"),
                },
            }
            await ok("clear namespace net", "")
            await ok("ns add-hosts localhost", "many")
            await ok("vm config filesystem /root/uminicccfs", "many")
            t0 = time.perf_counter()
            await ok(f"vm launch container {containers}", "many")
            launch_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            await ok("vm start all", "many")
            start_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            await ok("cc exec hostname", "many")
            answered = 0
            while answered < containers and time.perf_counter() - t0 < 600:
                text = "\n".join(r.response for r in await ok("cc response all", "many"))
                answered = sum(1 for line in text.splitlines() if line.startswith("vm-"))
                await asyncio.sleep(0.5)
            cc_s = time.perf_counter() - t0
            hosts = {r.host for r in await ok(".columns name vm info", "many") if r.tabular}
        finally:
            await bus.close()
            _lab(Path(tmp), "down")
    return {
        "lab": {
            "hosts": 3,
            "up_s": round(up_s, 1),
            **links,
            "containers": containers,
            "container_hosts": len(hosts),
            "launch_s": round(launch_s, 1),
            "start_s": round(start_s, 1),
            "cc_exec_all_answered_s": round(cc_s, 1),
            "cc_answered": answered,
        }
    }


# --- files across the cluster (issue 11) -------------------------------------------------


async def _transfers_left(bus: Bus, node: str) -> int:
    replies = await bus.command(node, "file status", idle_timeout=30)
    return sum(len(r.tabular or []) for rep in replies for r in rep.responses)


async def files_bench(mb: int, hash_mb: int) -> dict[str, object]:
    """``file get`` of one node's ``mb`` MB file by three nodes at once; hash time."""
    out: dict[str, object] = {}
    if hash_mb:
        with tempfile.TemporaryDirectory(prefix="megabus-bench-hash-") as tmp:
            path = Path(tmp) / "h"
            await asyncio.to_thread(_random_file, path, hash_mb)
            t0 = time.perf_counter()
            await asyncio.to_thread(digest_file, str(path))
            took = time.perf_counter() - t0
            out["files_hash_s"] = round(took, 2)
            out["files_hash_mb"] = hash_mb
            out["files_hash_mb_per_s"] = round(hash_mb / took, 1)
    if not mb:
        return out
    with tempfile.TemporaryDirectory(prefix="megabus-bench-files-") as tmp:
        root = Path(tmp)
        server = EmbeddedServer(root / "nats", port=0)
        await server.start()
        url = server.client_url
        names = ["fsrc", "fget1", "fget2", "fget3"]
        procs: dict[str, asyncio.subprocess.Process] = {}
        try:
            for name in names:
                procs[name] = await start_node(name, url, root / name)
            src = root / "fsrc" / "files" / "big.img"
            src.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(_random_file, src, mb)
            await asyncio.sleep(3)  # settle: every node sees the others
            bus = await Bus.connect([url], name="bench-files")
            try:
                # the source hashes its file on the first info request: not part of the rate
                await asyncio.to_thread(digest_file, str(src))
                peak = dict.fromkeys(names, 0.0)
                t0 = time.perf_counter()
                await asyncio.gather(
                    *(bus.command(n, "file get big.img", idle_timeout=120) for n in names[1:])
                )
                for _ in range(36000):  # one hour at most
                    for n in names:
                        peak[n] = max(peak[n], rss_mb(procs[n].pid))
                    left = [await _transfers_left(bus, n) for n in names[1:]]
                    done = [(root / n / "files" / "big.img").exists() for n in names[1:]]
                    if not any(left) and all(done):
                        break
                    await asyncio.sleep(0.1)
                elapsed = time.perf_counter() - t0
            finally:
                await bus.close()
            want = digest_file(str(src)).hash
            for n in names[1:]:
                got = digest_file(str(root / n / "files" / "big.img")).hash
                if got != want:
                    raise SystemExit(f"bench: {n} got a different file ({got} != {want})")
            out.update(
                files_transfer_mb=mb,
                files_fetchers=3,
                files_transfer_s=round(elapsed, 2),
                files_aggregate_mb_per_s=round(3 * mb / elapsed, 1),
                files_node_peak_rss_mb=peak,
            )
        finally:
            for proc in procs.values():
                await stop_process(proc, 10)
            await server.stop()
    return out


# --- screens: web UI, screenshots, VNC shim (issue 12) ---------------------------------


async def _rfb_mb_per_s(open_client: Any, seconds: float) -> float:
    """Full framebuffer updates read back to back for ``seconds``: MB/s."""
    client = await open_client()
    try:
        got = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            await client.screenshot(10)
            got += client.width * client.height * 4
        return round(got / (time.perf_counter() - t0) / 1e6, 1)
    finally:
        await client.close()


async def screens_bench(vms: int) -> dict[str, object]:
    """The ``screens`` figures (see the module docstring)."""
    if vms <= 0:
        return {}
    from playwright.async_api import async_playwright

    from megabus.cli.args import Target
    from megabus.cli.web import serving
    from megabus.handlers.vnc import rfb

    out: dict[str, object] = {"web_vms": vms}
    with tempfile.TemporaryDirectory(prefix="megabus-bench-web-") as tmp:
        root = Path(tmp)
        async with EmbeddedServer(root / "nats", port=0) as server:
            url = server.client_url
            node = "benchweb"
            proc = await start_node(node, url, root / "base")
            bus = await Bus.connect([url], name="bench-web")
            try:
                # the table's VMs: defined, not run (a QEMU that cannot start: ERROR)
                await _vm_cmd(bus, node, "vm config qemu /nonexistent/qemu-for-bench")
                await _vm_cmd(bus, node, f"vm launch kvm w[1-{vms}]")
                await _vm_cmd(bus, node, "clear vm config qemu")
                async with serving(Target(node, [url]), root / "files", port=0) as web_url:
                    out.update(await _page_figures(bus, node, web_url, vms, async_playwright))
                    # one real guest for screenshots and the shim
                    await _vm_cmd(bus, node, "vm config memory 128")
                    await _vm_cmd(bus, node, "vm launch kvm shot")
                    await _vm_cmd(bus, node, "vm start shot")
                    await asyncio.sleep(1)
                    out["screenshots_per_s"] = await _screenshots(web_url, 20)
                rows = await bus.command(node, ".columns vnc_port,id .filter name=shot vm info")
                port, vm_id = rows[0].responses[0].tabular[0]  # type: ignore[index]
                sock = str(root / "base" / vm_id / "vnc")
                out["vnc_shim_mb_per_s"] = await _rfb_mb_per_s(
                    lambda: rfb.Client.open_tcp("127.0.0.1", int(port)), 3
                )
                out["vnc_direct_mb_per_s"] = await _rfb_mb_per_s(
                    lambda: rfb.Client.open_unix(sock), 3
                )
                await _vm_cmd(bus, node, "clear all")
            finally:
                await bus.close()
                await stop_process(proc, 30)
    return {"screens": out}


async def _page_figures(
    bus: Bus, node: str, web_url: str, vms: int, async_playwright: Any
) -> dict[str, object]:
    out: dict[str, object] = {}
    if not os.access("/usr/bin/chromium", os.X_OK):
        return {"page": "chromium missing"}
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        try:
            page = await browser.new_page()
            t0 = time.perf_counter()
            await page.goto(web_url)
            await page.wait_for_function(
                f"document.getElementById('count').textContent.startsWith('{vms} of')",
                timeout=60_000,
            )
            out["table_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            paint = await page.evaluate(
                "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1"
            )
            out["first_paint_ms"] = round(float(paint), 1)
            samples = []
            for i in range(10):
                t1 = time.perf_counter()
                await _vm_cmd(bus, node, "vm config qemu /nonexistent/qemu-for-bench")
                await _vm_cmd(bus, node, f"vm launch kvm late{i}")
                await page.wait_for_function(
                    f"document.getElementById('count').textContent.startsWith('{vms + i + 1} of')",
                    timeout=30_000,
                )
                samples.append(time.perf_counter() - t1)
            await _vm_cmd(bus, node, "clear vm config qemu")
            out["update_ms"] = percentiles(samples)
        finally:
            await browser.close()
    return out


async def _screenshots(web_url: str, count: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        t0 = time.perf_counter()
        for i in range(count):
            # a new size each time: the web's one-second cache never answers
            async with http.get(
                f"{web_url}api/vm/minimega/shot/screenshot.png?size={200 + i}"
            ) as r:
                assert r.status == 200, await r.text()
                await r.read()
        return round(count / (time.perf_counter() - t0), 1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oneshot-runs", type=int, default=30)
    parser.add_argument("--roundtrips", type=int, default=500)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--per-client", type=int, default=40)
    parser.add_argument("--aliases", type=int, default=400)
    parser.add_argument("--kvm", type=int, default=20, help="real guests (0: no VM bench)")
    parser.add_argument("--mesh-runs", type=int, default=200)
    parser.add_argument("--nic-vms", type=int, default=100, help="VMs whose NIC to attach")
    parser.add_argument("--taps", type=int, default=250, help="taps to create and delete")
    parser.add_argument(
        "--failover-aliases", type=int, default=300, help="aliases allocated through a failover"
    )
    parser.add_argument("--cc-agents", type=int, default=50, help="agents for cc exec (0: none)")
    parser.add_argument("--cc-rounds", type=int, default=10, help="cc exec rounds")
    parser.add_argument("--cc-send-agents", type=int, default=10, help="agents for cc send")
    parser.add_argument("--cc-send-mb", type=int, default=100, help="size of the cc send file")
    parser.add_argument(
        "--pipe-messages", type=int, default=20000, help="values through a pipe (0: no pipe bench)"
    )
    parser.add_argument(
        "--routers", type=int, default=0, help="router containers to commit at once (0: none)"
    )
    parser.add_argument(
        "--security-roundtrips",
        type=int,
        default=300,
        help="round trips with auth and TLS off, then on (0: no security bench)",
    )
    parser.add_argument(
        "--fuzz-cases", type=int, default=2000, help="cases of ops/fuzz.py (0: no fuzz run)"
    )
    parser.add_argument(
        "--client-roundtrips", type=int, default=300, help="typed client calls (0: none)"
    )
    parser.add_argument(
        "--files-mb", type=int, default=1024, help="file fetched by 3 nodes (0: no files bench)"
    )
    parser.add_argument("--files-hash-mb", type=int, default=1024, help="MB hashed (0: none)")
    parser.add_argument(
        "--speed-commands",
        type=int,
        default=100_000,
        help="commands before the second idle memory figure (0: no speed part)",
    )
    parser.add_argument(
        "--life-kvm", type=int, default=10, help="KVM guests for vm start all (0: none)"
    )
    parser.add_argument(
        "--life-containers",
        type=lambda text: [int(n) for n in text.split(",") if n],
        default=[10, 30],
        help="container counts for start/kill/flush (comma-separated; empty: none)",
    )
    parser.add_argument(
        "--only",
        type=lambda text: set(text.split(",")),
        default=None,
        help="comma-separated parts to run (see the module docstring)",
    )
    parser.add_argument(
        "--compare", type=Path, default=None, help="an earlier run's JSON: print the ratios"
    )
    parser.add_argument(
        "--lab-containers", type=int, default=0, help="containers over a 3-host lab (0: no lab)"
    )
    parser.add_argument(
        "--web-vms", type=int, default=200, help="VMs in the web UI's table (0: no screens bench)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # closing 50 clients logs 50 "disconnected"
    parsed = parse_args()
    result = asyncio.run(main(parsed))
    if parsed.compare is not None:
        result["compare"] = compare(result, parsed.compare)
    print(json.dumps(result))
