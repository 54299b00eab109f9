"""What the web page shows, kept current from the bus.

The web process holds every VM of every namespace it may show. It reads them
once with ``vm info`` per namespace, then follows the nodes' lifecycle
events (``mb.v1.event.<ns>.vm``): a state change is applied as it comes; a
launch or flush marks its namespace, whose ``vm info`` is read again after a
short pause that gathers a burst of events (a ``vm launch`` of 200 VMs is one
read, not 200). Nothing polls the VMs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.msg import Msg

from megabus.bus.connection import Bus
from megabus.bus.errors import BusError
from megabus.bus.messages import Event, Response
from megabus.handlers.model import topology

logger = logging.getLogger(__name__)

#: Seconds a burst of launch/flush events is gathered before ``vm info`` is read again.
GATHER = 0.05
#: Seconds one bus command may stay silent.
COMMAND_TIMEOUT = 30.0

_STATES = {1: "BUILDING", 2: "RUNNING", 4: "PAUSED", 8: "QUIT", 16: "ERROR"}


@dataclass
class WebVM:
    """One VM as the page shows it."""

    namespace: str
    name: str
    id: int
    host: str
    state: str
    type: str
    vlan: str
    vnc_port: int
    topo: topology.TopoVM

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def json(self) -> dict[str, Any]:
        return {
            "key": self.key, "namespace": self.namespace, "name": self.name, "id": self.id,
            "host": self.host, "state": self.state, "type": self.type, "vlan": self.vlan,
            "vnc_port": self.vnc_port,
        }  # fmt: skip


#: Called with each change for the browsers: a JSON-ready message.
Listener = Callable[[dict[str, Any]], None]


@dataclass(eq=False)
class Model:
    """The VMs the page may show, by namespace.

    Args:
        bus: the web process's connection (operator role).
        node: the node whose fan-out answers ``vm info`` for a namespace.
        only: the one namespace this page may show; empty for all.
    """

    bus: Bus
    node: str
    only: str = ""
    vms: dict[str, dict[str, WebVM]] = field(default_factory=dict)
    listeners: list[Listener] = field(default_factory=list)
    _dirty: set[str] = field(default_factory=set)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _sub: Any = None

    def allowed(self, namespace: str) -> bool:
        return not self.only or namespace == self.only

    def find(self, namespace: str, name: str) -> WebVM | None:
        """The VM, or None when unknown or outside the page's namespace."""
        if not self.allowed(namespace):
            return None
        return self.vms.get(namespace, {}).get(name)

    def all(self) -> list[WebVM]:
        return [vm for ns in sorted(self.vms) for vm in self.vms[ns].values()]

    async def start(self) -> None:
        """Read every namespace, then follow the events."""
        subject = self.bus.subjects.event(self.only, "vm") if self.only else (
            f"{self.bus.subjects.root}.event.*.vm"
        )  # fmt: skip
        self._sub = await self.bus.nc.subscribe(subject, cb=self._on_event)
        for ns in await self.namespaces():
            await self.refresh(ns)
        self._task = asyncio.create_task(self._refresher(), name="web-refresh")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def command(self, line: str, namespace: str = "") -> list[Response]:
        """Run a line on the node; every response of every batch."""
        replies = await self.bus.command(
            self.node, line, namespace=namespace, idle_timeout=COMMAND_TIMEOUT
        )
        return [r for rep in replies for r in rep.responses]

    async def namespaces(self) -> list[str]:
        if self.only:
            return [self.only]
        found: set[str] = {"minimega"}
        for resp in await self.command("namespace"):
            for row in resp.tabular or []:
                if row:
                    found.add(row[0])
            for word in resp.response.split():
                found.add(word.strip("[],"))
        return sorted(n for n in found if n)

    async def refresh(self, namespace: str) -> None:
        """Read the namespace's VMs again and tell the browsers."""
        try:
            resps = await self.command("vm info", namespace)
        except (BusError, OSError) as err:
            logger.warning("web: vm info in %s: %s", namespace, err)
            return
        table: dict[str, WebVM] = {}
        for resp in resps:
            if resp.error or not resp.header:
                continue
            col = {h: i for i, h in enumerate(resp.header)}
            for row, data in zip(resp.tabular or [], resp.data or [], strict=False):
                d = msgspec.to_builtins(data)
                vm = WebVM(
                    namespace=namespace,
                    name=row[col["name"]],
                    id=int(row[col["id"]]),
                    host=resp.host,
                    state=row[col["state"]],
                    type=row[col["type"]],
                    vlan=row[col["vlan"]],
                    vnc_port=int(d.get("VNCPort") or 0),
                    topo=topology.from_data(resp.host, d),
                )
                table[vm.name] = vm
        self.vms[namespace] = table
        self._tell({"type": "namespace", "namespace": namespace,
                    "vms": [vm.json() for vm in table.values()]})  # fmt: skip

    def _tell(self, msg: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(msg)

    async def _on_event(self, msg: Msg) -> None:
        try:
            event = msgspec.json.decode(msg.data, type=Event)
        except msgspec.DecodeError:
            logger.debug("web: not an event on %s", msg.subject)
            return
        if not self.allowed(event.namespace):
            return
        action = event.detail.get("action", "")
        vm = self.vms.get(event.namespace, {}).get(event.name)
        if action == "state" and vm is not None:
            vm.state = event.detail.get("state", vm.state)
            # the state bit for the graph's colour
            bits = {v: k for k, v in _STATES.items()}
            vm.topo = topology.TopoVM(**{**vm.topo.__dict__, "state": bits.get(vm.state, 0)})
            self._tell({"type": "vm", "vm": vm.json()})
            return
        # launch, flush, a state change of a VM not seen yet: read the namespace again
        self._dirty.add(event.namespace)
        self._wake.set()

    async def _refresher(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(GATHER)
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            for ns in sorted(dirty):
                await self.refresh(ns)

    def dot(self) -> str:
        """2.8's ``viz`` text of every VM the page shows."""
        return topology.picture([vm.topo for vm in self.all()])
