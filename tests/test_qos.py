"""``qos`` on a real node: a diskless KVM guest's tap, real ``tc``, real Open vSwitch.

Rate sets 2.8's tbf (rate, burst of one clock tick, 20 ms latency) on the
tap; a guest in a network namespace on the same VLAN then floods broadcast
UDP, which the bridge copies to the tap, and tbf's own counters show it
held traffic back (overlimits) and dropped the excess. This kernel has no
netem, so loss and delay must say so and leave the rate in place.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ovsfix import ovs, unique
from test_dnsmasq_support import PYTHON, Lab, must, run
from test_misc_support import MiniNode, node_at

from megabus.bus.server import EmbeddedServer
from megabus.handlers.net import qos as tcq
from megabus.handlers.net.bridges import bridges_of

__all__ = ["ovs"]

pytestmark = [pytest.mark.usefixtures("ovs"), pytest.mark.timeout(240)]

#: Broadcast 1500 UDP datagrams of 1000 bytes (12 Mbit) as fast as the guest can.
FLOOD = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for _ in range(1500):
    s.sendto(b"x" * 1000, ("10.231.2.255", 9))
"""


@pytest.fixture
async def qnode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "qos") as n,
    ):
        n.state.settings.base = str(tmp_path / "base")
        try:
            yield n
        finally:
            await n.run("clear all")


async def qdisc(tap: str) -> dict[str, object]:
    """The root qdisc of ``tap`` with its statistics (``tc -s -j``)."""
    out = await must("tc", "-s", "-j", "qdisc", "show", "dev", tap)
    roots = [q for q in json.loads(out) if q.get("root")]
    assert len(roots) == 1, out
    return dict(roots[0])


async def column(node: MiniNode) -> str:
    """The ``qos`` cell of ``vm info`` (the node has one VM)."""
    text = await node.text(".annotate false .headers false .columns qos vm info")
    vm = next(iter(node.state.vms.vms.values()))
    assert text == "[" + ", ".join(tcq.describe(vm)) + "]"
    return text


async def test_rate_shapes_the_tap_and_netem_is_reported_missing(qnode: MiniNode) -> None:
    br = unique("mqb")
    assert await qnode.errors(f"vm config net {br},101") == []
    assert await qnode.errors("vm launch kvm a") == []
    assert await qnode.errors("vm start a") == []
    vm = next(iter(qnode.state.vms.vms.values()))
    tap = vm.config.networks[0].tap

    assert await qnode.errors("qos add a 0 rate 1 mbit") == []
    q = await qdisc(tap)
    assert q["kind"] == "tbf"
    _, text = await run("tc", "qdisc", "show", "dev", tap)
    # 2.8: burst = rate / USER_HZ (10.000kbit = 1250 bytes at 100 Hz; tc rounds
    # it up to its time base), latency 20ms
    assert "rate 1Mbit burst 12" in text
    assert text.rstrip().endswith("lat 20ms")
    assert await column(qnode) == "[0: rate 1mbit]"

    lab = Lab(bridges_of(qnode.state), br)
    try:
        guest = await lab.guest(101, "10.231.2.10")
        await must(*guest.ns(PYTHON, "-c", FLOOD))
    finally:
        await lab.close()
    q = await qdisc(tap)
    assert isinstance(q["bytes"], int)
    assert q["bytes"] > 0  # the flood went through tbf ...
    assert isinstance(q["overlimits"], int)
    assert q["overlimits"] > 0  # ... which held it to the rate ...
    assert isinstance(q["drops"], int)
    assert q["drops"] > 0  # ... and dropped what its 20 ms queue could not hold
    assert q["bytes"] < 1500 * 1000

    # no netem here: loss and delay say so, and the rate stays as it was
    for line in ("qos add a 0 loss 5", "qos add a 0 delay 100ms"):
        [err] = await qnode.errors(line)
        assert "netem" in err
        assert "sch_netem" in err
        assert (await qdisc(tap))["kind"] == "tbf"
        assert await column(qnode) == "[0: rate 1mbit]"

    # a new rate replaces the old one
    assert await qnode.errors("qos add a 0 rate 50 kbit") == []
    _, text = await run("tc", "qdisc", "show", "dev", tap)
    assert "rate 50Kbit burst" in text
    assert await column(qnode) == "[0: rate 50kbit]"

    # clear: back to the kernel's default qdisc
    assert await qnode.errors("clear qos a 0") == []
    assert (await qdisc(tap))["kind"] != "tbf"
    assert await column(qnode) == "[]"
    assert await qnode.errors("qos add a 0 rate 2 gbit") == []
    assert await qnode.errors("clear qos a all") == []
    assert (await qdisc(tap))["kind"] != "tbf"
    assert await qnode.errors("qos add a 0 rate 2 gbit") == []
    assert await qnode.errors("clear qos a") == []
    assert (await qdisc(tap))["kind"] != "tbf"


async def test_bad_qos_input_gets_2_8s_errors(qnode: MiniNode) -> None:
    br = unique("mqe")
    assert await qnode.errors(f"vm config net {br},101") == []
    assert await qnode.errors("vm launch kvm a") == []
    cases = {
        "qos add a 0 loss 150": "invalid loss: `150`",
        "qos add a 0 loss x": "invalid loss: `x`",
        "qos add a 0 delay 100xbit": "invalid duration: `100xbit`",
        "qos add a 0 delay -5ms": "delay cannot be negative",
        "qos add a 0 rate x mbit": "invalid rate: `x`",
        "qos add a all rate 1 mbit": "wildcard qos not implemented",
        "qos add a x rate 1 mbit": "invalid tap index x",
        "qos add a 3 rate 1 mbit": "invalid tap index specified: 3",
        "clear qos a x": "invalid tap index x",
        "clear qos a 3": "invalid tap index specified: 3",
        "qos add nosuch 0 rate 1 mbit": "vm not found: nosuch",
    }
    for line, text in cases.items():
        assert await qnode.errors(line) == [text], line
    # nothing was set by any of them; clearing nothing is fine
    assert await column(qnode) == "[]"
    assert await qnode.errors("clear qos a all") == []


def test_tc_lines_are_2_8s() -> None:
    assert tcq.netem_args("t", "100ms", "5") == [
        "qdisc", "replace", "root", "dev", "t", "netem", "delay", "100ms", "loss", "5",
    ]  # fmt: skip
    assert tcq.netem_args("t", "", "5")[-2:] == ["loss", "5"]
    hz = tcq.clock_ticks()
    assert tcq.tbf_args("t", "3mbit") == [
        "qdisc", "replace", "root", "dev", "t", "tbf", "rate", "3mbit",
        "burst", f"{3_000_000 / hz / 1000:.3f}kbit", "latency", "20ms",
    ]  # fmt: skip
    assert tcq.ordered({"delay": "1ms", "loss": "5", "rate": ""}) == ["loss 5", "delay 1ms"]
