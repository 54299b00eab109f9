"""A node that stops says so: the others drop it at once, not after three missed heartbeats.

The heartbeat here is 30 s, so a node that only went silent would stay in
the mesh for 90 s; ``settle`` gives up long before that.
"""

from __future__ import annotations

from pathlib import Path

from meshnodes import cluster


async def test_a_node_that_stops_leaves_the_mesh_at_once(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["stay", "go"], heartbeat=30.0) as c:
        await c.nodes.pop("go").stop()
        await c.settle(["stay"])
        # a namespace made now holds only the hosts that are there (2.8: the peers, else self)
        assert await c.text("stay", "namespace fresh ns hosts") == "stay"
        assert await c.errors("stay", "mesh send go version") == ["go: no such node"]
