"""The ``mesh`` family, answered for a NATS cluster, and the node's membership.

megabus has no mesh of its own: every node talks to every other through NATS
(one server, or a routed cluster). So the 2.8 commands keep their shape but
report the NATS picture:

* the mesh is the set of live nodes: a node appears with its first heartbeat
  (or at once through NATS micro discovery when this node starts) and is gone
  after three missed heartbeats (:class:`megabus.bus.membership.Membership`);
* ``mesh list`` is a full adjacency list, since every node reaches every
  other directly; ``mesh status`` gives the size, the degree and peers
  (everyone else), the context (the subject prefix, which separates
  experiments as 2.8's ``-context`` did) and the port of the NATS server;
* ``mesh degree N``, ``mesh dial`` and ``mesh hangup`` manage meshage's own
  TCP links, which do not exist here: they say so (dialing a live node is a
  no-op);
* ``mesh send`` scatters over the bus and gathers with a deadline
  (:func:`megabus.handlers.node.fanout.gather`); a node that does not answer is
  named in an error instead of being waited on. It refuses to run when it came
  through ``mesh send`` itself, with 2.8's text.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.bus.membership import MISSED_BEATS
from megabus.bus.messages import CommandRequest, Response
from megabus.handlers.language.command import LanguageError
from megabus.handlers.language.gotime import format_seconds as go_duration
from megabus.handlers.language.ranges import expand, unsplit
from megabus.handlers.node import fanout
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

#: minicli's ``Source`` of a command that came through ``mesh send``.
SOURCE_MESHAGE = "meshage"
WILDCARD = "all"
LOCALHOST = "localhost"


# -- helpers -------------------------------------------------------------------------------


def recipients(ctx: Context, spec: str) -> list[str]:
    """2.8's ``meshageSend`` host list: a range list, or ``all`` alone (every peer)."""
    try:
        hosts = expand(spec)
    except LanguageError as err:
        raise CommandError(str(err)) from None
    if WILDCARD in hosts:
        if len(hosts) > 1:
            raise CommandError("wildcard included amongst list of recipients")
        return fanout.peers(ctx.state)
    return [ctx.host if h == LOCALHOST else h for h in hosts]


# -- commands ------------------------------------------------------------------------------


@command("mesh degree [degree]", short="view or set the current degree for this mesh node")
async def mesh_degree(ctx: Context, cmd: Command) -> Result:
    """The degree is every other node: NATS links each node to all of them."""
    if cmd.arg("degree"):
        raise CommandError(
            "mesh degree does not apply: NATS reaches every node from every node; "
            "the degree is the number of other live nodes"
        )
    return ctx.respond(str(len(fanout.peers(ctx.state))))


@command("mesh dial <hostname>", short="attempt to connect this node to another node")
async def mesh_dial(ctx: Context, cmd: Command) -> Result:
    """Dialing a live node is a no-op; any other cannot be dialed over NATS."""
    host = cmd.arg("hostname")
    if host in (ctx.host, LOCALHOST):
        raise CommandError("cannot dial self")
    if host in fanout.live_nodes(ctx.state):
        return None
    raise CommandError(
        f"cannot dial {host}: nodes join through NATS, "
        "start that node with the cluster's server URLs (--nats)"
    )


@command("mesh hangup <hostname>", short="disconnect from a client")
async def mesh_hangup(ctx: Context, cmd: Command) -> Result:
    """There is no link to one node to hang up; stopping that node removes it."""
    host = cmd.arg("hostname")
    raise CommandError(
        f"cannot hang up on {host}: nodes share the NATS cluster, not links; "
        "stop that node to take it out of the mesh"
    )


@command("mesh dot <filename>", short="output a graphviz formatted dot file")
async def mesh_dot(ctx: Context, cmd: Command) -> Result:
    """Write the (complete) graph of live nodes."""
    nodes = fanout.live_nodes(ctx.state)
    lines = ["graph minimega {", 'size="10,10";', "overlap=false;"]
    lines += [f'"{n}";' for n in nodes]
    for i, a in enumerate(nodes):
        lines += [f'"{a}" -- "{b}";' for b in nodes[i + 1 :]]
    lines.append("}")
    text = "\n".join(lines) + "\n"
    path = cmd.arg("filename")
    try:
        await asyncio.to_thread(_write, path, text)
    except OSError as err:
        raise CommandError(f"open {path}: {err.strerror or err}") from None
    return None


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


@command("mesh list [all,peers]", short="display the mesh adjacency list")
async def mesh_list(ctx: Context, cmd: Command) -> Result:
    """The adjacency list (everyone is adjacent), or the nodes folded into ranges."""
    nodes = fanout.live_nodes(ctx.state)
    if cmd.flag("all") or cmd.flag("peers"):
        keys = nodes if cmd.flag("all") else [n for n in nodes if n != ctx.host]
        resp = ctx.respond(unsplit(keys))
        resp.data = keys
        return resp
    out = []
    for node in nodes:
        out.append(f"{node}\n")
        out += [f" |--{peer}\n" for peer in nodes if peer != node]
    return ctx.respond("".join(out))


@command("mesh status", short="display a short status report of the mesh")
async def mesh_status(ctx: Context, cmd: Command) -> Result:
    """``size | degree | peers | context | port`` for the NATS picture."""
    nodes = fanout.live_nodes(ctx.state)
    port = ""
    if ctx.bus is not None and ctx.bus.nc.connected_url is not None:
        port = str(ctx.bus.nc.connected_url.port or "")
    prefix = ctx.bus.subjects.prefix if ctx.bus is not None else ctx.state.settings.prefix
    peers = str(len(nodes) - 1)
    return ctx.table(
        ["size", "degree", "peers", "context", "port"],
        [[str(len(nodes)), peers, peers, prefix, port]],
    )


@command("mesh timeout [timeout]", short="view or set the mesh timeout")
async def mesh_timeout(ctx: Context, cmd: Command) -> Result:
    """Overall deadline of a fan-out; 0 is none (a silent node is still dropped)."""
    text = cmd.arg("timeout")
    if text:
        try:
            value = int(text, 10)
        except ValueError:
            raise CommandError(f'strconv.Atoi: parsing "{text}": invalid syntax') from None
        ctx.state.mesh_timeout = max(0, value)
        return None
    if ctx.state.mesh_timeout <= 0:
        return ctx.respond("unlimited")
    return ctx.respond(go_duration(ctx.state.mesh_timeout))


@command(
    "mesh send <hostname or range or all> (command)",
    short="send a command to one or more connected clients",
)
async def mesh_send(ctx: Context, cmd: Command) -> Result:
    """Run the command on the named nodes at once; one set of responses per node."""
    if ctx.source == SOURCE_MESHAGE:
        raise CommandError(f"cannot run `{cmd.original}` via meshage")
    sub = cmd.subcommand
    assert sub is not None  # the pattern has (command)
    nodes = recipients(ctx, cmd.arg("hostname"))
    if ctx.bus is None:
        raise CommandError("mesh send: the node has no bus")
    req = CommandRequest(
        line=sub.original, source=SOURCE_MESHAGE, record=sub.record, client=ctx.host
    )
    got = await fanout.gather(ctx.state, ctx.bus, nodes, req)
    responses: list[Response] = fanout.flatten(got)
    return responses or None


__all__ = ["MISSED_BEATS", "SOURCE_MESHAGE", "recipients"]
