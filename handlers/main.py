"""The composition root: a node with every minimega command.

The node runtime (:mod:`megabus.handlers.node`) knows no command family; the
families (:mod:`megabus.handlers.commands`) register themselves on import.
This module puts the two together, so ``megabus node``, the tests and any
program that embeds a node import :class:`Node` from here.
"""

from __future__ import annotations

from megabus.handlers import commands
from megabus.handlers.node.dispatch import Dispatcher
from megabus.handlers.node.process import Node, default_dispatcher, run_node, version

commands.load()

__all__ = ["Dispatcher", "Node", "default_dispatcher", "run_node", "version"]
