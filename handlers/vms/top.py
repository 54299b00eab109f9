"""``vm top``: what each VM's process costs the host, sampled over a window.

2.8's columns: ``name | virt | res | shr | cpu | vcpu | time | procs | rx | tx``.
Memory is MB from ``/proc/<pid>/statm``; ``cpu`` and ``vcpu`` are the
percent of one host CPU used by the process and by its guest (``guest_time``)
during the window; ``time`` is the process's total CPU time in whole seconds
as a Go duration; ``rx``/``tx`` are MB/s through the VM's taps (seen from the
host, so a tap's received bytes are what the guest sent).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from megabus.handlers.language.gotime import format_seconds as go_duration
from megabus.handlers.model.vm import KILLABLE, VM

HEADER = ["name", "virt", "res", "shr", "cpu", "vcpu", "time", "procs", "rx", "tx"]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MB = 1 << 20


@dataclass
class Sample:
    """One reading of a process and its taps."""

    when: float
    ticks: int
    guest_ticks: int
    size: int
    resident: int
    share: int
    rx: int
    tx: int


def _tap_bytes(taps: list[str], which: str) -> int:
    total = 0
    for tap in taps:
        try:
            with open(f"/sys/class/net/{tap}/statistics/{which}_bytes") as f:
                total += int(f.read())
        except (OSError, ValueError):
            continue
    return total


def read_sample(pid: int, taps: list[str]) -> Sample | None:
    """Read ``/proc/<pid>/stat`` and ``statm``; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/statm") as f:
            statm = f.read().split()
    except OSError:
        return None
    # fields after the parenthesised command name, which may hold spaces
    rest = stat[stat.rindex(")") + 2 :].split()
    utime, stime, guest = int(rest[11]), int(rest[12]), int(rest[40])
    return Sample(
        when=time.monotonic(),
        ticks=utime + stime,
        guest_ticks=guest,
        size=int(statm[0]) * PAGE_SIZE,
        resident=int(statm[1]) * PAGE_SIZE,
        share=int(statm[2]) * PAGE_SIZE,
        rx=_tap_bytes(taps, "rx"),
        tx=_tap_bytes(taps, "tx"),
    )


def _taps(vm: VM) -> list[str]:
    return [n.tap for n in vm.config.networks if n.tap]


def row(vm: VM, a: Sample, b: Sample) -> list[str]:
    """One ``vm top`` row from two samples of the same process."""
    secs = max(b.when - a.when, 1e-9)
    cpu = (b.ticks - a.ticks) / CLK_TCK / secs * 100
    vcpu = (b.guest_ticks - a.guest_ticks) / CLK_TCK / secs * 100
    return [
        vm.name,
        str(b.size // MB),
        str(b.resident // MB),
        str(b.share // MB),
        f"{cpu:.2f}",
        f"{vcpu:.2f}",
        go_duration(float(b.ticks // CLK_TCK)),
        "1",
        f"{(b.rx - a.rx) / MB / secs:.2f}",
        f"{(b.tx - a.tx) / MB / secs:.2f}",
    ]


async def top(vms: list[VM], seconds: float) -> list[list[str]]:
    """Sample every VM with a process, wait ``seconds``, sample again."""
    live = [vm for vm in vms if vm.pid > 0 and vm.state & KILLABLE]

    def read_all() -> list[Sample | None]:
        return [read_sample(vm.pid, _taps(vm)) for vm in live]

    first = await asyncio.to_thread(read_all)
    await asyncio.sleep(seconds)
    second = await asyncio.to_thread(read_all)
    return [
        row(vm, a, b)
        for vm, a, b in zip(live, first, second, strict=True)
        if a is not None and b is not None
    ]
