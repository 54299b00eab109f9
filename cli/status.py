"""``megabus status``: a live view of the nodes, their status updates and logs.

The view is a pure function :func:`render` of a :class:`StatusState`; bus
callbacks only change the state, and one asyncio task redraws at a fixed
rate. rich's ``Live`` runs with ``auto_refresh=False`` so that its refresh
thread never reads state that the event loop is changing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from megabus.bus.codec import decode
from megabus.bus.connection import Bus
from megabus.bus.errors import BusConnectError, BusDecodeError, SecurityError
from megabus.bus.loop import run
from megabus.bus.messages import Heartbeat, LogRecord, StatusUpdate
from megabus.cli.args import Target

#: A node is shown as gone after this many of its intervals without a heartbeat.
MISSED_BEATS = 3
#: Redraws per second.
RATE = 2.0
MAX_STATUS = 10
MAX_LOGS = 10


@dataclass
class NodeSeen:
    heartbeat: Heartbeat
    #: Monotonic time of receipt (the sender's clock may be skewed).
    at: float


@dataclass
class StatusState:
    """Everything the view shows; changed by bus callbacks, read by :func:`render`."""

    nodes: dict[str, NodeSeen] = field(default_factory=dict)
    #: Latest update per (node, topic), oldest first.
    statuses: dict[tuple[str, str], StatusUpdate] = field(default_factory=dict)
    logs: deque[LogRecord] = field(default_factory=lambda: deque(maxlen=MAX_LOGS))

    def heartbeat(self, hb: Heartbeat, at: float) -> None:
        self.nodes[hb.node] = NodeSeen(hb, at)

    def status(self, update: StatusUpdate) -> None:
        key = (update.node, update.topic)
        self.statuses.pop(key, None)  # move to the end: newest last
        self.statuses[key] = update
        while len(self.statuses) > MAX_STATUS:
            del self.statuses[next(iter(self.statuses))]

    def log(self, record: LogRecord) -> None:
        self.logs.append(record)


def duration(seconds: float) -> str:
    """``1h02m03s`` style, short for small values."""
    s = int(max(seconds, 0))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def render(state: StatusState, now: float | None = None) -> RenderableType:
    """The whole view for ``state`` at monotonic time ``now``."""
    now = time.monotonic() if now is None else now
    nodes = Table(title="nodes", expand=True)
    for col in ("name", "state", "uptime", "load", "mem", "vms", "last seen"):
        nodes.add_column(col)
    for name in sorted(state.nodes):
        seen = state.nodes[name]
        hb = seen.heartbeat
        age = now - seen.at
        gone = age > MISSED_BEATS * max(hb.interval, 0.001)
        nodes.add_row(
            name,
            Text("gone", style="red") if gone else Text("up", style="green"),
            duration(hb.uptime + age),
            f"{hb.load:.2f}" + (f"/{hb.cpus}" if hb.cpus else ""),
            f"{hb.mem_used}/{hb.mem_total} MB",
            str(hb.vms),
            f"{duration(age)} ago",
            style="dim" if gone else "",
        )
    statuses = Table(title="status", expand=True)
    for col in ("node", "topic", "status", "progress"):
        statuses.add_column(col)
    for update in reversed(state.statuses.values()):
        bar: RenderableType = ""
        if update.progress is not None:
            done = min(max(update.progress, 0.0), 1.0)
            bar = Group(ProgressBar(total=1.0, completed=done, width=20), f"{done:.0%}")
        statuses.add_row(update.node, update.topic, update.status, bar)
    logs = Table(title="logs", expand=True)
    for col in ("node", "level", "message"):
        logs.add_column(col)
    for record in reversed(state.logs):
        logs.add_row(record.node, record.level, record.message)
    return Group(nodes, statuses, logs)


async def watch(target: Target, console: Console | None = None) -> int:
    """Follow heartbeats, status and logs and redraw until interrupted."""
    try:
        bus = await Bus.connect(
            target.urls,
            name="megabus-status",
            prefix=target.prefix,
            timeout=target.timeout,
            credentials=target.credentials,
            tls=target.tls,
        )
    except (BusConnectError, SecurityError) as err:
        sys.stderr.write(f"megabus: {err}\n")
        return 2
    state = StatusState()
    subjects = bus.subjects

    async def on_hb(msg: Msg) -> None:
        with contextlib.suppress(BusDecodeError):
            state.heartbeat(decode(msg.data, Heartbeat), time.monotonic())

    async def on_status(msg: Msg) -> None:
        with contextlib.suppress(BusDecodeError):
            state.status(decode(msg.data, StatusUpdate))

    async def on_log(msg: Msg) -> None:
        with contextlib.suppress(BusDecodeError):
            state.log(decode(msg.data, LogRecord))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await bus.nc.subscribe(subjects.heartbeats(), cb=on_hb)
        await bus.nc.subscribe(subjects.statuses(), cb=on_status)
        await bus.nc.subscribe(subjects.logs(), cb=on_log)
        with Live(render(state), console=console, auto_refresh=False, screen=False) as live:
            while not stop.is_set():
                live.update(render(state), refresh=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1 / RATE)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(Exception):
            await bus.close()
    return 0


def run_status(target: Target) -> int:
    """``megabus status``: the console entry; returns the exit status."""
    return run(watch(target))
