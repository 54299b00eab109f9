"""Broadcast and VM-target commands over a namespace's hosts, with real nodes and QEMU.

2.8's section 1.4: typed by a user, a broadcast command runs on every host of
the namespace and the responses come back as one batch (the ``host`` column
names each row's node); a VM-target command drops ``vm not found`` from the
hosts without the VM unless nobody had it; a host that does not answer is
named in an error instead of being waited on.
"""

from __future__ import annotations

from pathlib import Path

from meshnodes import cluster

NS = "namespace exp"


async def test_broadcast_runs_once_on_every_host_in_one_batch(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b", "c"]) as c:
        await c.ok("a", f"{NS} ns add-hosts localhost")
        replies = await c.replies("a", f"{NS} version")
        assert len(replies) == 1  # one batch
        assert sorted(r.host for r in replies[0].responses) == ["a", "b", "c"]
        # the copies ran locally on b and c: three responses, not nine
        assert len(replies[0].responses) == 3
        # the default namespace is this node only
        assert [r.host for r in await c.responses("a", "version")] == ["a"]


async def test_vm_info_and_targets_span_the_namespace(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        await c.ok("a", f"{NS} ns add-hosts localhost")
        await c.ok("a", f"{NS} ns queueing true")
        await c.ok("a", f"{NS} vm launch kvm x[0-3]")
        await c.ok("a", f"{NS} ns schedule")
        info = await c.responses("a", f"{NS} .columns name,state vm info")
        rows = sorted((r.host, row[0]) for r in info for row in r.tabular or [])
        assert rows == [("a", "x0"), ("a", "x2"), ("b", "x1"), ("b", "x3")]
        text = await c.replies("a", f"{NS} .columns name vm info")
        assert text[0].rendered.splitlines()[0].split() == ["host", "|", "name"]

        # x1 lives on b: a's "vm not found" is dropped
        assert await c.errors("a", f"{NS} vm tag x1 color red") == []
        tags = await c.responses("a", f"{NS} vm tag x1 color")
        assert [(r.host, r.tabular) for r in tags if r.tabular] == [("b", [["x1", "red"]])]
        # nobody has it: one "vm not found"
        assert await c.errors("a", f"{NS} vm tag nosuch color blue") == ["vm not found: nosuch"]
        # a target over every host
        assert await c.errors("a", f"{NS} vm kill all") == []
        states = await c.responses("a", f"{NS} .columns state vm info")
        assert {row[0] for r in states for row in r.tabular or []} == {"QUIT"}
        assert await c.errors("a", f"{NS} vm flush") == []
        empty = await c.responses("a", f"{NS} vm info")
        assert [row for r in empty for row in r.tabular or []] == []


async def test_a_host_that_is_gone_is_named_not_waited_on(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b", "c"]) as c:
        await c.ok("a", f"{NS} ns add-hosts localhost")
        await c.nodes.pop("c").stop()
        responses = await c.responses("a", f"{NS} version")
        ok = sorted(r.host for r in responses if not r.error)
        errors = [r.error for r in responses if r.error]
        assert ok == ["a", "b"]
        assert len(errors) == 1
        assert errors[0].startswith("c: ")


async def test_a_fanout_copy_does_not_fan_out_again(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        # on b, exp holds a and b too: a copy arriving from a must stay on b
        await c.ok("a", f"{NS} ns add-hosts localhost")
        await c.ok("b", f"{NS} ns add-hosts localhost")
        responses = await c.responses("a", f"{NS} version")
        assert sorted(r.host for r in responses) == ["a", "b"]
