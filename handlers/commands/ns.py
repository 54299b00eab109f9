"""The ``ns`` sub-commands for hosts, load, the queue, the scheduler and ``ns run``.

2.8's ``namespace_cli.go``: ``ns hosts`` folds the namespace's hosts into
ranges; ``ns add-hosts`` takes live nodes only (``localhost`` is this node,
``all`` every other live node); ``ns del-hosts``; ``ns load`` picks how the
scheduler measures load; ``ns queue``, ``ns flush`` and ``ns queueing`` look
at and change the launch queue; ``ns schedule`` runs the scheduler
(:mod:`megabus.handlers.node.schedule`) or its ``dry-run``, ``dump``, ``mv`` and
``status``; ``ns run`` runs one command on every host of the namespace.
``ns bridge``, ``ns del-bridge`` (``ns_bridge.py``) and ``ns snapshot`` live apart.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.bus.messages import Response
from megabus.handlers.commands.mesh import SOURCE_MESHAGE
from megabus.handlers.language.command import LanguageError
from megabus.handlers.language.ranges import expand, unsplit
from megabus.handlers.model.vm import QueuedVMs
from megabus.handlers.node import fanout, schedule
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

WILDCARD = "all"
LOCALHOST = "localhost"
#: ``ns run`` refuses these anywhere in its command (2.8's list).
_NOT_IN_RUN = ("read", "mesh send", "ns run", "vm launch")

_LONG = """Display or modify the active namespace.

- hosts     : list hosts
- add-hosts : add comma-separated list of hosts to the namespace
- del-hosts : delete comma-separated list of hosts from the namespace
- load      : display or change host load is computed for scheduler, based on:
  - cpucommit : total CPU commit divided by number of CPUs (default)
  - netcommit : total NIC
  - memcommit : total memory commit divided by total memory
- queue     : display VM queue
- flush     : clear the VM queue
- queueing  : toggle VMs queueing when launching (default false)
- schedule  : run scheduler (same as "vm launch")
  - dry-run : determine VM placement and print out VM -> host assignments
  - dump    : print out VM -> host assignments (after dry-run)
  - mv      : manually edit VM placement in schedule (after dry-run)
  - status  : display scheduling status
- run       : run a command on all nodes in the namespace"""


def _hosts_arg(cmd: Command) -> list[str]:
    try:
        return expand(cmd.arg("hostname"))
    except LanguageError as err:
        raise CommandError(f"invalid hosts -- {err}") from None


@command("ns <hosts,>", short="tinker with active namespace", long=_LONG)
async def ns_hosts(ctx: Context, cmd: Command) -> Result:
    return ctx.respond(unsplit(fanout.hosts_of(ctx.state, ctx.namespace)))


@command("ns <add-hosts,> <hostname or range or all>", short="tinker with active namespace")
async def ns_add_hosts(ctx: Context, cmd: Command) -> Result:
    """Add live nodes; ``all`` adds every peer; nothing changes on an unknown host."""
    hosts = _hosts_arg(cmd)
    peers = set(fanout.peers(ctx.state))
    ns = ctx.ns
    fanout.ensure_hosts(ctx.state, ctx.namespace)
    for i, h in enumerate(hosts):
        if h == WILDCARD:
            ns.hosts = sorted({*ns.hosts, *peers})
            return None
        if h == LOCALHOST:
            hosts[i] = h = ctx.host
        if h != ctx.host and h not in peers:
            raise CommandError(f"unknown host: `{h}`")
    ns.hosts = sorted({*ns.hosts, *hosts})
    return None


@command("ns <del-hosts,> <hostname or range or all>", short="tinker with active namespace")
async def ns_del_hosts(ctx: Context, cmd: Command) -> Result:
    hosts = _hosts_arg(cmd)
    ns = ctx.ns
    fanout.ensure_hosts(ctx.state, ctx.namespace)
    if WILDCARD in hosts:
        ns.hosts = []
        return None
    gone = {ctx.host if h == LOCALHOST else h for h in hosts}
    ns.hosts = [h for h in ns.hosts if h not in gone]
    return None


@command(
    "ns <load,>",
    "ns <load,> <cpucommit,>",
    "ns <load,> <netcommit,>",
    "ns <load,> <memcommit,>",
    short="tinker with active namespace",
)
async def ns_load(ctx: Context, cmd: Command) -> Result:
    for key in schedule.SORT_BY:
        if cmd.flag(key):
            ctx.ns.host_sort_by = key
            return None
    return ctx.respond(ctx.ns.host_sort_by)


def _queue_text(q: QueuedVMs) -> str:
    names = unsplit([n for n in q.names if n])
    return f"VMs: {len(q.names)}\nNames: {names}\nVM Type: {q.type}\n\n{q.config.dump()}\n\n"


@command("ns <queue,>", short="tinker with active namespace")
async def ns_queue(ctx: Context, cmd: Command) -> Result:
    return ctx.respond("".join(_queue_text(q) for q in ctx.ns.vm_queue))


@command("ns <flush,>", short="tinker with active namespace")
async def ns_flush(ctx: Context, cmd: Command) -> Result:
    ctx.ns.vm_queue = []
    return None


@command("ns <queueing,> [true,false]", short="tinker with active namespace")
async def ns_queueing(ctx: Context, cmd: Command) -> Result:
    if cmd.flag("true") or cmd.flag("false"):
        ctx.ns.queueing = cmd.flag("true")
        if ctx.ns.vm_queue:
            logger.warning("queueing behavior changed when VMs already queued")
        return None
    return ctx.respond("true" if ctx.ns.queueing else "false")


@command(
    "ns <schedule,>",
    "ns <schedule,> <dry-run,>",
    "ns <schedule,> <dump,>",
    "ns <schedule,> <mv,> <vm target> <dst>",
    "ns <schedule,> <status,>",
    short="tinker with active namespace",
)
async def ns_schedule(ctx: Context, cmd: Command) -> Result:
    ns = ctx.ns
    if cmd.flag("dry-run") or cmd.flag("dump"):
        if cmd.flag("dry-run"):
            await schedule.schedule(ctx, dry_run=True)
        if ns.assignment is None:
            raise CommandError("must run dry-run first")
        rows = [
            [name, dst]
            for dst, queue in sorted(ns.assignment.items())
            for q in queue
            for name in q.names
        ]
        return ctx.table(["vm", "dst"], rows)
    if cmd.flag("mv"):
        reschedule(ctx, cmd.arg("vm"), cmd.arg("dst"))
        return None
    if cmd.flag("status"):
        rows = [
            [
                _rfc822(s.start),
                _rfc822(s.end) if s.end else "",
                s.state,
                str(s.launched),
                str(s.failures),
                str(s.total),
                str(s.hosts),
            ]
            for s in schedule.stats_of(ns)
        ]
        return ctx.table(["start", "end", "state", "launched", "failures", "total", "hosts"], rows)
    await schedule.schedule(ctx)
    return None


def _rfc822(t: float) -> str:
    """Go's ``time.RFC822`` (``02 Jan 06 15:04 MST``)."""
    return time.strftime("%d %b %y %H:%M %Z", time.localtime(t))


