"""``megabus schema``: print the bus's published schema as JSON (2.8's ``minimega -cli``, and more).

The document (:mod:`megabus.bus.schema`) holds every subject with its
direction and the JSON Schema of its messages, versioned, and the command
table of a node with every family this installation has. A running node
serves the same document on ``<prefix>.v1.node.<node>.schema``.
"""

from __future__ import annotations

import json
import sys

import msgspec

from megabus.handlers.main import version
from megabus.handlers.node.table import node_schema


def run_schema() -> int:
    """Print the schema; returns the exit status."""
    doc = msgspec.to_builtins(node_schema(version()))
    try:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    return 0
