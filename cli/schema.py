"""``megabus schema``: print the bus's published schema as JSON (2.8's ``minimega -cli``, and more).

The document (:mod:`megabus.bus.schema`) holds every subject with its
direction and the JSON Schema of its messages, versioned, and the command
table of a node with every family this installation has. A running node
serves the same document on ``<prefix>.v1.node.<node>.schema``. With
``-pyi`` it prints the typed client's methods as a typing stub instead.
"""

from __future__ import annotations

import json
import sys

import msgspec

from megabus.client import build_methods, stub
from megabus.handlers.main import version
from megabus.handlers.node.table import node_schema


def run_schema(pyi: bool = False) -> int:
    """Print the schema (or, with ``pyi``, the client's methods as a typing stub)."""
    schema = node_schema(version())
    if pyi:
        text = stub(build_methods(schema.commands))
    else:
        text = json.dumps(msgspec.to_builtins(schema), indent=2) + "\n"
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    return 0
