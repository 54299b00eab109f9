"""This node's resources and VM commitments: 2.8's ``HostStats``.

``host`` shows them and the scheduler ranks hosts by them. The VM figures
span all namespaces of the node, as in 2.8: ``cpucommit``, ``memcommit`` and
``netcommit`` sum the vCPUs, memory (MB) and NICs of the VMs that hold
resources (every state but QUIT and ERROR: a paused guest keeps its memory);
``vmlimit`` is the smallest ``coschedule + 1`` among them, or -1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from megabus.handlers.model.vm import VMState
from megabus.handlers.vms import resolve_accel

if TYPE_CHECKING:
    from megabus.handlers.node.state import NodeState

logger = logging.getLogger(__name__)

#: States whose VMs hold CPUs, memory and NICs.
_GONE = VMState.QUIT | VMState.ERROR


def _read_host() -> dict[str, Any]:
    """CPUs, load, memory (MB, 2.8's used = total - free - buffers - cached), uptime."""
    out: dict[str, Any] = {"cpus": os.cpu_count() or 0, "load": "", "uptime": 0.0}
    try:
        with open("/proc/loadavg") as fh:
            out["load"] = " ".join(fh.read().split()[:3])
    except OSError as err:
        logger.error("unable to compute load: %s", err)
    mem: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 2 and fields[1].isdigit():
                    mem[fields[0].rstrip(":")] = int(fields[1])
    except OSError as err:
        logger.error("unable to compute memory stats: %s", err)
    total = mem.get("MemTotal", 0)
    free = mem.get("MemFree", 0) + mem.get("Buffers", 0) + mem.get("Cached", 0)
    out["memtotal"] = total // 1024
    out["memused"] = int((total - free) / 1024)
    try:
        with open("/proc/uptime") as fh:
            out["uptime"] = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError) as err:
        logger.error("unable to compute uptime: %s", err)
    return out


def _tap_bytes(names: list[str]) -> tuple[int, int]:
    """Bytes received and sent so far by the taps ``names`` (gone ones count 0)."""
    rx = tx = 0
    for name in names:
        base = f"/sys/class/net/{name}/statistics/"
        try:
            with open(base + "rx_bytes") as fh:
                rx += int(fh.read())
            with open(base + "tx_bytes") as fh:
                tx += int(fh.read())
        except (OSError, ValueError):
            continue
    return rx, tx


def _tap_names(state: NodeState) -> list[str]:
    return [name for br in state.bridges.info() for name in br.taps]


async def bandwidth(state: NodeState) -> tuple[float, float]:
    """RX and TX of the node's taps in MB/s since the previous call (2.8's tap bandwidth).

    The first call has no previous sample and reports 0.0, as 2.8 does until
    its collector has two readings.
    """
    now = time.monotonic()
    rx, tx = await asyncio.to_thread(_tap_bytes, _tap_names(state))
    last = state.host_bandwidth
    state.host_bandwidth = (now, rx, tx)
    if last is None or now <= last[0]:
        return 0.0, 0.0
    secs = now - last[0]
    mb = 1024 * 1024
    return max(rx - last[1], 0) / secs / mb, max(tx - last[2], 0) / secs / mb


async def stats(state: NodeState) -> dict[str, Any]:
    """2.8's ``HostStats`` of this node, as a JSON-friendly dict."""
    host = await asyncio.to_thread(_read_host)
    rx, tx = await bandwidth(state)
    cpu = mem = net = 0
    limit = -1
    vms = list(state.vms.vms.values())
    for vm in vms:
        if vm.state & _GONE:
            continue
        cpu += vm.config.vcpus
        mem += vm.config.memory
        net += len(vm.config.networks)
        if vm.config.coschedule != -1:
            v = vm.config.coschedule + 1
            limit = v if limit == -1 else min(limit, v)
    return {
        "name": state.name,
        "cpus": host["cpus"],
        "load": host["load"],
        "memused": host["memused"],
        "memtotal": host["memtotal"],
        "rx": rx,
        "tx": tx,
        "vms": len(vms),
        "vmlimit": limit,
        "cpucommit": cpu,
        "memcommit": mem,
        "netcommit": net,
        "uptime": host["uptime"],
        # not a 2.8 column: how this node runs KVM guests (kvm, or tcg without /dev/kvm)
        "accel": resolve_accel(state.settings),
    }
