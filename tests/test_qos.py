"""``qos`` on a real node: a diskless KVM guest's tap, real ``tc``, real Open vSwitch.

Rate sets 2.8's tbf (rate, burst of one clock tick, 20 ms latency) on the
tap; a guest in a network namespace on the same VLAN then floods broadcast
UDP, which the bridge copies to the tap, and tbf's own counters show it
held traffic back (overlimits) and dropped the excess.

Loss and delay need the kernel's netem qdisc (``sch_netem``): a stock
Debian 12 kernel has it, some kernels do not. The tests ask the kernel (a
netem qdisc on the loopback of a new network namespace) and check what the
node does there. With netem, loss and delay go on the tap as one netem
qdisc and act on the flood: the qdisc drops about the share asked for, and
holds the datagrams for the delay. Without it, they fail with an error
naming netem and leave the rate in place. The test of the other case skips.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dnslab import PYTHON, Lab
from nodes import MiniNode, node_at
from ovsfix import ovs, unique
from procs import must, run

from megabus.bus.server import EmbeddedServer
from megabus.handlers.net import qos as tcq

__all__ = ["ovs"]

pytestmark = [pytest.mark.usefixtures("ovs"), pytest.mark.timeout(240)]

#: Broadcast COUNT UDP datagrams of 1000 bytes as fast as the guest can.
FLOOD = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for _ in range(COUNT):
    s.sendto(b"x" * 1000, ("10.231.2.255", 9))
"""
NO_NETEM = "this kernel has no netem qdisc (sch_netem): the test of the error runs instead"
HAS_NETEM = "this kernel has the netem qdisc: the test of loss and delay applied runs instead"


async def kernel_has_netem() -> bool:
    """Whether ``tc`` can put a netem qdisc on a device: the loopback of a new network namespace."""
    code, out = await run("unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem")
    assert code == 0 or tcq.UNKNOWN_QDISC in out, out  # any other failure answers nothing
    return code == 0


@pytest.fixture
async def qnode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "qos", base=tmp_path / "base") as n,
    ):
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


async def counter(tap: str, name: str) -> int:
    """One statistic of the root qdisc of ``tap``."""
    value = (await qdisc(tap))[name]
    assert isinstance(value, int)
    return value


async def column(node: MiniNode) -> str:
    """The ``qos`` cell of ``vm info`` (the node has one VM)."""
    text = await node.text(".annotate false .headers false .columns qos vm info")
    vm = next(iter(node.state.vms.vms.values()))
    assert text == "[" + ", ".join(tcq.describe(vm, node.state.bridges)) + "]"
    return text


async def vm_tap(node: MiniNode, bridge: str) -> str:
    """Launch and start the KVM guest ``a`` on ``bridge``, VLAN 101; its tap."""
    assert await node.errors(f"vm config net {bridge},101") == []
    assert await node.errors("vm launch kvm a") == []
    assert await node.errors("vm start a") == []
    vm = next(iter(node.state.vms.vms.values()))
    return vm.config.networks[0].tap


async def flood(lab: Lab, count: int) -> None:
    """A guest on VLAN 101 broadcasts ``count`` datagrams (the bridge copies them to the tap)."""
    guest = lab.guests[0] if lab.guests else await lab.guest(101, "10.231.2.10")
    await must(*guest.ns(PYTHON, "-c", FLOOD.replace("COUNT", str(count))))


async def test_rate_shapes_the_tap(qnode: MiniNode) -> None:
    br = unique("mqb")
    tap = await vm_tap(qnode, br)

    assert await qnode.errors("qos add a 0 rate 1 mbit") == []
    q = await qdisc(tap)
    assert q["kind"] == "tbf"
    _, text = await run("tc", "qdisc", "show", "dev", tap)
    # 2.8: burst = rate / USER_HZ (10.000kbit = 1250 bytes at 100 Hz; tc rounds
    # it up to its time base), latency 20ms
    assert "rate 1Mbit burst 12" in text
    assert text.rstrip().endswith("lat 20ms")
    assert await column(qnode) == "[0: rate 1mbit]"

    lab = Lab(qnode.state.bridges, br)
    try:
        await flood(lab, 1500)  # 12 Mbit
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


async def test_without_netem_loss_and_delay_say_so(qnode: MiniNode) -> None:
    if await kernel_has_netem():
        pytest.skip(HAS_NETEM)
    tap = await vm_tap(qnode, unique("mqm"))
    assert await qnode.errors("qos add a 0 rate 1 mbit") == []
    # loss and delay say netem is missing, and the rate stays as it was
    for line in ("qos add a 0 loss 5", "qos add a 0 delay 100ms"):
        [err] = await qnode.errors(line)
        assert "netem" in err
        assert "sch_netem" in err
        assert (await qdisc(tap))["kind"] == "tbf"
        assert await column(qnode) == "[0: rate 1mbit]"


async def test_with_netem_loss_and_delay_act_on_the_traffic(qnode: MiniNode) -> None:
    if not await kernel_has_netem():
        pytest.skip(NO_NETEM)
    br = unique("mqn")
    tap = await vm_tap(qnode, br)

    # loss then delay: one netem qdisc with both, in 2.8's order
    assert await qnode.errors("qos add a 0 loss 5") == []
    assert (await qdisc(tap))["kind"] == "netem"
    assert await column(qnode) == "[0: loss 5]"
    assert await qnode.errors("qos add a 0 delay 100ms") == []
    _, text = await run("tc", "qdisc", "show", "dev", tap)
    assert "netem" in text
    assert "delay 100ms" in text
    assert "loss 5%" in text
    assert await column(qnode) == "[0: loss 5 delay 100ms]"
    # a rate replaces them (tbf), and loss replaces the rate (netem)
    assert await qnode.errors("qos add a 0 rate 1 mbit") == []
    assert (await qdisc(tap))["kind"] == "tbf"
    assert await column(qnode) == "[0: rate 1mbit]"

    lab = Lab(qnode.state.bridges, br)
    try:
        # loss 50: netem drops about half of what reaches it
        assert await qnode.errors("qos add a 0 loss 50") == []
        q = await qdisc(tap)
        assert q["kind"] == "netem"
        assert await column(qnode) == "[0: loss 50]"
        sent, dropped = await counter(tap, "packets"), await counter(tap, "drops")
        await flood(lab, 1500)
        sent = await counter(tap, "packets") - sent
        dropped = await counter(tap, "drops") - dropped
        assert sent + dropped >= 300, (sent, dropped)  # the flood reached the tap
        assert 0.35 < dropped / (sent + dropped) < 0.65, (sent, dropped)

        # delay 2s alone: netem holds the datagrams, then sends them
        assert await qnode.errors("clear qos a 0") == []
        assert await qnode.errors("qos add a 0 delay 2s") == []
        assert await column(qnode) == "[0: delay 2s]"
        sent = await counter(tap, "packets")
        await flood(lab, 100)
        held = await counter(tap, "qlen")
        assert held > 0  # queued, well within the 2 s
        async with asyncio.timeout(30):
            # the kernel's queue: polling is the only way to watch it
            while await counter(tap, "qlen"):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        assert await counter(tap, "packets") - sent >= held
    finally:
        await lab.close()

    assert await qnode.errors("clear qos a") == []
    assert (await qdisc(tap))["kind"] != "netem"
    assert await column(qnode) == "[]"


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
