"""The node's command table and published schema (2.8's ``minimega -cli``).

Built from the registry, so it holds exactly the families this node has
loaded: the client (:mod:`megabus.client`) makes its methods from it, and
``megabus schema`` prints it.
"""

from __future__ import annotations

from megabus.bus.messages import CommandSpec, Schema
from megabus.bus.schema import build_schema
from megabus.handlers.node import registry


def command_table() -> list[CommandSpec]:
    """Every registered handler, in registration order."""
    return [
        CommandSpec(
            patterns=list(h.patterns),
            family=h.func.__module__.rsplit(".", 1)[-1],
            short=h.short,
            long=h.long,
            kind=h.kind,
        )
        for h in registry.HANDLERS
    ]


def node_schema(megabus: str, node: str = "") -> Schema:
    """The published schema with this process's command table."""
    return build_schema(megabus=megabus, commands=command_table(), node=node)


__all__ = ["command_table", "node_schema"]
