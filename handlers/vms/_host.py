"""What a VM runtime needs of the node that runs it.

A runtime (KVM or container) gets one :class:`VmHost` instead of the whole
node: the settings, the node's VM table (containers check each other's
filesystems), its bridge table (taps and veths) and its cc node (the agent's
socket). The node builds it once; tests build one without a node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from megabus.config.settings import Settings
    from megabus.handlers.cc import CcNode
    from megabus.handlers.model.table import VMTable
    from megabus.handlers.net import Bridges
    from megabus.handlers.vnc import Screens


@dataclass(eq=False, frozen=True)
class VmHost:
    """The node's parts a VM runtime uses."""

    settings: Settings
    vms: VMTable
    bridges: Bridges
    cc: CcNode
    #: The node's VNC recorders (each guest's shim routes its clients' events there).
    vnc: Screens
    #: ``optimize hugepages``: namespace -> the hugetlbfs path new KVM guests' RAM comes from.
    hugepages: dict[str, str] = field(default_factory=dict)
