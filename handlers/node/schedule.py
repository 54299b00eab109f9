"""The scheduler: a namespace's queued VMs placed on its hosts and launched there.

A port of 2.8's ``scheduler.go`` and ``Namespace.Schedule`` (section 3.1):

* host figures come from a ``host`` fan-out over the namespace;
* hosts rank by ``ns load`` (``cpucommit``, the default: vCPUs per CPU;
  ``memcommit``: memory per total memory; ``netcommit``: NICs), a full host
  (``vmlimit`` reached) last; each VM goes to the least loaded host, whose
  figures grow by the VM's config before the next choice. Ties go to the
  first host by name (2.8's heap order is an accident of its layout);
* ``vm config schedule <host>`` pins a VM (``localhost`` is this node),
  ``colocate <vm>`` puts it with another VM (queued or running), and
  ``coschedule <n>`` limits the VMs on its host to ``n + 1`` (-1 unlimited);
* one host takes everything.

Dispatch names unnamed VMs here (``vm-<n>`` from this node's per-namespace
counter, so names stay unique across the namespace), launches this node's
share directly and sends each other host a :class:`LaunchRequest`; launch
errors are logged and counted for ``ns schedule status``, as in 2.8.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from megabus.bus.codec import decode
from megabus.bus.errors import BusDecodeError, BusError, CommandError
from megabus.bus.messages import CommandRequest, LaunchReply, LaunchRequest, Response
from megabus.bus.tasks import TaskSet
from megabus.handlers.files import fetch_vm_files
from megabus.handlers.model.config import VMConfig
from megabus.handlers.model.vm import QueuedVMs, VMType
from megabus.handlers.node import fanout, hoststats
from megabus.handlers.node.context import Context
from megabus.handlers.node.progress import progress
from megabus.handlers.vms import launch as vm_launch

if TYPE_CHECKING:
    from megabus.bus.connection import Bus
    from megabus.handlers.node.state import Namespace, NodeState

logger = logging.getLogger(__name__)

LOCALHOST = "localhost"
#: Seconds a host may take to launch its share before the scheduler stops waiting.
LAUNCH_TIMEOUT = 300.0
#: Flush timeout when subscribing.
FLUSH_TIMEOUT = 5
#: ``ns load`` choices.
SORT_BY = ("cpucommit", "memcommit", "netcommit")

RUNNING = "running"
COMPLETED = "completed"


# -- placement ---------------------------------------------------------------------------


@dataclass
class HostLoad:
    """2.8's ``HostStats``, the part the scheduler reads and grows."""

    name: str
    cpus: int = 1
    memtotal: int = 1
    vms: int = 0
    limit: int = -1
    cpucommit: int = 0
    memcommit: int = 0
    netcommit: int = 0

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> HostLoad:
        return cls(
            name=str(data["name"]),
            cpus=int(data.get("cpus", 1)) or 1,
            memtotal=int(data.get("memtotal", 1)) or 1,
            vms=int(data.get("vms", 0)),
            limit=int(data.get("vmlimit", -1)),
            cpucommit=int(data.get("cpucommit", 0)),
            memcommit=int(data.get("memcommit", 0)),
            netcommit=int(data.get("netcommit", 0)),
        )

    def full(self) -> bool:
        return self.limit != -1 and self.vms >= self.limit

    def add(self, cfg: VMConfig) -> None:
        self.vms += 1
        self.cpucommit += cfg.vcpus
        self.memcommit += cfg.memory
        self.netcommit += len(cfg.networks)


_LOAD: dict[str, Callable[[HostLoad], float]] = {
    "cpucommit": lambda h: h.cpucommit / h.cpus,
    "memcommit": lambda h: h.memcommit / h.memtotal,
    "netcommit": lambda h: float(h.netcommit),
}


