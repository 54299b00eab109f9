"""cc stdio on the node: an agent's pipe frames bridged to the node's pipes (2.8's ``pipeHandler``).

``cc exec stdin=in stdout=out <cmd>`` runs in the guest; the agent opens a
reader of ``in`` and a writer of ``out`` here, with
:class:`~megabus.bus.cc_messages.Pipe` frames. For each connection this
bridge keeps those readers and writers on the node's pipes (one of each per
pipe, as 2.8 does), forwards what a reader gets to the agent, and writes what
the agent sends. A connection that ends closes them all.

The pipes are another engine; cc sees them only through :class:`PipeHub`,
which the node hands over (``CcNode.pipes``), so neither imports the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from megabus.bus import cc_messages as wire
from megabus.bus.errors import CommandError

if TYPE_CHECKING:
    from megabus.bus.tasks import TaskSet
    from megabus.handlers.cc._client import ClientConn

logger = logging.getLogger(__name__)


class PipeReader(Protocol):
    """A reader of a pipe: values in order, ``None`` once it is closed."""

    async def get(self) -> str | None: ...

    def close(self) -> None: ...


class PipeWriter(Protocol):
    """A writer of a pipe."""

    async def write(self, value: str) -> None: ...

    def close(self) -> None: ...


class PipeHub(Protocol):
    """What cc needs of the node's pipes."""

    def qualify(self, namespace: str, name: str) -> str:
        """The full name of pipe ``name`` in ``namespace`` (raises ``CommandError`` when bad)."""
        ...

    def reader(self, name: str) -> PipeReader: ...

    def writer(self, name: str) -> PipeWriter: ...


@dataclass
class _Links:
    """One connection's readers and writers, by full pipe name."""

    readers: dict[str, PipeReader] = field(default_factory=dict)
    writers: dict[str, PipeWriter] = field(default_factory=dict)


class PipeBridge:
    """The pipe frames of one namespace's agents."""

    def __init__(self, namespace: str, hub: Callable[[], PipeHub | None], tasks: TaskSet) -> None:
        self.namespace = namespace
        self._hub = hub
        self._tasks = tasks
        self._links: dict[ClientConn, _Links] = {}

    @property
    def available(self) -> bool:
        """Whether this node has pipes (it then says :data:`~wire.FEATURE_PIPES` to agents)."""
        return self._hub() is not None

    def check_agent(self, conn: ClientConn, commands: list[wire.Command]) -> None:
        """Warn when an agent that cannot carry pipes gets a command that names some."""
        if wire.FEATURE_PIPES in conn.features:
            return
        for cmd in commands:
            named = [f"{k}={v}" for k, v in (("stdin", cmd.stdin), ("stdout", cmd.stdout),
                                               ("stderr", cmd.stderr)) if v]  # fmt: skip
            if named:
                logger.error(
                    "cc %s: agent %s is too old for pipes: command %d runs without %s",
                    self.namespace, conn.uuid, cmd.id, " ".join(named),
                )  # fmt: skip

    async def on_frame(self, conn: ClientConn, frame: wire.Pipe) -> None:
        """Open, close or write what the agent asks for."""
        hub = self._hub()
        if hub is None:
            await conn.send(wire.Error(error="refused: this node has no pipes"))
            return
        try:
            full = hub.qualify(self.namespace, frame.pipe)
        except CommandError as err:
            await conn.send(wire.Error(error=f"refused: {err}"))
            return
        links = self._links.setdefault(conn, _Links())
        if frame.op == "new_reader":
            if full not in links.readers:
                reader = links.readers[full] = hub.reader(full)
                self._tasks.spawn(self._pump(conn, links, frame.pipe, full, reader), f"pipe:{full}")
        elif frame.op == "close_reader":
            old = links.readers.pop(full, None)
            if old is not None:
                old.close()
        elif frame.op == "new_writer":
            if full not in links.writers:
                links.writers[full] = hub.writer(full)
        elif frame.op == "close_writer":
            writer = links.writers.pop(full, None)
            if writer is not None:
                writer.close()
        elif frame.op == "data":
            writer = links.writers.get(full)
            if writer is None:
                logger.error("cc %s: agent %s writes to %s, which it did not open",
                             self.namespace, conn.uuid, full)  # fmt: skip
                return
            try:
                await writer.write(frame.data)
            except CommandError as err:
                logger.error("cc %s: agent %s: %s", self.namespace, conn.uuid, err)
        else:
            await conn.send(wire.Error(error=f"refused: unknown pipe op {frame.op!r}"))

    async def _pump(
        self, conn: ClientConn, links: _Links, name: str, full: str, reader: PipeReader
    ) -> None:
        """Hand the agent what ``reader`` gets; tell it when the pipe closed the reader."""
        try:
            while (value := await reader.get()) is not None:
                for i in range(0, len(value), wire.PIPE_PIECE):
                    piece = value[i : i + wire.PIPE_PIECE]
                    await conn.send(wire.Pipe(pipe=name, op="data", data=piece))
            if links.readers.get(full) is reader:
                # closed by the pipe's side (``clear pipe``): the programs' stdin ends
                del links.readers[full]
                await conn.send(wire.Pipe(pipe=name, op="close_reader"))
        except (OSError, TimeoutError, RuntimeError) as err:
            logger.info("cc %s: pipe %s to agent %s: %s", self.namespace, full, conn.uuid, err)
            reader.close()

    def drop_client(self, conn: ClientConn) -> None:
        """The agent is gone: close its readers and writers."""
        links = self._links.pop(conn, None)
        if links is None:
            return
        for reader in links.readers.values():
            reader.close()
        for writer in links.writers.values():
            writer.close()

    def close(self) -> None:
        """Close every agent's readers and writers."""
        for conn in list(self._links):
            self.drop_client(conn)


__all__ = ["PipeBridge", "PipeHub", "PipeReader", "PipeWriter"]