def reschedule(ctx: Context, target: str, dst: str) -> None:
    """2.8's ``Namespace.Reschedule``: move VMs of the dry-run's placement to ``dst``."""
    ns = ctx.ns
    if ns.assignment is None:
        raise CommandError("must run dry-run first")
    if dst not in fanout.hosts_of(ctx.state, ctx.namespace):
        raise CommandError("new dst host is not in namespace")
    try:
        names = expand(target)
    except LanguageError as err:
        raise CommandError(str(err)) from None
    for name in names:
        for src, queue in ns.assignment.items():
            q = next((q for q in queue if name in q.names), None)
            if q is None:
                continue
            if len(q.names) == 1:
                queue.remove(q)
                ns.assignment.setdefault(dst, []).append(q)
            else:
                q.names.remove(name)
                moved = QueuedVMs(names=[name], type=q.type, config=q.config)
                ns.assignment.setdefault(dst, []).append(moved)
            logger.debug("moved %s from %s to %s", name, src, dst)
            break
        else:
            raise CommandError(f"reassign {name}: vm not found")
    for host in [h for h, q in ns.assignment.items() if not q]:
        del ns.assignment[host]


def _has_command(cmd: Command | None, prefix: str) -> bool:
    while cmd is not None:
        if cmd.original.startswith(prefix):
            return True
        cmd = cmd.subcommand
    return False


@command("ns <run,> (command)", short="tinker with active namespace")
async def ns_run(ctx: Context, cmd: Command) -> Result:
    """Run the command on every host of the namespace (here and remotely), one batch."""
    if ctx.source == SOURCE_MESHAGE:
        raise CommandError(f"cannot run `{cmd.original}` via meshage")
    sub = cmd.subcommand
    assert sub is not None  # the pattern has (command)
    for forbidden in _NOT_IN_RUN:
        if _has_command(sub, forbidden):
            raise CommandError(f"cannot run `{sub.original}` using `ns run`")
    # the local copy runs as a fan-out copy does: locally only
    sub.source = ctx.namespace

    async def local() -> list[Response]:
        batches = await ctx.run_command(sub, ctx.namespace)
        return [r for batch in batches for r in batch]

    return await fanout.spread(ctx, sub, "broadcast", local)