def _queue_key(q: QueuedVMs, colocated: int) -> tuple[Any, ...]:
    """2.8's ``QueuedVMs.Less``: pinned first, then lower coschedule, more colocated, bigger."""
    cfg = q.config
    return (
        cfg.schedule == "",
        cfg.schedule,
        cfg.coschedule == -1,
        cfg.coschedule,
        -colocated,
        -len(q.names),
    )


def place(
    queue: list[QueuedVMs], hosts: list[HostLoad], sort_by: str = "cpucommit"
) -> dict[str, list[QueuedVMs]]:
    """Assign every queued VM to a host; one :class:`QueuedVMs` per VM in the result.

    Raises:
        CommandError: 2.8's texts (no hosts, unknown host, coschedule, colocate).
    """
    if not hosts:
        raise CommandError("no hosts to schedule VMs on")
    if len(hosts) == 1:
        logger.warning("only one host in namespace, scheduling all VMs on it")
        return {hosts[0].name: list(queue)}
    by_name = {h.name: h for h in hosts}
    load = _LOAD.get(sort_by, _LOAD["cpucommit"])
    res: dict[str, list[QueuedVMs]] = {}
    floating: dict[str, list[QueuedVMs]] = {}
    for q in queue:
        pinned = q.config.schedule
        if pinned and pinned not in by_name:
            raise CommandError(f"VM scheduled on unknown host: `{pinned}`")
        if q.config.colocate and not pinned:
            floating.setdefault(q.config.colocate, []).append(q)
    counts = {id(q): sum(len(floating.get(n, [])) for n in q.names) for q in queue}
    ordered = sorted(queue, key=lambda q: _queue_key(q, counts[id(q)]))

    def add(h: HostLoad, name: str, q: QueuedVMs) -> None:
        limit = q.config.coschedule
        if limit != -1:
            limit += 1
            if h.limit == -1 or limit < h.limit:
                h.limit = limit
        h.add(q.config)
        for q2 in floating.pop(name, []):
            for name2 in q2.names:
                add(h, name2, q2)
        if h.limit != -1 and h.vms > h.limit:
            raise CommandError(
                f"too many VMs scheduled on {h.name} for coschedule requirement of {h.limit}"
            )
        res.setdefault(h.name, []).append(QueuedVMs(names=[name], type=q.type, config=q.config))

    for q in ordered:
        if q.config.colocate and not q.config.schedule:
            continue  # goes with its partner
        for name in q.names:
            if q.config.schedule:
                h = by_name[q.config.schedule]
            else:
                h = min(hosts, key=lambda h: (h.full(), load(h), h.name))
            add(h, name, q)
    if floating:
        raise CommandError(f"nonexistent colocate VMs: [{', '.join(sorted(floating))}]")
    return res


# -- the namespace's scheduler ------------------------------------------------------------


@dataclass
class ScheduleStat:
    """One ``ns schedule status`` row."""

    start: float
    total: int
    hosts: int
    end: float = 0.0
    state: str = RUNNING
    launched: int = 0
    failures: int = 0
    errors: list[str] = field(default_factory=list)


async def host_loads(ctx: Context) -> list[HostLoad]:
    """Every namespace host's figures (a ``host`` fan-out); failures are logged and skipped."""
    hosts = fanout.hosts_of(ctx.state, ctx.namespace)
    out: list[HostLoad] = []
    responses: list[Response] = []
    others = [h for h in hosts if h != ctx.host]
    if ctx.host in hosts:
        responses.append(Response(host=ctx.host, data=await hoststats.stats(ctx.state)))
    if others and ctx.bus is not None:
        req = CommandRequest(
            line="host", namespace=ctx.namespace, source=ctx.namespace, record=False
        )
        responses += fanout.flatten(await fanout.gather(ctx.state, ctx.bus, others, req))
    for resp in responses:
        if resp.error:
            logger.error("%s", resp.error)
        elif isinstance(resp.data, dict):
            out.append(HostLoad.from_data(resp.data))
        else:
            logger.error("unknown data field in `host` from %s", resp.host)
    return out


