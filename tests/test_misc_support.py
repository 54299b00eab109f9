"""The test node of ``nodes.py`` (the ``node`` fixture): it runs lines and records them."""

from __future__ import annotations

from nodes import MiniNode


async def test_a_test_node_runs_lines_and_records_them(node: MiniNode) -> None:
    assert await node.text("echo hello   world") == "hello world"
    assert node.state.history == ["echo hello   world"]
