"""Nodes and front ends run on uvloop when it is installed, and NATS works there."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest
from nats.aio.msg import Msg

from megabus.bus.codec import decode
from megabus.bus.connection import Bus
from megabus.bus.loop import run
from megabus.bus.messages import CommandReply


def test_run_uses_uvloop_and_the_bus_works_on_it(nats_url: str) -> None:
    if importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed: run() uses the stdlib loop")

    async def roundtrip() -> tuple[str, CommandReply]:
        bus = await Bus.connect([nats_url], name="uv")
        try:
            got: asyncio.Queue[bytes] = asyncio.Queue()

            async def on_msg(msg: Msg) -> None:
                got.put_nowait(msg.data)

            sub = await bus.nc.subscribe("uv.test", cb=on_msg)
            await bus.publish("uv.test", CommandReply(node="n", rendered="hello"))
            data = await asyncio.wait_for(got.get(), 5)
            await sub.unsubscribe()
        finally:
            await bus.close()
        return type(asyncio.get_running_loop()).__module__, decode(data, CommandReply)

    module, reply = run(roundtrip())
    assert module.startswith("uvloop")
    assert reply.rendered == "hello"
