"""Membership and the ``mesh`` commands with real nodes on one real nats-server."""

from __future__ import annotations

from pathlib import Path

from meshnodes import cluster, start_node


async def test_nodes_find_each_other_and_mesh_lists_them(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["kn1", "kn2", "kn3"]) as c:
        assert (await c.responses("kn1", "mesh list all"))[0].response == "kn[1-3]"
        peers = (await c.responses("kn2", "mesh list peers"))[0]
        assert peers.response == "kn[1,3]"
        assert peers.data == ["kn1", "kn3"]
        listing = (await c.responses("kn3", "mesh list"))[0].response
        assert listing == ("kn1\n |--kn2\n |--kn3\nkn2\n |--kn1\n |--kn3\nkn3\n |--kn1\n |--kn2\n")
        assert (await c.responses("kn1", "mesh degree"))[0].response == "2"


async def test_mesh_status_reports_size_peers_prefix_and_port(
    nats_url: str, tmp_path: Path
) -> None:
    port = nats_url.rsplit(":", 1)[1]
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        status = (await c.responses("a", "mesh status"))[0]
        assert status.header == ["size", "degree", "peers", "context", "port"]
        assert status.tabular == [["2", "1", "1", "mb", port]]


async def test_a_stopped_node_leaves_the_mesh(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b", "c"]) as c:
        await c.nodes.pop("c").stop()
        # gone after three missed heartbeats
        await c.settle(["a", "b"])
        assert (await c.responses("b", "mesh list all"))[0].response == "a,b"


async def test_a_late_node_is_found_at_once_by_discovery(nats_url: str, tmp_path: Path) -> None:
    # heartbeats of a minute: only discovery can make the others known to the newcomer
    async with cluster(nats_url, tmp_path, ["a", "b"], heartbeat=60.0) as c:
        c.nodes["c"] = await start_node(nats_url, tmp_path, "c", heartbeat=60.0)
        resp = (await c.responses("c", "mesh list all"))[0]
        assert resp.data == ["a", "b", "c"]


async def test_mesh_commands_that_do_not_apply_say_why(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        assert await c.errors("a", "mesh degree 3") == [
            "mesh degree does not apply: NATS reaches every node from every node; "
            "the degree is the number of other live nodes"
        ]
        assert await c.errors("a", "mesh dial b") == []
        (err,) = await c.errors("a", "mesh dial nowhere")
        assert err.startswith("cannot dial nowhere: nodes join through NATS")
        (err,) = await c.errors("a", "mesh hangup b")
        assert err.startswith("cannot hang up on b:")
        assert await c.errors("a", "mesh dial a") == ["cannot dial self"]


async def test_mesh_timeout_shows_and_sets(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a"]) as c:
        assert await c.text("a", "mesh timeout") == "unlimited"
        await c.ok("a", "mesh timeout 90")
        assert await c.text("a", "mesh timeout") == "1m30s"
        assert await c.errors("a", "mesh timeout x") == [
            'strconv.Atoi: parsing "x": invalid syntax'
        ]
        await c.ok("a", "mesh timeout 0")
        assert await c.text("a", "mesh timeout") == "unlimited"


async def test_mesh_dot_writes_the_graph(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        path = tmp_path / "mesh.dot"
        await c.ok("a", f"mesh dot {path}")
        text = path.read_text()
        assert text.startswith("graph minimega {")
        assert '"a" -- "b";' in text


async def test_clear_namespace_reaches_every_node(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        await c.ok("a", "namespace exp ns add-hosts localhost")
        await c.ok("a", "namespace exp vm launch kvm v[0-3]")
        assert await c.text("b", "namespace exp .columns name vm info") != ""
        await c.ok("a", "clear namespace exp")
        # gone on b too: its VMs were killed and flushed with it
        assert await c.text("b", "namespace exp .columns name vm info") == ""
        assert await c.text("a", "namespace exp .columns name vm info") == ""
        # a namespace no node knows is still an error
        assert await c.errors("a", "clear namespace nosuch") == ["unknown namespace: nosuch"]
