"""Spreading commands over nodes: 2.8's broadcast and VM-target wrappers, and ``gather``.

minimega 2.8 (``cli.go``) wraps a handler one of three ways. A *broadcast*
command typed by a user (``source == ""``) runs on every host of the
namespace: here locally and, at the same time, on every other host as a
:class:`CommandRequest` with ``source`` and ``namespace`` set to the namespace,
so the copies run locally there and nothing fans out twice. All responses are
flattened into one batch, as 2.8 does. A *VM-target* command fans out the same
way, then drops ``vm not found`` errors unless no host succeeded.

:func:`gather` is the scatter-gather under both (and under ``mesh send`` and
``ns run``): one request per node at once, each with an *idle* timeout that
the node's keep-alives reset, an optional overall deadline (``mesh timeout``),
and the membership watched while waiting, so a node that misses three
heartbeats is named at once instead of being waited on. It is the one
fan-out: an overall deadline alone would report a live node that is busy
killing 500 VMs as missing.

A namespace's hosts follow 2.8 (section 7.2): ``minimega`` has this node only;
a new namespace has every other live node, or this node when it is alone.
They are fixed the first time a command runs in the namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from megabus.bus.errors import BusError, BusTimeoutError, NoRespondersError
from megabus.bus.messages import CommandReply, CommandRequest, ErrorReply, Response
from megabus.handlers.model.vm import DEFAULT_NAMESPACE
from megabus.handlers.node.whereabouts import lost_note

if TYPE_CHECKING:
    from megabus.bus.connection import Bus
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context
    from megabus.handlers.node.registry import Handler
    from megabus.handlers.node.state import NodeState

logger = logging.getLogger(__name__)

#: 2.8's prefix of the error a VM-target command gives on a host without the VM.
VM_NOT_FOUND = "vm not found: "
#: Seconds between looks at the membership while a gather waits.
WATCH_INTERVAL = 0.1

RunLocal = Callable[[], Awaitable[list[Response]]]


# -- who is there --------------------------------------------------------------------


def live_nodes(state: NodeState) -> list[str]:
    """Every live node, sorted, this one included."""
    if state.membership is None:
        return [state.name]
    return state.membership.live()


def peers(state: NodeState) -> list[str]:
    """Every live node but this one (2.8's ``BroadcastRecipients``)."""
    return [n for n in live_nodes(state) if n != state.name]


def ensure_hosts(state: NodeState, namespace: str) -> None:
    """Give an existing namespace its default hosts on its first use (2.8's ``NewNamespace``)."""
    ns = state.namespaces.get(namespace)
    if ns is None or ns.hosts_set:
        return
    ns.hosts_set = True
    if ns.hosts:
        return  # someone chose already
    if namespace == DEFAULT_NAMESPACE:
        ns.hosts = [state.name]
    else:
        ns.hosts = peers(state) or [state.name]
        logger.info("namespace %s: hosts %s", namespace, ", ".join(ns.hosts))


def hosts_of(state: NodeState, namespace: str) -> list[str]:
    """The hosts of ``namespace``, sorted."""
    ensure_hosts(state, namespace)
    return sorted(state.namespace(namespace).hosts)


# -- scatter-gather -----------------------------------------------------------------------


def missing(node: str, why: str) -> Response:
    """The error response that stands for a node that did not answer."""
    return Response(host=node, error=f"{node}: {why}")


def _gone(state: NodeState, node: str) -> bool:
    """Whether ``node`` was heard once and has since missed three heartbeats."""
    m = state.membership
    return m is not None and node in m.heartbeats() and not m.is_live(node)


async def gather(
    state: NodeState,
    bus: Bus,
    nodes: Iterable[str],
    req: CommandRequest,
    *,
    idle_timeout: float | None = None,
    deadline: float | None = None,
) -> dict[str, list[Response]]:
    """Run ``req`` on every node of ``nodes`` at once; responses per node, in ``nodes`` order.

    A node that cannot be reached, goes silent for ``idle_timeout`` seconds
    (default: the node's ``timeout`` setting), outlives ``deadline`` (default:
    ``mesh timeout``, 0 for none) or misses three heartbeats gets one error
    response naming it; whatever it sent before stays.
    """
    targets = list(dict.fromkeys(nodes))
    idle = idle_timeout if idle_timeout is not None else state.settings.timeout
    if deadline is None:
        deadline = state.mesh_timeout or None
    got: dict[str, list[Response]] = {n: [] for n in targets}

    def gone(node: str, why: str) -> Response:
        # a host that does not answer names the VMs it ran in the namespace
        note = lost_note(state.whereabouts, node, req.namespace) if req.namespace else ""
        return missing(node, why + note)

    async def one(node: str) -> None:
        stream = bus.request_stream(bus.subjects.node_cmd(node), req, idle_timeout=idle)
        async with contextlib.aclosing(stream):
            async for item in stream:
                if isinstance(item, CommandReply):
                    got[node].extend(item.responses)
                elif isinstance(item, ErrorReply):
                    got[node].append(Response(host=node, error=item.error))

    tasks: dict[asyncio.Task[None], str] = {}
    for node in targets:
        if _gone(state, node):
            got[node].append(gone(node, "not responding (missed 3 heartbeats)"))
        else:
            tasks[asyncio.create_task(one(node), name=f"gather-{node}")] = node
    loop = asyncio.get_running_loop()
    until = None if deadline is None else loop.time() + deadline
    pending = set(tasks)
    try:
        while pending:
            wait = WATCH_INTERVAL if until is None else min(WATCH_INTERVAL, until - loop.time())
            _, pending = await asyncio.wait(pending, timeout=max(wait, 0.0))
            timed_out = until is not None and loop.time() >= until
            for task in list(pending):
                node = tasks[task]
                if timed_out:
                    why = "timed out"
                elif _gone(state, node):
                    why = "not responding (missed 3 heartbeats)"
                else:
                    continue
                task.cancel()
                pending.discard(task)
                got[node].append(gone(node, why))
    finally:
        left = [t for t in tasks if not t.done()]
        for task in left:
            task.cancel()
        if left:
            # only unsubscribes remain to run, no node is waited on
            await asyncio.wait(left)
    for task, node in tasks.items():
        if task.cancelled():
            continue
        err = task.exception()
        if isinstance(err, NoRespondersError):
            got[node].append(gone(node, "no such node"))
        elif isinstance(err, BusTimeoutError):
            got[node].append(gone(node, f"timed out (silent for {idle:g}s)"))
        elif isinstance(err, BusError):
            got[node].append(gone(node, str(err)))
        elif err is not None:
            raise err
    return got


def flatten(per_node: dict[str, list[Response]]) -> list[Response]:
    """One batch of every node's responses, in node order."""
    return [r for responses in per_node.values() for r in responses]


# -- the wrappers ------------------------------------------------------------------------


def spreads(handler: Handler, cmd: Command) -> bool:
    """Whether ``cmd`` fans out: a broadcast or VM-target command a user typed."""
    return handler.kind != "simple" and not cmd.source


async def spread(ctx: Context, cmd: Command, kind: str, run_local: RunLocal) -> list[Response]:
    """2.8's fan-out phase: run here (``run_local``) and on the other hosts, merge.

    ``run_local`` runs the handler with ``source`` set to the namespace.
    """
    hosts = hosts_of(ctx.state, ctx.namespace)
    others = [h for h in hosts if h != ctx.host]
    local = ctx.host in hosts
    responses: list[Response] = []
    if others and ctx.bus is not None:
        req = CommandRequest(
            line=cmd.original,
            namespace=ctx.namespace,
            source=ctx.namespace,
            record=False,
            client=ctx.host,
        )
        remote = gather(ctx.state, ctx.bus, others, req)
        if local:
            mine, theirs = await asyncio.gather(run_local(), remote)
            responses = mine + flatten(theirs)
        else:
            responses = flatten(await remote)
    elif others:
        responses = [missing(h, "no bus to reach it") for h in others]
        if local:
            responses = await run_local() + responses
    elif local:
        responses = await run_local()
    if kind == "vmtarget":
        responses = drop_not_found(ctx.host, responses)
    return responses


def drop_not_found(host: str, responses: list[Response]) -> list[Response]:
    """2.8's ``wrapVMTargetCLI`` merge: ``vm not found`` counts only when no host succeeded."""
    ok = False
    not_found = ""
    kept: list[Response] = []
    for resp in responses:
        ok = ok or not resp.error
        if resp.error.startswith(VM_NOT_FOUND):
            not_found = resp.error
        else:
            kept.append(resp)
    if not ok and not kept:
        return [Response(host=host, error=not_found)]
    return kept


__all__ = [
    "drop_not_found",
    "ensure_hosts",
    "flatten",
    "gather",
    "hosts_of",
    "live_nodes",
    "missing",
    "peers",
    "spread",
    "spreads",
]
