"""cc on the node side: one :class:`CcServer` per namespace, and how VMs attach to it.

A node has one :class:`CcNode`. VM runtimes call, with the VM:

* ``await cc.attach_unix(vm, path)``: a container; the node listens on
  ``path`` (the container's ``<fs>/cc``) and its agent dials in;
* ``await cc.attach_serial(vm, path)``: a KVM guest; the node keeps dialing
  the VM's virtio-serial socket ``<inst>/cc`` (2.8 does it on the first
  ``vm start``);
* ``await cc.detach(vm)``: the VM is flushed; stop listening or dialing.

:attr:`CcNode.mounts` (:mod:`.mounts`) is ``cc mount``: containers bind-mounted,
agents' guests through FUSE over their cc connection.

cc knows VMs through the model only; what it needs of the rest of the node
(the text of a ``vm info`` column for filters, where events go) is handed to
it when the node builds it, so cc never imports the VM runtimes or the node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Container
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from megabus.handlers.cc import filter, mounts, responses
from megabus.handlers.cc._client import ClientConn
from megabus.handlers.cc._pipes import PipeHub
from megabus.handlers.cc._server import CcServer, Describe, EventSink
from megabus.handlers.cc._store import CommandState
from megabus.handlers.cc.mounts import Mounts

if TYPE_CHECKING:
    from megabus.bus.connection import Bus
    from megabus.config.settings import Settings
    from megabus.handlers.model.table import VMTable
    from megabus.handlers.model.vm import VM


def _no_events(namespace: str, uuid: str, detail: dict[str, str]) -> None:
    """Where events go on a node without a bus (unit tests)."""


def _no_columns(vm: VM, column: str) -> str:
    return ""


@dataclass(eq=False)
class CcNode:
    """Every cc server of one node, and what they need of the node."""

    #: The node's name (sent to agents in ``Welcome``).
    name: str
    #: The node's settings (``-filepath``: where ``cc send`` reads and ``cc recv`` writes).
    settings: Settings
    #: The node's VMs, to name the VM of an agent that dials in.
    vms: VMTable
    #: The text of a ``vm info`` column of a VM, for filters on columns.
    describe: Describe = _no_columns
    #: The ``vm info`` column names (a filter key that is none of them is a VM tag).
    columns: Container[str] = frozenset()
    #: Publishes cc client events (connect, disconnect).
    on_event: EventSink = _no_events
    #: Set when the node serves; commands then live in JetStream.
    bus: Bus | None = None
    #: The node's pipes, for agents' ``stdin=``/``stdout=``/``stderr=`` (None: no pipes).
    pipes: PipeHub | None = None
    servers: dict[str, CcServer] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: ``cc mount``: guests' filesystems mounted on this node.
    mounts: Mounts = field(init=False)

    def __post_init__(self) -> None:
        self.mounts = Mounts(base=self.settings.base, node=self.name)

    @property
    def files_dir(self) -> str:
        """Where ``cc send`` reads and ``cc recv`` writes files."""
        return self.settings.files_dir

    async def server(self, namespace: str) -> CcServer:
        """The namespace's server, created (and its commands replayed) on first use."""
        srv = self.servers.get(namespace)
        if srv is not None:
            return srv
        async with self.lock:
            srv = self.servers.get(namespace)
            if srv is None:
                srv = CcServer(self, namespace)
                await srv.open()
                self.servers[namespace] = srv
        return srv

    async def close(self) -> None:
        """Close every server (agents hang up; commands stay in JetStream); unmount guests."""
        await self.mounts.close()
        servers = list(self.servers.values())
        self.servers.clear()
        for srv in servers:
            await srv.close()

    async def drop(self, namespace: str) -> None:
        """Close the namespace's server and delete its commands (the namespace is gone)."""
        srv = self.servers.pop(namespace, None)
        if srv is not None:
            await srv.close()
            await srv.store.destroy()

    async def attach_unix(self, vm: VM, path: str) -> None:
        """Listen for ``vm``'s agent on the unix socket ``path``."""
        srv = await self.server(vm.namespace)
        await srv.listen_unix(path, vm)

    async def attach_serial(self, vm: VM, path: str) -> None:
        """Dial ``vm``'s virtio-serial socket ``path`` (again and again, until detached)."""
        srv = await self.server(vm.namespace)
        srv.dial_serial(path, vm)

    async def detach(self, vm: VM) -> None:
        """Stop serving ``vm``'s agent (and unmount its ``cc mount``)."""
        await self.mounts.drop_vm(vm)
        srv = self.servers.get(vm.namespace)
        if srv is not None:
            await srv.detach(vm)

    def active(self, vm: VM) -> bool:
        """Whether ``vm``'s agent is connected (``vm info``'s ``cc_active``)."""
        srv = self.servers.get(vm.namespace)
        return srv is not None and vm.uuid in srv.clients


__all__ = [
    "CcNode",
    "CcServer",
    "ClientConn",
    "CommandState",
    "Describe",
    "EventSink",
    "PipeHub",
    "filter",
    "mounts",
    "responses",
]