async def placed_vms(ctx: Context) -> dict[str, str]:
    """Name -> host of the namespace's VMs (a ``vm info`` fan-out), for colocation."""
    req = CommandRequest(
        line="vm info summary", namespace=ctx.namespace, source=ctx.namespace, record=False
    )
    where = {vm.name: ctx.host for vm in ctx.state.vms.in_namespace(ctx.namespace)}
    others = [h for h in fanout.hosts_of(ctx.state, ctx.namespace) if h != ctx.host]
    if others and ctx.bus is not None:
        got = await fanout.gather(ctx.state, ctx.bus, others, req)
        for node, responses in got.items():
            for resp in responses:
                for vm in resp.data or []:
                    # vm info's data is 2.8's JSON: the VM's fields are capitalized
                    name = vm.get("Name", vm.get("name")) if isinstance(vm, dict) else None
                    if name is not None:
                        where[str(name)] = node
    return where


async def schedule(ctx: Context, *, dry_run: bool = False) -> ScheduleStat | None:
    """2.8's ``Namespace.Schedule``: place the queue (or use the dry-run's), then launch.

    Raises:
        CommandError: 2.8's texts for an empty namespace or queue and for placement.
    """
    ns = ctx.ns
    hosts = fanout.hosts_of(ctx.state, ctx.namespace)
    if not hosts:
        raise CommandError("namespace must contain at least one host to launch VMs")
    if not ns.vm_queue:
        raise CommandError("namespace must contain at least one queued VM to launch VMs")
    if ns.assignment is not None and not dry_run:
        assignment, ns.assignment = ns.assignment, None
        return await dispatch(ctx, assignment)
    loads = await host_loads(ctx)
    if any(q.config.colocate for q in ns.vm_queue):
        where = await placed_vms(ctx)
        for q in ns.vm_queue:
            if q.config.colocate in where:
                q.config.schedule = where[q.config.colocate]
    for q in ns.vm_queue:
        if q.config.schedule == LOCALHOST:
            q.config.schedule = ctx.host
    assignment = place(list(ns.vm_queue), loads, ns.host_sort_by)
    if dry_run:
        ns.assignment = assignment
        return None
    return await dispatch(ctx, assignment)


async def dispatch(ctx: Context, assignment: dict[str, list[QueuedVMs]]) -> ScheduleStat:
    """Launch each host's share at once; count and log what failed (2.8 does not fail)."""
    ns = ctx.ns
    stat = ScheduleStat(
        start=time.time(),
        total=sum(len(q.names) for q in ns.vm_queue),
        hosts=len(ns.hosts),
    )
    ns.vm_queue = []
    ns.schedule_stats.append(stat)
    for queue in assignment.values():
        for q in queue:
            q.names = [n or ctx.state.vms.unnamed(ctx.namespace) for n in q.names]

    async def one(node: str, queue: list[QueuedVMs]) -> None:
        for q in queue:
            logger.info("scheduling %d %s VMs on %s", len(q.names), q.type, node)
            if node == ctx.host:
                errors = await launch_here(ctx, [q])
            else:
                errors = await launch_there(ctx, node, q)
            for err in errors:
                logger.error("launch error, host %s -- %s", node, err)
            stat.errors += errors
            stat.failures += 1 if errors else 0
            stat.launched += 0 if errors else len(q.names)

    try:
        await asyncio.gather(*(one(n, q) for n, q in assignment.items()))
    finally:
        stat.end = time.time()
        stat.state = COMPLETED
        logger.info("scheduling complete")
    return stat


