"""cc on the node side: one :class:`CcServer` per namespace, and how VMs attach to it.

VM runtimes call, with the node's state and the VM:

* ``await cc_attach_unix(state, vm, path)``: a container; the node listens on
  ``path`` (the container's ``<fs>/cc``) and its agent dials in;
* ``await cc_attach_serial(state, vm, path)``: a KVM guest; the node keeps
  dialing the VM's virtio-serial socket ``<inst>/cc`` (2.8 does it on the first
  ``vm start``);
* ``await cc_detach(state, vm)``: the VM is flushed; stop listening or dialing.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from megabus.handlers.cc.server import CcServer

if TYPE_CHECKING:
    from megabus.bus.connection import Bus
    from megabus.handlers.state import NodeState
    from megabus.handlers.vms.model import VM

EXTRA_KEY = "cc"


@dataclass(eq=False)
class CcNode:
    """Every cc server of one node."""

    state: NodeState
    bus: Bus | None = None
    servers: dict[str, CcServer] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def server(self, namespace: str) -> CcServer:
        """The namespace's server, created (and its commands replayed) on first use."""
        srv = self.servers.get(namespace)
        if srv is not None:
            return srv
        async with self.lock:
            srv = self.servers.get(namespace)
            if srv is None:
                srv = CcServer(self.state, self.bus, namespace)
                await srv.open()
                self.servers[namespace] = srv
        return srv

    async def close(self) -> None:
        servers = list(self.servers.values())
        self.servers.clear()
        for srv in servers:
            await srv.close()


#: Every node's cc servers in this process (tests run several nodes in one).
_NODES: weakref.WeakSet[CcNode] = weakref.WeakSet()


def cc_node(state: NodeState) -> CcNode:
    """The node's cc servers (created on first use)."""
    node = state.extra.get(EXTRA_KEY)
    if not isinstance(node, CcNode):
        node = state.extra[EXTRA_KEY] = CcNode(state)
        _NODES.add(node)
    return node


def cc_active_anywhere(vm: VM) -> bool:
    """Whether ``vm``'s agent is connected to its node (``vm info``'s ``cc_active``)."""
    for node in list(_NODES):
        if node.state.vms.vms.get(vm.id) is vm:
            return cc_active(node.state, vm)
    return False


async def cc_attach_unix(state: NodeState, vm: VM, path: str) -> None:
    """Listen for ``vm``'s agent on the unix socket ``path``."""
    srv = await cc_node(state).server(vm.namespace)
    await srv.listen_unix(path, vm)


async def cc_attach_serial(state: NodeState, vm: VM, path: str) -> None:
    """Dial ``vm``'s virtio-serial socket ``path`` (again and again, until detached)."""
    srv = await cc_node(state).server(vm.namespace)
    srv.dial_serial(path, vm)


async def cc_detach(state: NodeState, vm: VM) -> None:
    """Stop serving ``vm``'s agent."""
    srv = cc_node(state).servers.get(vm.namespace)
    if srv is not None:
        await srv.detach(vm)


def cc_active(state: NodeState, vm: VM) -> bool:
    """Whether ``vm``'s agent is connected."""
    srv = cc_node(state).servers.get(vm.namespace)
    return srv is not None and vm.uuid in srv.clients


__all__ = [
    "CcNode",
    "CcServer",
    "cc_active",
    "cc_active_anywhere",
    "cc_attach_serial",
    "cc_attach_unix",
    "cc_detach",
    "cc_node",
]
