"""Where command families register their patterns and handlers.

Each module in ``handlers/commands/`` owns one command family and registers its
patterns with :func:`command`; :mod:`megabus.handlers.node.dispatch` compiles
them into one grammar. ``clear all`` runs every hook added by
:func:`on_clear_all`, so each family clears its own state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from megabus.bus.messages import Response

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

#: How a command spreads over the cluster (minimega 2.8 section 1.4):
#: ``simple`` runs on the node that got it; ``broadcast`` runs on every host
#: of the namespace; ``vmtarget`` runs where the named VMs live.
Kind = Literal["simple", "broadcast", "vmtarget"]

#: A handler returns its responses: one, several, or none (a silent success).
Result = Response | list[Response] | None
HandlerFunc = Callable[["Context", "Command"], Awaitable[Result]]
ClearHook = Callable[["Context"], Awaitable[None]]


@dataclass(frozen=True)
class Handler:
    """One registered handler: its patterns, help and function."""

    patterns: tuple[str, ...]
    func: HandlerFunc
    #: One-line help, shown by ``help`` with no arguments.
    short: str
    #: Full help, shown by ``help <command>``.
    long: str
    kind: Kind = "simple"

    @property
    def name(self) -> str:
        """The handler's command words, e.g. ``vm config`` (for help listings)."""
        return self.patterns[0].split(" ")[0]


HANDLERS: list[Handler] = []
CLEAR_ALL: list[tuple[int, ClearHook]] = []


def command(
    *patterns: str, short: str, long: str = "", kind: Kind = "simple"
) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register ``func`` as the handler of ``patterns``.

    Example::

        @command("vlans <add,> <alias> <vlan>", short="add a VLAN alias")
        async def vlans_add(ctx: Context, cmd: Command) -> Result: ...
    """

    def deco(func: HandlerFunc) -> HandlerFunc:
        HANDLERS.append(Handler(tuple(patterns), func, short, long or short, kind))
        return func

    return deco


def on_clear_all(order: int = 50) -> Callable[[ClearHook], ClearHook]:
    """Register a hook that ``clear all`` runs; lower ``order`` runs first."""

    def deco(func: ClearHook) -> ClearHook:
        CLEAR_ALL.append((order, func))
        return func

    return deco
