"""Command families: one module per minimega command, thin over the engines.

Each module registers its patterns with
:func:`megabus.handlers.node.registry.command`: arguments in, an engine
call, responses out. :func:`load` imports every family, so a node's grammar
holds all of them; the table in ``docs/architecture.md`` says which module
handles which command.
"""

from __future__ import annotations

import importlib

#: Every command family module; importing one registers its patterns.
FAMILIES = (
    "builtins",
    "misc",
    "namespace",
    "vlans",
    "vm_config",
    "shell",
    "read",
    "history",
    "log",
    "status",
    "vm",
    "disk",
    "tap",
    "bridge",
    "cc",
    "vm_net",
    "capture",
    "deploy",
    "file",
    "ns_snapshot",
    "mesh",
    "host",
    "ns",
    "ns_bridge",
    "dnsmasq",
    "qos",
    "router",
    "plumb",
    "cc_mount",
    "optimize",
    "nuke",
    "debug",
    "vnc",
    "viz",
)


def load() -> None:
    """Import every family, so that the registry holds all of minimega's commands."""
    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}")


__all__ = ["FAMILIES", "load"]
