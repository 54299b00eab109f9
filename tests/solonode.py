"""A node as the README starts it, in this process: its own secured nats-server on a free port.

Programs find it as any local program does, through ``<base>/megabus.json``
and the credentials the node generated into ``<base>/auth``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from natsd import free_port

from megabus.config.settings import Settings
from megabus.handlers.main import Node


@dataclass(frozen=True)
class Solo:
    """A running node: its name, base, server URL and the operator's credentials file."""

    node: Node
    name: str
    base: Path
    url: str
    operator: Path


@contextlib.asynccontextmanager
async def solo_node(base: Path, name: str = "solo") -> AsyncIterator[Solo]:
    """Start the node; ``clear all`` and stop it at the end."""
    node = Node(Settings(name=name, base=str(base), nats_port=free_port(), level="error"))
    await node.start()
    try:
        info = json.loads((base / "megabus.json").read_text())
        yield Solo(node, name, base, info["nats_url"], Path(info["auth"]) / "operator.json")
    finally:
        await node.stop()
