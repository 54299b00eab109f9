"""The ``vlans`` commands as a user types them, on one node and across two."""

from __future__ import annotations

import asyncio
import uuid

from nodes import MiniNode, node_at, transcript

MANUAL = """vlans add foo 200
vlans add foo 201
vlans add bar 300
vlans
namespace foo
vlans range 130 120
vlans range 120 130
vlans range
vlans"""

MANUAL_WANT = """## vlans add foo 200
## vlans add foo 201
E: alias already in use
## vlans add bar 300
## vlans
alias | vlan
bar   | 300
foo   | 200
## namespace foo
## vlans range 130 120
E: expected min > max
## vlans range 120 130
## vlans range
min  | max | next
120  | 130 | 120
## vlans
"""


async def test_adding_aliases_and_ranges_prints_as_2_8(node: MiniNode) -> None:
    assert await transcript(node, MANUAL) == MANUAL_WANT


async def test_the_global_range_and_blacklist(node: MiniNode) -> None:
    assert await node.text("vlans range") == "min  | max  | next\n101  | 4096 | 101"
    await node.run("vlans blacklist 5")
    await node.run("vlans add x 7")
    await node.run("vlans blacklist 7")
    assert await node.text("vlans blacklist") == "vlan\n5\n7"
    assert await node.text("vlans") == ""  # blacklisting dropped the alias
    assert await node.errors("vlans blacklist x") == ["expected integer VLAN"]
    assert await node.errors("vlans add y z") == ["expected integer VLAN"]
    assert await node.errors("vlans add y 5000") == ["invalid VLAN (0 <= vlan < 4096)"]
    assert await node.errors("vlans range a 5") == ["expected integer values for min/max"]
    # outside minimega, a namespace without a range of its own shows none
    assert await node.text("namespace foo vlans range") == ""


async def test_clear_vlans_by_prefix_and_all(node: MiniNode) -> None:
    for line in ["vlans add web1 200", "vlans add web2 201", "vlans add db 202"]:
        await node.run(line)
    await node.run("clear vlans web")
    assert await node.text("vlans") == "alias | vlan\ndb    | 202"
    await node.run("vlans range 300 400")
    await node.run("clear vlans all")
    assert await node.text("vlans") == ""
    assert await node.text("vlans range") == "min  | max  | next\n101  | 4096 | 101"


async def test_clear_all_restores_the_nodes_vlanrange_not_101(nats_js_url: str) -> None:
    async with node_at(nats_js_url, "t2", vlan_range="500-600") as n:
        await n.run("vlans range 700 800")
        await n.run("vlans add a 42")
        await n.run("clear all")
        assert await n.text("vlans range") == "min  | max | next\n500  | 600 | 500"
        assert (
            await n.text("namespace") == "namespace | vlans   | active\nminimega  | 500-600 | true"
        )


async def test_an_alias_added_on_one_node_lists_on_another(nats_js_url: str) -> None:
    prefix = "x" + uuid.uuid4().hex[:6]
    async with node_at(nats_js_url, prefix, "a") as a, node_at(nats_js_url, prefix, "b") as b:
        await a.run("namespace foo vlans add DMZ 300")
        for _ in range(200):
            if await b.text("namespace foo vlans"):
                break
            await asyncio.sleep(0.02)
        assert await b.text("namespace foo vlans") == "alias | vlan\nDMZ   | 300"
        assert await b.errors("namespace foo vlans add DMZ 301") == ["alias already in use"]
