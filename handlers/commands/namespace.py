"""The ``namespace`` command: list, switch, run one command elsewhere, ``clear namespace``.

Switching is node state (``ctx.state.active``), as in 2.8, where a namespace
set in one shell holds for every client. ``namespace <name> (command)`` runs
the command in ``name`` through ``ctx.run_command`` without touching the
active namespace for good.

Destroying a namespace runs the hooks registered with :func:`on_destroy`
(VMs, taps, captures, cc... as their families arrive), then frees the
namespace's VLAN aliases and range.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.bus.messages import CommandRequest
from megabus.handlers.model.vm import DEFAULT_NAMESPACE
from megabus.handlers.node import fanout
from megabus.handlers.node.registry import Result, command, on_clear_all

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

#: ``clear namespace all`` destroys every namespace.
WILDCARD = "all"

_VALID_NAME = re.compile(r"[a-zA-Z0-9_.-]+")
INVALID_NAME = "invalid name; must only include letters, numbers, hyphens and underscores"

#: A destroy hook gets the context and the namespace name being destroyed.
DestroyHook = Callable[["Context", str], Awaitable[None]]
DESTROY_HOOKS: list[tuple[int, DestroyHook]] = []


def on_destroy(order: int = 50) -> Callable[[DestroyHook], DestroyHook]:
    """Register what a family must undo when a namespace is destroyed.

    2.8's order: cc mounts, captures and VNC, VMs (kill and flush), the cc
    server, host taps; lower ``order`` runs first. VLANs are freed last, here.
    """

    def deco(func: DestroyHook) -> DestroyHook:
        DESTROY_HOOKS.append((order, func))
        return func

    return deco


_NAMESPACE_LONG = """With no arguments, "namespace" prints summary info about namespaces:

- name   : name of the namespace
- vlans  : range of VLANs, empty if not set
- active : active or not

When a namespace is specified, it changes the active namespace or runs a single
command in the different namespace."""

_CLEAR_LONG = """Without an argument, "clear namespace" will reset the namespace to the default
namespace, minimega.

With an argument, "clear namespace <name>" will destroy the specified
namespace, cleaning up all state associated with it. You may use "all" to
destroy all namespaces. This command is broadcast to the cluster to clean up
any remote state as well."""


def _set_active(ctx: Context, name: str) -> None:
    if name == ctx.namespace:
        raise CommandError(f"already in namespace: {name}")
    ctx.state.namespace(name)
    ctx.state.active = name
    logger.debug("setting active namespace: %s", name)


@command(
    "namespace [name]",
    "namespace <name> (command)",
    short="display or change namespace",
    long=_NAMESPACE_LONG,
)
async def namespace(ctx: Context, cmd: Command) -> Result:
    """List namespaces, switch to one, or run one command inside one."""
    if "name" not in cmd.string_args:
        return _listing(ctx)
    name = cmd.arg("name")
    if not _VALID_NAME.fullmatch(name):
        raise CommandError(INVALID_NAME)
    ctx.state.namespace(name)
    if cmd.subcommand is None:
        _set_active(ctx, name)
        return None
    before = ctx.state.active
    try:
        batches = await ctx.run_command(cmd.subcommand, name)
    finally:
        # a `namespace x` run inside is undone, as 2.8's RevertNamespace does
        if before != name:
            ctx.state.active = before
    for batch in batches:
        await ctx.emit(batch)
    return None


def _listing(ctx: Context) -> Result:
    ranges = ctx.state.vlans.ranges()
    rows = []
    for name in sorted(ctx.state.namespaces):
        key = "" if name == DEFAULT_NAMESPACE else name
        r = ranges.get(key)
        vlans = f"{r.min}-{r.max}" if r is not None else ""
        rows.append([name, vlans, "true" if name == ctx.namespace else "false"])
    return ctx.table(["namespace", "vlans", "active"], rows)


@command("clear namespace [name]", short="unset or delete namespace", long=_CLEAR_LONG)
async def clear_namespace(ctx: Context, cmd: Command) -> Result:
    """Return to ``minimega``, or destroy one namespace (or ``all``)."""
    name = cmd.arg("name")
    if not name:
        _set_active(ctx, DEFAULT_NAMESPACE)
        return None
    local_error = ""
    try:
        await destroy(ctx, name)
    except CommandError as err:
        local_error = str(err)
    if ctx.source or ctx.bus is None:
        if local_error:
            raise CommandError(local_error)
        return None
    # 2.8 destroys the namespace locally, then on every other node of the mesh,
    # where "unknown namespace" is no error: the namespace may never have been there
    peers = fanout.peers(ctx.state)
    req = CommandRequest(line=cmd.original, source="meshage", record=False)
    remote = await fanout.gather(ctx.state, ctx.bus, peers, req) if peers else {}
    errors = [
        r for rs in remote.values() for r in rs
        if r.error and not r.error.startswith("unknown namespace:")
    ]  # fmt: skip
    if local_error and (len(remote) == 0 or all(
        any(r.error.startswith("unknown namespace:") for r in rs) for rs in remote.values()
    )):  # fmt: skip
        raise CommandError(local_error)
    return errors or None


async def destroy(ctx: Context, name: str) -> None:
    """Destroy ``name`` (or every namespace for ``all``) on this node.

    Raises:
        CommandError: ``unknown namespace: X``.
    """
    names = sorted(ctx.state.namespaces) if name == WILDCARD else [name]
    if name != WILDCARD and name not in ctx.state.namespaces:
        raise CommandError(f"unknown namespace: {name}")
    for ns in names:
        logger.info("destroying namespace: %s", ns)
        for _order, hook in sorted(DESTROY_HOOKS, key=lambda h: h[0]):
            await hook(ctx, ns)
        await ctx.state.vlans.delete(ns, "")
        del ctx.state.namespaces[ns]
        if ctx.state.active == ns:
            logger.info("active namespace destroyed, switching to default namespace")
            ctx.state.active = DEFAULT_NAMESPACE
    # the default namespace always exists, as 2.8 recreates it on first use
    ctx.state.namespace(DEFAULT_NAMESPACE)


@on_clear_all(30)
async def _clear_all(ctx: Context) -> None:
    await destroy(ctx, WILDCARD)
