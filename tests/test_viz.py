"""``viz <file>``: 2.8's graphviz dot of the namespace's VMs and VLANs, and its SVG.

Diskless KVM guests on real Open vSwitch taps; the file must be 2.8's text
byte for byte (VLANs sorted, where 2.8 wrote Go's map order), and graphviz
must draw it.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nodes import MiniNode, node_at
from ovsfix import ovs, unique

from megabus.bus.server import EmbeddedServer
from megabus.cli.graph import render
from megabus.handlers.model.topology import TopoVM, picture

__all__ = ["ovs"]

pytestmark = [pytest.mark.usefixtures("ovs"), pytest.mark.timeout(120)]


@pytest.fixture
async def vznode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "viz", base=tmp_path / "base") as n,
    ):
        try:
            yield n
        finally:
            await n.run("clear all")


async def test_viz_writes_28s_dot(vznode: MiniNode, tmp_path: Path) -> None:
    br = unique("mbv")
    for line in (
        f"vm config net {br},102 {br},101",
        "vm launch kvm a",
        f"vm config net {br},101",
        "vm launch kvm b",
        "vm start b",
        "clear vm config net",
        "vm launch kvm lonely",
        f"namespace other vm config net {br},300",
        "namespace other vm launch kvm elsewhere",
    ):
        assert await vznode.errors(line) == [], line
    out = tmp_path / "topo.dot"
    assert await vznode.errors(f"viz {out}") == []
    assert out.read_text() == (
        "graph minimega {\n"
        'size="8,11";\n'
        "overlap=false;\n"
        '"n1:a:0:[, ]:[, ]" [style=filled, color=yellow];\n'
        '"n1:a:0:[, ]:[, ]" -- 102\n'
        '"n1:a:0:[, ]:[, ]" -- 101\n'
        '"n1:b:1:[]:[]" [style=filled, color=green];\n'
        '"n1:b:1:[]:[]" -- 101\n'
        '"n1:lonely:2:[]:[]" [style=filled, color=yellow];\n'
        "101;\n"
        "102;\n"
        "}"
    )
    if shutil.which("dot") is None:
        pytest.fail("graphviz's dot is missing (ops/setup.sh installs it)")
    svg = await render(out.read_text(), "svg")
    assert b"<svg" in svg
    assert b"n1:lonely:2" in svg
    assert (await render(out.read_text(), "png")).startswith(b"\x89PNG")

    bad = tmp_path / "no" / "dir.dot"
    assert await vznode.errors(f"viz {bad}") == [f"open {bad}: no such file or directory"]


async def test_the_picture_frames_hosts_and_draws_routers_as_boxes() -> None:
    vms = [
        TopoVM("h1", "a", 0, "[]", "[]", 2, (101,)),
        TopoVM("h2", "r", 1, "[]", "[]", 2, (101, 102), router=True),
        TopoVM('h"2', "b", 2, "[]", "[]", 8, (102,)),
    ]
    assert picture(vms) == (
        "graph minimega {\n"
        "overlap=false;\n"
        "node [fontsize=10];\n"
        'subgraph cluster_0 {\nlabel="h\\"2";\nstyle=rounded;\n'
        '"h\\"2:b:2:[]:[]" [style=filled, color=blue, shape=ellipse];\n'
        "}\n"
        'subgraph cluster_1 {\nlabel="h1";\nstyle=rounded;\n'
        '"h1:a:0:[]:[]" [style=filled, color=green, shape=ellipse];\n'
        "}\n"
        'subgraph cluster_2 {\nlabel="h2";\nstyle=rounded;\n'
        '"h2:r:1:[]:[]" [style=filled, color=green, shape=box];\n'
        "}\n"
        '"h\\"2:b:2:[]:[]" -- 102\n'
        '"h1:a:0:[]:[]" -- 101\n'
        '"h2:r:1:[]:[]" -- 101\n'
        '"h2:r:1:[]:[]" -- 102\n'
        '101 [shape=oval, label="VLAN 101"];\n'
        '102 [shape=oval, label="VLAN 102"];\n'
        "}"
    )
    # graphviz draws it (a quote in a host name included)
    svg = await render(picture(vms), "svg")
    assert b"h&quot;2:b:2" in svg
