"""One ``plumb`` pipeline: named pipes and external programs in a row (2.8's ``pipeline``).

Each element is a stage, built in order (2.8's ``startPipeline``):

* a program (its first word is in ``$PATH``) reads the previous stage's
  values on stdin and, unless it is the last stage, gives one value per line
  of its stdout to the next; its stderr goes to the debug log;
* a pipe takes the previous stage's values as a writer (unless it is the
  first stage) and, unless it is the last stage, gives the next stage what it
  reads as a reader.

So ``plumb a b`` reads ``a`` and writes ``b``. When any stage ends (a program
exits, a pipe is deleted) the whole pipeline ends: its readers and writers
close and its programs are killed; 2.8 does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from megabus.bus.errors import CommandError
from megabus.handlers.pipes import _names as names

if TYPE_CHECKING:
    from megabus.bus.tasks import TaskSet
    from megabus.handlers.pipes._ends import Reader, Writer

logger = logging.getLogger("megabus.pipes")

#: The next value of a stage, ``None`` when the stage has ended.
Source = Callable[[], Awaitable["str | None"]]
#: Longest line a program may write (2.8's scanner took 1 MiB; pipes carry up to 64 MiB).
MAX_LINE = 64 * 1024 * 1024


class Ends(Protocol):
    """What a pipeline needs of the plumber that runs it."""

    tasks: TaskSet

    def reader(self, name: str) -> Reader: ...

    def writer(self, name: str) -> Writer: ...


class Pipeline:
    """A running pipeline; :meth:`cancel` ends it."""

    def __init__(
        self,
        plumber: Ends,
        name: str,
        production: list[str],
        on_done: Callable[[Pipeline], None],
    ) -> None:
        self.plumber = plumber
        self.name = name
        self.production = production
        self.done = False
        self._on_done = on_done
        self._readers: list[Reader] = []
        self._writers: list[Writer] = []
        self._procs: list[asyncio.subprocess.Process] = []
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        """Build every stage; the readers and writers exist on return.

        Raises:
            OSError: a program could not start (the caller cancels the pipeline).
        """
        source: Source | None = None
        last = len(self.production) - 1
        for i, element in enumerate(self.production):
            argv = names.program(element)
            if argv is not None:
                source = await self._program(argv, source, output=i != last)
            else:
                reader = self.plumber.reader(element) if i != last else None
                writer = self.plumber.writer(element) if i != 0 else None
                source = self._pipe(reader, writer, source)
            if self.done:  # a stage ended while later ones were built
                return

    def _spawn(self, coro: Any, what: str) -> None:
        self._tasks.append(self.plumber.tasks.spawn(coro, f"plumb:{what}"))

    def _pipe(
        self, reader: Reader | None, writer: Writer | None, source: Source | None
    ) -> Source | None:
        if writer is not None:
            self._writers.append(writer)
            if source is not None:
                self._spawn(self._forward(source, writer), writer.pipe)
        if reader is None:
            return None
        self._readers.append(reader)
        reader.on_close.append(lambda _r: self.cancel())
        return reader.get

    async def _forward(self, source: Source, writer: Writer) -> None:
        while (value := await source()) is not None:
            try:
                await writer.write(value)
            except CommandError as err:
                logger.error("plumb %s: %s", self.name, err)
        self.cancel()

    async def _program(
        self, argv: list[str], source: Source | None, *, output: bool
    ) -> Source | None:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if source is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if output else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            limit=MAX_LINE,
        )
        self._procs.append(proc)
        if self.done:  # cancelled while it started: it must not outlive the pipeline
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        shown = " ".join(argv)
        if source is not None:
            self._spawn(self._feed(proc, source, shown), f"stdin:{shown}")
        self._spawn(self._stderr(proc, shown), f"stderr:{shown}")
        # not in _tasks: a cancelled pipeline still reaps its killed programs
        self.plumber.tasks.spawn(self._wait(proc, shown, output), f"wait:{shown}")
        if not output:
            return None

        async def line() -> str | None:
            assert proc.stdout is not None
            try:
                data = await proc.stdout.readline()
            except ValueError:
                logger.error("plumb %s: `%s` wrote a line over %d bytes",
                             self.name, shown, MAX_LINE)  # fmt: skip
                return None
            if not data:
                return None
            text = data.decode(errors="replace")
            return text if text.endswith("\n") else text + "\n"

        return line

    async def _feed(self, proc: asyncio.subprocess.Process, source: Source, shown: str) -> None:
        stdin = proc.stdin
        assert stdin is not None
        while (value := await source()) is not None:
            try:
                stdin.write(value.encode())
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError) as err:
                logger.info("plumb %s: `%s` stopped reading: %s", self.name, shown, err)
                break
        self.cancel()

    async def _stderr(self, proc: asyncio.subprocess.Process, shown: str) -> None:
        assert proc.stderr is not None
        while True:
            try:
                line = await proc.stderr.readline()
            except ValueError:
                continue
            if not line:
                return
            text = line.decode(errors="replace").strip()
            if text:
                logger.debug("plumb %s: %s: %s", self.name, shown, text)

    async def _wait(self, proc: asyncio.subprocess.Process, shown: str, output: bool) -> None:
        status = await proc.wait()
        if self.done:
            return
        logger.info("plumb %s: `%s` exited (status %d)", self.name, shown, status)
        # a program with output ends the pipeline when its last line went on (_forward)
        if not output:
            self.cancel()

    def cancel(self) -> None:
        """End the pipeline (idempotent): close its readers and writers, kill its programs."""
        if self.done:
            return
        self.done = True
        logger.debug("plumb: closing pipeline %s", self.name)
        for reader in self._readers:
            reader.close()
        for writer in self._writers:
            writer.close()
        for proc in self._procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._on_done(self)


__all__ = ["MAX_LINE", "Ends", "Pipeline", "Source"]
