"""The ovs-vsctl adapter against a real Open vSwitch: bridges and batched port changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from ovsfix import ovs, unique

from megabus.handlers.net import taps
from megabus.handlers.net._ovs import OvsError, OvsMissingError, Switch, connect, kernel_datapath

__all__ = ["ovs"]

pytestmark = pytest.mark.usefixtures("ovs")


@pytest.fixture
async def switch() -> Switch:
    return await connect()


@pytest.fixture
async def bridge(switch: Switch) -> AsyncIterator[str]:
    name = unique("mbo")
    assert await switch.add_bridge(name)
    try:
        yield name
    finally:
        await switch.del_bridge(name)


async def test_bridge_gets_the_datapath_the_kernel_supports(switch: Switch, bridge: str) -> None:
    want = "system" if kernel_datapath() else "netdev"
    assert switch.datapath == want
    assert await switch.get("bridge", bridge, "datapath_type") == want


async def test_adding_an_existing_bridge_says_it_was_preexisting(
    switch: Switch, bridge: str
) -> None:
    assert await switch.add_bridge(bridge) is False


async def test_vlan_limit_is_two_as_2_8_checkovs_sets(switch: Switch) -> None:
    assert await switch.get("Open_vSwitch", ".", "other_config:vlan-limit") == '"2"'


async def test_many_port_changes_go_in_one_ovs_vsctl_run(switch: Switch, bridge: str) -> None:
    names = [unique("mbp") for _ in range(20)]
    await taps.create_links([taps.LinkSpec(n) for n in names])
    try:
        before = switch.runs
        await switch.transact([["add-port", bridge, n, "tag=101"] for n in names])
        assert switch.runs == before + 1
        assert await switch.list_ports(bridge) == sorted(names)
        assert await switch.get("port", names[0], "tag") == "101"

        before = switch.runs
        await switch.transact([["del-port", bridge, n] for n in names])
        assert switch.runs == before + 1
        assert await switch.list_ports(bridge) == []
    finally:
        await taps.delete_links(names)


async def test_concurrent_changes_are_merged(switch: Switch, bridge: str) -> None:
    names = [unique("mbc") for _ in range(10)]
    await taps.create_links([taps.LinkSpec(n) for n in names])
    try:
        before = switch.runs
        await asyncio.gather(*(switch.transact([["add-port", bridge, n]]) for n in names))
        # ten callers, yet at most one run for the first and one for all who queued behind it
        assert switch.runs - before <= 2
        assert await switch.list_ports(bridge) == sorted(names)
    finally:
        await taps.delete_links(names)


async def test_a_bad_change_fails_alone_when_merged(switch: Switch, bridge: str) -> None:
    good = unique("mbg")
    await taps.create_links([taps.LinkSpec(good)])
    try:
        results = await asyncio.gather(
            switch.transact([["del-port", bridge, "mb-nosuchport"]]),
            switch.transact([["add-port", bridge, good]]),
            return_exceptions=True,
        )
        assert isinstance(results[0], OvsError)
        assert results[0].no_such_port
        assert results[1] is None
        assert await switch.list_ports(bridge) == [good]
    finally:
        await taps.delete_links([good])


async def test_no_switch_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(OvsMissingError, match="does not answer"):
        await connect({"MEGABUS_OVS_DB": f"unix:{tmp_path}/db.sock"})
