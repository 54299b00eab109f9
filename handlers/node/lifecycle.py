"""What runs as long as a node serves, started in order and stopped in reverse.

:func:`serving` is entered once the node's state exists and its bus is
connected, and left when the node stops. Each part is entered on an
:class:`~contextlib.AsyncExitStack`, so a part whose start failed (or never
came) is never stopped, and stops run in the reverse order of starts:

1. membership (heartbeats, micro discovery of the nodes already running);
2. lifecycle events to the bus, and following every node's VM events (which
   host runs what: a host that stops answering has its VMs named lost);
3. log records to the bus for a log node (``-log-node``, ``log mesh``), then
   pipes on the bus (stopped after cc, whose agents read and write them;
   stopping kills the ``plumb`` pipelines' programs), then the files
   (serving, transfers resumed from the last run, ``-hashfiles``' index);
4. ``optimize`` (KSM restored at stop), ``background`` processes (killed
   at stop) and host dnsmasq servers;
5. Open vSwitch: a private one started where none runs (stopped at the end
   only if started here);
6. cc on the bus, after ``-recover`` has adopted what a killed node left
   running (recovered guests redial cc at once);
7. IP learning on the bridges, and their re-plumbing after Open vSwitch restarts;
8. the VMs (every process killed at stop: minimega tears its VMs down when it
   exits; ``-recover`` is for a node that was killed) and their captures;
9. the scheduler's launcher, which takes VMs from other nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import nats.errors

from megabus.bus.connection import Bus
from megabus.bus.membership import Membership
from megabus.bus.messages import Response
from megabus.handlers import net
from megabus.handlers.model.config import VMConfig
from megabus.handlers.net import capture as pcap
from megabus.handlers.node.discovery import discover
from megabus.handlers.node.dispatch import Dispatcher
from megabus.handlers.node.events import EventPublisher
from megabus.handlers.node.meshlog import start_mesh_logging, stop_mesh_logging
from megabus.handlers.node.schedule import Launcher
from megabus.handlers.node.state import NodeState
from megabus.handlers.node.whereabouts import Whereabouts
from megabus.handlers.vms import Found, ReadConfig, recover
from megabus.handlers.vms import launch as vm_launch

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def serving(state: NodeState, bus: Bus) -> AsyncIterator[None]:
    """Run the node's services for as long as the block runs."""
    async with contextlib.AsyncExitStack() as stack:
        await _membership(state, bus, stack)
        _events(state, bus, stack)
        await _whereabouts(state, bus, stack)
        await _mesh_logging(state, bus, stack)
        await _pipes(state, bus, stack)
        await _files(state, bus, stack)
        # 2.8's teardown gives the host its KSM values back (after the VMs are gone)
        stack.push_async_callback(asyncio.to_thread, state.optimize.close)
        stack.push_async_callback(state.background.aclose)
        stack.push_async_callback(state.dnsmasq.kill_all)
        await _switch(stack)
        stack.push_async_callback(state.cc.close)
        state.cc.bus = bus
        if state.settings.recover:
            vms = await recover(state.vm_host, _config_reader(state, bus))
            logger.info("recovered %d vms", len(vms))
        await state.iplearn.start()
        stack.push_async_callback(state.iplearn.stop)
        await state.replumb.start()
        stack.push_async_callback(state.replumb.stop)
        stack.push_async_callback(state.vnc.close)
        stack.push_async_callback(vm_launch.shutdown, state.vm_host)
        stack.push_async_callback(_stop_captures, state)
        launcher = Launcher(state, bus)
        await launcher.start()
        stack.push_async_callback(launcher.stop)
        yield


async def _membership(state: NodeState, bus: Bus, stack: contextlib.AsyncExitStack) -> None:
    membership = Membership(bus)
    await membership.start()
    state.membership = membership
    stack.push_async_callback(_stop_membership, state)
    try:
        found = await discover(bus, state.settings.heartbeat)
    except (nats.errors.Error, OSError) as err:
        logger.warning("node discovery failed: %s", err)
        return
    for hb in found:
        if hb.node != state.name and hb.node not in membership.heartbeats():
            membership.observe(hb)


async def _stop_membership(state: NodeState) -> None:
    membership, state.membership = state.membership, None
    if membership is not None:
        await membership.stop()


def _events(state: NodeState, bus: Bus, stack: contextlib.AsyncExitStack) -> None:
    publisher = EventPublisher(bus, state.name)
    state.events = publisher
    state.vms.on_add.append(publisher.vm_added)
    state.vms.on_remove.append(publisher.vm_removed)
    publisher.start()

    async def stop() -> None:
        state.events = None
        await publisher.stop()

    stack.push_async_callback(stop)


async def _whereabouts(state: NodeState, bus: Bus, stack: contextlib.AsyncExitStack) -> None:
    where = Whereabouts()
    await where.start(bus)
    state.whereabouts = where

    async def stop() -> None:
        state.whereabouts = None
        await where.stop()

    stack.push_async_callback(stop)


async def _mesh_logging(state: NodeState, bus: Bus, stack: contextlib.AsyncExitStack) -> None:
    control = state.log_control()
    handler = await start_mesh_logging(control, bus, state.name, state.settings.log_node)
    state.meshlog = handler

    async def stop() -> None:
        state.meshlog = None
        await stop_mesh_logging(control, handler)

    stack.push_async_callback(stop)


async def _pipes(state: NodeState, bus: Bus, stack: contextlib.AsyncExitStack) -> None:
    def peers() -> list[str]:
        # round-robin asks every live node for its readers; a node that left is not waited for
        return state.membership.live() if state.membership is not None else [state.name]

    await state.pipes.start(bus, peers)
    stack.push_async_callback(state.pipes.stop)


async def _files(state: NodeState, bus: Bus, stack: contextlib.AsyncExitStack) -> None:
    def peers() -> list[str]:
        return state.membership.live() if state.membership is not None else [state.name]

    await state.files.start(bus, peers)
    stack.push_async_callback(state.files.stop)


async def _switch(stack: contextlib.AsyncExitStack) -> None:
    private = await net.ensure_switch()
    if private is not None:
        # stopped after the VMs and bridges that used it are gone
        stack.push_async_callback(private.stop)


async def _stop_captures(state: NodeState) -> None:
    for caps in state.captures.values():
        for c in list(caps.running):
            await pcap.stop(c.proc)
        caps.running.clear()


def _config_reader(state: NodeState, bus: Bus) -> ReadConfig:
    """Rebuild a recovered VM's config by running its lines through ``vm config``."""

    async def read_config(found: Found) -> VMConfig:
        ns = state.namespace(found.namespace)
        saved = ns.vm_config
        ns.vm_config = VMConfig()
        errors: list[str] = []

        async def keep(batch: list[Response]) -> None:
            errors.extend(r.error for r in batch if r.error)

        try:
            dispatcher = Dispatcher(state, bus)
            for line in found.config_lines:
                if line.startswith("vm config "):
                    await dispatcher.run_line(line, found.namespace, keep, record=False)
            return ns.vm_config
        finally:
            ns.vm_config = saved
            for err in errors:
                logger.warning("recover vm %d: config: %s", found.vm_id, err)

    return read_config
