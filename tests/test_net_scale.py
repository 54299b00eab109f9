"""250 taps on one bridge, created and deleted: 2.8 took 90 s to delete as many.

The seconds are printed (``pytest -s`` shows them), never asserted: the
assertions are that every tap was made, tagged, and is gone afterwards.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from ovsfix import ovs, unique

from megabus.handlers.net._bridges import Bridges, TapSpec
from megabus.handlers.net.taps import link_exists

__all__ = ["ovs"]

pytestmark = pytest.mark.usefixtures("ovs")

COUNT = 250


@pytest.fixture
async def net() -> Bridges:
    return Bridges()


@pytest.mark.timeout(600)
async def test_250_taps_in_one_batch(net: Bridges) -> None:
    bridge = unique("mbs")
    try:
        await net.get(bridge)
        switch = await net.switch()
        runs = switch.runs
        start = time.monotonic()
        names = await net.create_taps([TapSpec(bridge, 100 + i % 4) for i in range(COUNT)])
        created = time.monotonic() - start
        assert len(set(names)) == COUNT
        assert len(await switch.list_ports(bridge)) == COUNT
        assert await switch.get("port", names[5], "tag") == "101"

        start = time.monotonic()
        await net.destroy_taps(names)
        deleted = time.monotonic() - start
        print(
            f"\n{COUNT} taps in one batch: created in {created:.2f} s, deleted in {deleted:.2f} s, "
            f"{switch.runs - runs - 2} ovs-vsctl run(s) for the changes"
        )
        assert await switch.list_ports(bridge) == []
        assert not any(link_exists(n) for n in names)
    finally:
        await net.destroy_all()


@pytest.mark.timeout(600)
async def test_250_taps_made_by_concurrent_callers(net: Bridges) -> None:
    # 250 VMs launching at once each ask for their own tap; group commit merges them
    bridge = unique("mbs")
    try:
        await net.get(bridge)
        switch = await net.switch()
        runs = switch.runs
        start = time.monotonic()
        names = await asyncio.gather(*(net.create_tap(bridge, 200) for _ in range(COUNT)))
        created = time.monotonic() - start
        made_runs = switch.runs - runs
        start = time.monotonic()
        await asyncio.gather(*(net.destroy_taps([n]) for n in names))
        deleted = time.monotonic() - start
        print(
            f"\n{COUNT} taps by concurrent callers: created in {created:.2f} s "
            f"({made_runs} ovs-vsctl runs), deleted in {deleted:.2f} s "
            f"({switch.runs - runs - made_runs} runs)"
        )
        assert len(set(names)) == COUNT
        assert await switch.list_ports(bridge) == []
        assert not any(link_exists(n) for n in names)
    finally:
        await net.destroy_all()
