"""Runs one command request on a node: aliases, compile, preprocess, handler, history.

The dispatcher is the one place that turns a line of minimega's language into
responses. Every request runs in its own task (the node starts it); nothing
here holds a lock across an await, so a handler that asks another node for
something while that node asks us (2.8's #1474 deadlock) cannot block.

Batches: a handler's return value is one batch; a handler may send earlier
batches with ``ctx.emit`` (``read`` does, one per line it runs). The front
ends see one :class:`CommandReply` per batch, rendered with the node's output
defaults, the last one with ``more=False``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.bus.messages import CommandReply, CommandRequest, Response
from megabus.handlers.language.command import Command, LanguageError
from megabus.handlers.language.grammar import Grammar
from megabus.handlers.language.render import render
from megabus.handlers.node import fanout, registry
from megabus.handlers.node.context import Context
from megabus.handlers.node.preprocess import preprocess_and_fetch
from megabus.handlers.node.registry import Handler, Result

if TYPE_CHECKING:
    from megabus.bus.connection import Bus
    from megabus.handlers.node.state import NodeState

logger = logging.getLogger(__name__)

Emit = Callable[[list[Response]], Awaitable[None]]

#: The grammar of the registered handlers, and how many there were when it was made.
_grammar: tuple[int, Grammar] | None = None


def load_grammar() -> Grammar:
    """Compile every registered handler's patterns into one grammar (once per set).

    The command families register themselves when :mod:`megabus.handlers.commands`
    is imported (:mod:`megabus.handlers.main` does it); the runtime below them
    never imports them.

    Raises:
        RuntimeError: no command family is registered.
    """
    global _grammar
    if not registry.HANDLERS:
        raise RuntimeError(
            "no command families are registered: import megabus.handlers.main "
            "(or megabus.handlers.commands) before building a dispatcher"
        )
    if _grammar is None or _grammar[0] != len(registry.HANDLERS):
        grammar = Grammar()
        for handler in registry.HANDLERS:
            grammar.add(handler, handler.patterns)
        _grammar = (len(registry.HANDLERS), grammar)
    return _grammar[1]


def set_record(cmd: Command | None, record: bool) -> None:
    """Set ``record`` on a command and all its subcommands (minicli ``SetRecord``)."""
    while cmd is not None:
        cmd.record = record
        cmd = cmd.subcommand


def set_preprocess(cmd: Command | None, value: bool) -> None:
    """Set ``preprocess`` on a command and all its subcommands."""
    while cmd is not None:
        cmd.preprocess = value
        cmd = cmd.subcommand


def _batch(ctx: Context, result: Result) -> list[Response]:
    if result is None:
        return [ctx.respond()]
    if isinstance(result, Response):
        return [result]
    return list(result)


class Dispatcher:
    """Runs command requests against one node's state."""

    def __init__(self, state: NodeState, bus: Bus | None) -> None:
        self.state = state
        self.bus = bus
        self.grammar = load_grammar()

    def vm_count(self) -> int:
        """How many VMs this node has, in every namespace (for heartbeats)."""
        return len(self.state.vms.vms)

    @property
    def quit_requested(self) -> asyncio.Event:
        """Set by ``quit`` and ``nuke``: the node process should stop."""
        return self.state.quit_requested

    # -- entry point for the node ----------------------------------------------

    async def execute(
        self, req: CommandRequest, emit: Callable[[CommandReply], Awaitable[None]]
    ) -> None:
        """Run ``req`` and emit one reply per batch, the last with ``more=False``."""
        pending: list[Response] | None = None

        async def send(batch: list[Response]) -> None:
            nonlocal pending
            if pending is not None:
                await emit(self._reply(pending, more=True))
            pending = batch

        await self.run_line(req.line, req.namespace, send, source=req.source, record=req.record)
        await emit(self._reply(pending or [], more=False))

    def _reply(self, batch: list[Response], *, more: bool) -> CommandReply:
        try:
            text = render(batch, self.state.flags)
        except Exception as err:  # a renderer bug must not lose the responses
            logger.exception("rendering failed")
            text = f"render error: {err}"
        return CommandReply(node=self.state.name, responses=batch, rendered=text, more=more)

    # -- running lines and commands ----------------------------------------------

    def expand_alias(self, line: str) -> str:
        """Expand the first word of ``line`` if it is an alias (once, as minicli)."""
        stripped = line.lstrip()
        head, sep, tail = stripped.partition(" ")
        if "\t" in head:
            head, sep2, rest = head.partition("\t")
            tail = rest + sep + tail
            sep = sep2
        expansion = self.state.aliases.get(head)
        if expansion is None:
            return line
        return expansion + sep + tail

    async def run_line(
        self,
        line: str,
        namespace: str,
        emit: Emit,
        *,
        source: str = "",
        record: bool = True,
    ) -> None:
        """Compile and run one line; an empty ``namespace`` means the active one."""
        stripped = line.strip()
        if not stripped:
            return
        if stripped.startswith("#"):
            # minicli runs comment lines as no-ops and records them
            if record and self.state.flags.record:
                self.state.record(stripped)
            return
        try:
            cmd = self.grammar.compile(self.expand_alias(stripped))
        except LanguageError as err:
            await emit([Response(host=self.state.name, error=str(err))])
            return
        if cmd is None:
            return
        cmd.source = source
        set_record(cmd, record and self.state.flags.record)
        set_preprocess(cmd, self.state.flags.preprocess)
        await self.run_command(cmd, namespace, emit)

    async def run_command(self, cmd: Command, namespace: str, emit: Emit) -> None:
        """Run a compiled command, passing every batch it makes to ``emit``.

        A broadcast or VM-target command a user typed runs on every host of
        the namespace (:mod:`megabus.handlers.node.fanout`), merged into one batch.
        """
        ns = namespace or self.state.active
        fanout.ensure_hosts(self.state, ns)
        if cmd.subcommand is not None and not cmd.subcommand.source:
            # minicli's SetSource reaches every level: a copy that came by
            # mesh or fan-out must not fan out again through a wrapper
            cmd.subcommand.source = cmd.source
        emitted = False

        async def ctx_emit(batch: list[Response]) -> None:
            nonlocal emitted
            emitted = True
            await emit(batch)

        ctx = Context(
            state=self.state,
            namespace=ns,
            bus=self.bus,
            run_command=self.collect_command,
            run_line=self.collect_line,
            emit=ctx_emit,
            source=cmd.source,
        )
        handler: Handler = cmd.handler
        result: Result
        try:
            if cmd.preprocess:
                await preprocess_and_fetch(
                    cmd, self.state.files, self.bus, self.state.status_frequency
                )
            if fanout.spreads(handler, cmd):
                result = await fanout.spread(
                    ctx, cmd, handler.kind, lambda: self._run_local(handler, cmd, ctx)
                )
            else:
                result = await handler.func(ctx, cmd)
        except (CommandError, LanguageError) as err:
            result = ctx.error(str(err))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # one line at ERROR, the traceback at DEBUG: a NATS failover makes
            # hundreds of these, and the user gets the text anyway
            logger.error("command %r failed: %s: %s", cmd.original, type(err).__name__, err)
            logger.debug("command %r failed", cmd.original, exc_info=True)
            result = ctx.error(f"internal error: {type(err).__name__}: {err}")
        if result is not None or not emitted:
            await ctx_emit(_batch(ctx, result))
        if cmd.record:
            self.state.record(cmd.original)

    async def _run_local(self, handler: Handler, cmd: Command, ctx: Context) -> list[Response]:
        """The fan-out's local copy: source set to the namespace, batches flattened."""
        out: list[Response] = []

        async def keep(batch: list[Response]) -> None:
            out.extend(batch)

        local = dataclasses.replace(ctx, emit=keep, source=ctx.namespace)
        try:
            result = await handler.func(local, cmd)
        except (CommandError, LanguageError) as err:
            result = local.error(str(err))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            logger.exception("command %r failed", cmd.original)
            result = local.error(f"internal error: {type(err).__name__}: {err}")
        if result is not None or not out:
            out.extend(_batch(local, result))
        return out

    async def collect_command(self, cmd: Command, namespace: str) -> list[list[Response]]:
        """Run a nested command (never recorded) and return its batches."""
        set_record(cmd, False)
        batches: list[list[Response]] = []

        async def keep(batch: list[Response]) -> None:
            batches.append(batch)

        await self.run_command(cmd, namespace, keep)
        return batches

    async def collect_line(self, line: str, namespace: str) -> list[list[Response]]:
        """Run a line as if typed (recorded, as ``read`` wants) and return its batches."""
        batches: list[list[Response]] = []

        async def keep(batch: list[Response]) -> None:
            batches.append(batch)

        await self.run_line(line, namespace, keep)
        return batches
