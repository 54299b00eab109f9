"""``megabus events``: print bus traffic as JSON lines, for people and for scripts.

Each message becomes one line ``{"subject": ..., "data": ...}`` with the
payload decoded as JSON (or kept as a string when it is not JSON), so the
output pipes straight into ``jq``. The kinds to follow are positional
arguments; without any, all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from typing import Any

from nats.aio.msg import Msg

from megabus.bus.connection import Bus
from megabus.bus.errors import BusConnectError, SecurityError
from megabus.bus.loop import run
from megabus.bus.subjects import Subjects
from megabus.cli.args import Target, UsageError

logger = logging.getLogger(__name__)

KINDS = ("event", "status", "log", "vlans", "hb")


def subjects_for(subjects: Subjects, kinds: list[str]) -> list[str]:
    """The wildcard subjects of ``kinds`` (all kinds when empty).

    Raises:
        UsageError: an unknown kind.
    """
    table = {
        "event": subjects.events(),
        "status": subjects.statuses(),
        "log": subjects.logs(),
        "vlans": subjects.all_vlans(),
        "hb": subjects.heartbeats(),
    }
    aliases = {"events": "event", "logs": "log", "heartbeat": "hb", "heartbeats": "hb"}
    chosen = [aliases.get(k, k) for k in kinds] or list(KINDS)
    for kind in chosen:
        if kind not in table:
            raise UsageError(f"unknown event kind {kind!r}: choose from {', '.join(KINDS)}")
    return [table[k] for k in dict.fromkeys(chosen)]


def format_message(subject: str, data: bytes) -> str:
    """One output line for a message."""
    decoded: Any
    try:
        decoded = json.loads(data)
    except ValueError:
        decoded = data.decode(errors="replace")
    return json.dumps({"subject": subject, "data": decoded})


async def follow(target: Target, kinds: list[str], *, count: int = 0) -> int:
    """Print messages until interrupted, or until ``count`` of them when positive."""
    wanted = subjects_for(Subjects(target.prefix), kinds)
    try:
        bus = await Bus.connect(
            target.urls,
            name="megabus-events",
            prefix=target.prefix,
            timeout=target.timeout,
            credentials=target.credentials,
            tls=target.tls,
        )
    except (BusConnectError, SecurityError) as err:
        sys.stderr.write(f"megabus: {err}\n")
        return 2
    done = asyncio.Event()
    seen = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal seen
        if done.is_set():
            return
        try:
            sys.stdout.write(format_message(msg.subject, msg.data) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            done.set()  # the reader (head, jq) went away: that ends the job
            return
        seen += 1
        if count and seen >= count:
            done.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    try:
        for subject in wanted:
            await bus.nc.subscribe(subject, cb=on_msg)
        await bus.nc.flush()
        await done.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(Exception):
            await bus.close()
    return 0


def run_events(target: Target, kinds: list[str], *, count: int = 0) -> int:
    """``megabus events``: the console entry; returns the exit status."""
    subjects_for(Subjects(target.prefix), kinds)  # usage errors before connecting
    return run(follow(target, kinds, count=count))
