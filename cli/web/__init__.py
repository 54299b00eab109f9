"""``megabus web``: the web UI (2.8's miniweb) as a front end of its own.

A separate process rather than a part of the node: it is a client of the
whole cluster (every node's VMs, through one node's fan-out), it logs in as
any client does (the operator role of :mod:`megabus.bus.security`), and a
slow or hostile browser can never stall a node's command handling. It runs
aiohttp (HTTP, websockets, sendfile downloads) on one asyncio loop with its
NATS connection.

    megabus web [-listen ADDR] [-port N] [-files DIR] [-namespace NS]
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from megabus.bus.connection import Bus
from megabus.bus.errors import BusConnectError, SecurityError
from megabus.cli.args import Target
from megabus.cli.web._app import build
from megabus.cli.web._model import Model

DEFAULT_PORT = 9001


@contextlib.asynccontextmanager
async def serving(
    target: Target, files: Path, *, listen: str = "127.0.0.1", port: int = DEFAULT_PORT
) -> AsyncIterator[str]:
    """Run the web UI while the block runs; yields its URL (``port`` 0: a free one)."""
    bus = await Bus.connect(
        target.urls, name="megabus-web", prefix=target.prefix, timeout=target.timeout,
        credentials=target.credentials, tls=target.tls,
    )  # fmt: skip
    model = Model(bus, target.node, target.namespace)
    try:
        await model.start()
        runner = web.AppRunner(build(model, files), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, listen, port)
            await site.start()
            bound = runner.addresses[0][1]  # the port, when 0 asked for a free one
            yield f"http://{listen}:{bound}/"
        finally:
            await runner.cleanup()
    finally:
        await model.stop()
        await bus.close()


async def _serve(target: Target, files: Path, listen: str, port: int) -> int:
    try:
        async with serving(target, files, listen=listen, port=port) as url:
            sys.stderr.write(f"megabus web: {url}\n")
            done = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, done.set)
            await done.wait()
    except (BusConnectError, SecurityError, OSError) as err:
        sys.stderr.write(f"megabus: {err}\n")
        return 2
    return 0


def run_web(target: Target, files: Path, listen: str, port: int) -> int:
    """Serve the web UI until interrupted."""
    return asyncio.run(_serve(target, files, listen, port))


__all__ = ["DEFAULT_PORT", "run_web", "serving"]
