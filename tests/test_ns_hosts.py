"""``ns hosts``, ``add-hosts``, ``del-hosts``, ``ns run`` and the queue commands, 2.8's rules."""

from __future__ import annotations

from pathlib import Path

from meshnodes import cluster


async def test_default_hosts_follow_2_8(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["kn1", "kn2", "kn3"]) as c:
        # minimega: this node only; a new namespace: every other node
        assert await c.text("kn1", "ns hosts") == "kn1"
        assert await c.text("kn1", "namespace exp ns hosts") == "kn[2-3]"
    async with cluster(nats_url, tmp_path / "alone", ["solo"]) as c:
        # alone: the namespace has this node
        assert await c.text("solo", "namespace exp ns hosts") == "solo"


async def test_add_and_del_hosts(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["kn1", "kn2", "kn3"]) as c:
        ns = "namespace exp"
        await c.ok("kn1", f"{ns} ns del-hosts all")
        assert await c.text("kn1", f"{ns} ns hosts") == ""
        await c.ok("kn1", f"{ns} ns add-hosts localhost,kn3")
        assert await c.text("kn1", f"{ns} ns hosts") == "kn[1,3]"
        assert await c.errors("kn1", f"{ns} ns add-hosts kn2,ghost") == ["unknown host: `ghost`"]
        # nothing was added by the failed command
        assert await c.text("kn1", f"{ns} ns hosts") == "kn[1,3]"
        await c.ok("kn1", f"{ns} ns add-hosts all")
        assert await c.text("kn1", f"{ns} ns hosts") == "kn[1-3]"
        await c.ok("kn1", f"{ns} ns del-hosts kn[2-3]")
        assert await c.text("kn1", f"{ns} ns hosts") == "kn1"
        assert await c.errors("kn1", f"{ns} ns add-hosts kn[1") == [
            "invalid hosts -- unterminated '['"
        ]


async def test_ns_run_runs_on_every_host(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        await c.ok("a", "namespace exp ns add-hosts localhost")
        responses = await c.ok("a", "namespace exp ns run echo hi")
        assert sorted((r.host, r.response) for r in responses) == [("a", "hi"), ("b", "hi")]
        assert await c.errors("a", "namespace exp ns run read /dev/null") == [
            "cannot run `read /dev/null` using `ns run`"
        ]
        assert await c.errors("a", "ns run mesh send all version") == [
            "cannot run `mesh send all version` using `ns run`"
        ]


async def test_queue_flush_queueing_and_load(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a"]) as c:
        assert await c.text("a", "ns queueing") == "false"
        await c.ok("a", "ns queueing true")
        await c.ok("a", "vm launch kvm q[0-1]")
        await c.ok("a", "vm launch kvm 2")
        queue = await c.text("a", "ns queue")
        assert queue.startswith("VMs: 2\nNames: q[0-1]\nVM Type: kvm\n\nVM configuration:")
        assert "VMs: 2\nNames: \nVM Type: kvm" in queue
        await c.ok("a", "ns flush")
        assert await c.text("a", "ns queue") == ""
        assert await c.text("a", "ns load") == "cpucommit"
        await c.ok("a", "ns load memcommit")
        assert await c.text("a", "ns load") == "memcommit"
        assert await c.errors("a", "ns schedule") == [
            "namespace must contain at least one queued VM to launch VMs"
        ]
