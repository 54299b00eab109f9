"""``megabus events`` prints bus traffic as JSON lines."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from compat import running_node
from megabuscmd import megabus


@pytest.fixture
async def base(nats_url: str, tmp_path: Path) -> AsyncIterator[str]:
    async with running_node(nats_url, name="n1", base=tmp_path / "base", heartbeat=0.2):
        yield str(tmp_path / "base")


async def test_events_prints_a_heartbeat(base: str) -> None:
    rc, out, err = await megabus("-base", base, "events", "hb", "-count", "1")
    assert (rc, err) == (0, "")
    (line,) = out.splitlines()
    msg = json.loads(line)
    assert msg["subject"] == "mb.v1.hb.n1"
    assert msg["data"]["type"] == "megabus.hb.v1"
    assert msg["data"]["node"] == "n1"