async def launch_here(ctx: Context, queued: list[QueuedVMs]) -> list[str]:
    """Launch ``queued`` on this node (with a status update of the progress); the errors."""
    if not any(q.names for q in queued):
        return []
    errors: list[str] = []
    ready: list[QueuedVMs] = []
    async with progress(ctx, "file get") as fp:

        def fetched(name: str, done: int, total: int) -> None:
            fp.update(f"{name}: {done}/{total} parts", done / total if total else 1.0)

        for q in queued:
            # 2.8 fetches what a VM names before it launches, on the host it lands on
            try:
                await fetch_vm_files(ctx.state.files, q.config, fetched)
            except CommandError as err:
                errors.append(str(err))
            else:
                ready.append(q)
    if not ready:
        return errors
    async with progress(ctx, "vm launch") as p:

        def update(done: int, total: int) -> None:
            p.update(f"launched {done}/{total} VMs", done / total)

        return errors + await vm_launch.launch(ctx.state.vm_host, ctx.namespace, ready, update)


def launch_subject(bus: Bus, node: str) -> str:
    """Where a node takes :class:`LaunchRequest` (beside its ``cmd`` subject)."""
    return bus.subjects.node_launch(node)


async def launch_there(ctx: Context, node: str, q: QueuedVMs) -> list[str]:
    """Ask ``node`` to launch ``q``; the error texts (one when the node did not answer)."""
    if ctx.bus is None:
        return [f"{node}: no bus to reach it"]
    req = LaunchRequest(
        namespace=ctx.namespace,
        vm_type=str(q.type),
        names=list(q.names),
        config=q.config,
        client=ctx.host,
    )
    try:
        reply = await ctx.bus.request(
            launch_subject(ctx.bus, node), req, LaunchReply, timeout=LAUNCH_TIMEOUT
        )
    except BusError as err:
        return [f"{node}: {err}"]
    return list(reply.errors)


# -- serving launch requests -----------------------------------------------------------------


class Launcher:
    """A node's server of :class:`LaunchRequest`; every request runs in its own task."""

    def __init__(self, state: NodeState, bus: Bus) -> None:
        self.state = state
        self.bus = bus
        self.sub: Subscription | None = None
        self.tasks = TaskSet(f"launcher:{state.name}")

    async def start(self) -> None:
        self.sub = await self.bus.nc.subscribe(
            launch_subject(self.bus, self.state.name),
            queue=self.bus.subjects.node_queue(self.state.name),
            cb=self._on_msg,
        )
        await self.bus.nc.flush(timeout=FLUSH_TIMEOUT)

    async def stop(self) -> None:
        sub, self.sub = self.sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        await self.tasks.join()

    async def _on_msg(self, msg: Msg) -> None:
        self.tasks.spawn(self._serve(msg), "launch")

    async def _serve(self, msg: Msg) -> None:
        try:
            req = decode(msg.data, LaunchRequest[VMConfig])
            cfg = req.config
            q = QueuedVMs(names=list(req.names), type=VMType(req.vm_type), config=cfg)
        except (BusDecodeError, msgspec.ValidationError, ValueError) as err:
            logger.warning("bad launch request: %s", err)
            reply = LaunchReply(node=self.state.name, errors=[f"bad launch request: {err}"])
        else:
            logger.info("launching %d VMs for %s in %s", len(q.names), req.client, req.namespace)
            errors = await launch_here(self._context(req.namespace), [q])
            reply = LaunchReply(node=self.state.name, launched=len(q.names), errors=errors)
        if msg.reply:
            try:
                await self.bus.publish(msg.reply, reply)
            except BusError as err:
                logger.warning("launch reply not sent: %s", err)

    def _context(self, namespace: str) -> Context:
        async def no_nested(*_: Any) -> list[list[Response]]:
            raise CommandError("no nested commands while launching")

        async def drop(_: list[Response]) -> None:
            return None

        self.state.namespace(namespace)
        fanout.ensure_hosts(self.state, namespace)
        return Context(
            state=self.state,
            namespace=namespace,
            bus=self.bus,
            run_command=no_nested,
            run_line=no_nested,
            emit=drop,
            source=namespace,
        )


def stats_of(ns: Namespace) -> list[ScheduleStat]:
    """The namespace's ``ns schedule status`` records."""
    return [s for s in ns.schedule_stats if isinstance(s, ScheduleStat)]
