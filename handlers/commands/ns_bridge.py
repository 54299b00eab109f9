"""``ns bridge`` and ``ns del-bridge``: one bridge across a namespace's hosts, 2.8's full mesh.

2.8's ``cliNamespaceBridge``: with more than one host, each host name is
resolved to its first non-loopback address (as ``net.LookupIP``: the hosts
file, then DNS), one random key is drawn for the bridge (32 bits for GRE, 24
for VXLAN, whose identifier has 24: 2.8's 32-bit VXLAN keys lose every
frame), and every
host runs ``bridge config <br> rstp_enable=true`` (loops are bad) and then
``bridge tunnel <gre|vxlan> <br> <ip> <key>`` towards every other host. The
bridge and its key are kept in the namespace; ``ns del-bridge`` runs
``bridge destroy`` on every host, and ``clear namespace`` does so for each
bridge the namespace made. Other hosts run their lines as ``mesh send``
does (source ``meshage``); each host's lines run in order, the hosts at
once (2.8 ran them one after another: the result is the same).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from ipaddress import ip_address
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.bus.messages import CommandRequest, Response
from megabus.handlers.commands.mesh import SOURCE_MESHAGE
from megabus.handlers.commands.namespace import on_destroy
from megabus.handlers.node import fanout
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

_LONG = """Create or delete a bridge that spans every host of the namespace.

- bridge     : create a full mesh of GRE (default) or VXLAN tunnels between
               the namespace's hosts on the named bridge (RSTP enabled)
- del-bridge : destroy the bridge on every host of the namespace"""


async def lookup(host: str) -> str:
    """The first non-loopback address of ``host`` (2.8's errors when there is none)."""
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        why = "no such host" if err.errno == socket.EAI_NONAME else err.strerror
        raise CommandError(f"failure looking up {host}: lookup {host}: {why}") from None
    for _family, _type, _proto, _name, addr in found:
        ip = str(addr[0])
        if not ip_address(ip).is_loopback:
            return ip
    raise CommandError("host has no non-loopback IP")


async def _run_on(ctx: Context, host: str, lines: list[str]) -> list[Response]:
    """Run ``lines`` in order on ``host`` (here, or as ``mesh send`` does); all responses."""
    out: list[Response] = []
    for line in lines:
        if host == ctx.host:
            batches = await ctx.run_line(line, ctx.namespace)
            got = [r for batch in batches for r in batch]
        elif ctx.bus is None:
            got = [fanout.missing(host, "no bus to reach it")]
        else:
            req = CommandRequest(line=line, source=SOURCE_MESHAGE, record=False, client=ctx.host)
            got = fanout.flatten(await fanout.gather(ctx.state, ctx.bus, [host], req))
        out.extend(got)
        if any(r.error for r in got):
            break  # a host whose bridge failed gets no tunnels on it
    return out


async def _run_everywhere(ctx: Context, plan: dict[str, list[str]]) -> None:
    """Run each host's lines; the first error (2.8's ``consume``) is raised."""
    results = await asyncio.gather(*(_run_on(ctx, h, lines) for h, lines in plan.items()))
    for responses in results:
        for r in responses:
            if r.error:
                raise CommandError(r.error)


@command("ns <bridge,> <bridge> [vxlan,gre]", short="tinker with active namespace", long=_LONG)
async def ns_bridge(ctx: Context, cmd: Command) -> Result:
    bridge = cmd.arg("bridge")
    if not bridge:
        raise CommandError("bridge name must not be empty string")
    hosts = fanout.hosts_of(ctx.state, ctx.namespace)
    if len(hosts) <= 1:
        return None
    tunnel = "vxlan" if cmd.flag("vxlan") else "gre"
    ips = dict(zip(hosts, await asyncio.gather(*(lookup(h) for h in hosts)), strict=True))
    # a VXLAN network identifier has 24 bits: OVS sends the low ones and then
    # matches what arrives against the whole key, so a 32-bit one (2.8's) drops every frame
    key = random.getrandbits(24 if tunnel == "vxlan" else 32)
    plan = {
        host: [
            f"bridge config {bridge} rstp_enable=true",
            *(f"bridge tunnel {tunnel} {bridge} {ips[o]} {key}" for o in hosts if o != host),
        ]
        for host in hosts
    }
    await _run_everywhere(ctx, plan)
    ctx.ns.bridges[bridge] = key
    return None


@command("ns <del-bridge,> <bridge>", short="tinker with active namespace", long=_LONG)
async def ns_del_bridge(ctx: Context, cmd: Command) -> Result:
    bridge = cmd.arg("bridge")
    if not bridge:
        raise CommandError("bridge name must not be empty string")
    await del_bridge(ctx, ctx.namespace, bridge)
    return None


async def del_bridge(ctx: Context, namespace: str, bridge: str) -> None:
    ns = ctx.state.namespace(namespace)
    if bridge not in ns.bridges:
        raise CommandError("bridge is not associated with namespace")
    hosts = fanout.hosts_of(ctx.state, namespace)
    await _run_everywhere(ctx, {h: [f"bridge destroy {bridge}"] for h in hosts})
    # 2.8 keeps the key, so its `clear namespace` then fails on "bridge not found"
    del ns.bridges[bridge]


@on_destroy(1)
async def _destroy(ctx: Context, namespace: str) -> None:
    # 2.8's clear namespace runs `ns del-bridge` for each bridge first (only where it was made)
    for bridge in sorted(ctx.state.namespace(namespace).bridges):
        try:
            await del_bridge(ctx, namespace, bridge)
        except CommandError as err:
            logger.warning("namespace %s: del-bridge %s: %s", namespace, bridge, err)
