"""``vnc play|stop|pause|continue|step|getstep|inject``: one namespace's kb playbacks.

2.8's player: a playback reads its file line by line, waits each line's
delay, and writes the event to the VM over VNC. Pause, continue and step act
on the wait; ``LoadFile`` plays another file (relative to the current one,
at most 100 deep); ``WaitForIt`` asks for the screen every second until the
template shows (``ClickItEvent`` then clicks its centre) or the timeout
passes, which ends the playback. A bad line is logged and skipped, as in 2.8.
Errors and ``vnc`` rows are 2.8's texts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass

from megabus.bus.errors import CommandError
from megabus.bus.tasks import TaskSet
from megabus.handlers.language.gotime import format_duration
from megabus.handlers.vnc import _events, _match
from megabus.handlers.vnc._events import LoadFile, WaitForIt
from megabus.handlers.vnc.rfb import Client, KeyEvent, PointerEvent, RfbError

logger = logging.getLogger(__name__)

#: 2.8 refuses LoadFile nesting past this depth.
MAX_DEPTH = 100
#: Seconds between two screen reads of WaitForIt (2.8's pause).
WAIT_FOR_IT_PAUSE = 1.0


@dataclass(frozen=True)
class _Signal:
    kind: str  # "pause", "play", "step", "load", "wait"
    data: LoadFile | WaitForIt | None = None


class Playback:
    """One VM's running playback."""

    def __init__(self, name: str, client: Client) -> None:
        self.name = name
        self.client = client
        self.paused = False
        self.closed = False
        self.step_text = ""
        self.remaining_ns = 0
        self.file = ""
        self.depth = 0
        self.signals: asyncio.Queue[_Signal] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def info(self) -> list[str] | None:
        if self.closed:
            return None
        when = "PAUSED" if self.paused else f"{format_duration(self.remaining_ns)} remaining"
        return [self.name, "playback kb", when, self.file or "N/A"]

    async def run(self, path: str) -> None:
        try:
            await self._play_file(None, path)
        except (OSError, RfbError, ConnectionError, ValueError, TimeoutError) as err:
            logger.error("playback failed: %s", err)
        else:
            await self.client.sync()
        finally:
            self.closed = True
            await self.client.close()

    async def _play_file(self, parent: str | None, path: str) -> None:
        if parent is not None and not os.path.isabs(path):
            path = os.path.join(os.path.dirname(parent), path)
        lines = await asyncio.to_thread(_read_lines, path)
        self.remaining_ns += await asyncio.to_thread(_events.total_duration, path)
        self.depth += 1
        if self.depth > 10:
            logger.warning("recursive LoadFiles detected in vnc playback")
        if self.depth > MAX_DEPTH:
            raise ValueError("too many recursive LoadFiles")
        old, self.file = self.file, path
        try:
            for line in lines:
                parts = _events.split_line(line)
                if parts is None:
                    logger.debug("malformed vnc command: %s", line)
                    continue
                if parts[0].startswith("#"):
                    logger.info("playback: %s", line)
                    continue
                try:
                    event = await asyncio.to_thread(_events.parse_event, parts[1])
                except (ValueError, OSError):
                    logger.error("invalid vnc message: `%s`", parts[1])
                    continue
                self.step_text = line
                try:
                    delay = _events.parse_delay(parts[0])
                except ValueError as err:
                    logger.error("%s", err)
                    continue
                await self._wait(delay, path)
                await self._do(event, path)
        finally:
            self.depth -= 1
            self.file = old

    async def _wait(self, delay_ns: int, current: str) -> None:
        loop = asyncio.get_running_loop()
        left = max(delay_ns, 0) / 1e9
        while left > 0:
            start = loop.time()
            try:
                sig = await asyncio.wait_for(self.signals.get(), left)
            except TimeoutError:
                self.remaining_ns -= round(left * 1e9)
                return
            waited = loop.time() - start
            left -= waited
            self.remaining_ns -= round(waited * 1e9)
            if sig.kind == "pause":
                while (await self.signals.get()).kind != "play":
                    logger.error("playback %s: unexpected signal while paused", self.name)
            elif sig.kind == "step":
                self.remaining_ns -= round(max(left, 0) * 1e9)
                return
            elif sig.data is not None:
                await self._do(sig.data, current)

    async def _do(
        self, event: KeyEvent | PointerEvent | LoadFile | WaitForIt, current: str
    ) -> None:
        if isinstance(event, LoadFile):
            await self._play_file(current, event.file)
        elif isinstance(event, WaitForIt):
            click = await self._wait_for_it(event)
            if event.click:
                await self.client.send(click)
        else:
            await self.client.send(event)

    async def _wait_for_it(self, event: WaitForIt) -> PointerEvent:
        logger.info(
            "playback %s, wait for %s, timeout = %s",
            self.name, event.source, format_duration(event.timeout_ns),
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + event.timeout_ns / 1e9
        while (left := deadline - loop.time()) > 0:
            try:
                screen = await self.client.screenshot(left)
            except TimeoutError:
                break
            found = await asyncio.to_thread(_match.find, screen, event.template)
            if found is not None:
                return PointerEvent(1, found[0], found[1])
            await asyncio.sleep(min(WAIT_FOR_IT_PAUSE, max(deadline - loop.time(), 0)))
        raise TimeoutError(f"timeout waiting for {event.source}")


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read().splitlines()


class Player:
    """The kb playbacks of one namespace on this node, by VM name."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.playing: dict[str, Playback] = {}
        self._tasks = TaskSet(f"vnc-play:{namespace}")

    def _reap(self) -> None:
        for name, pb in list(self.playing.items()):
            if pb.closed:
                del self.playing[name]

    def _get(self, name: str) -> Playback:
        self._reap()
        pb = self.playing.get(name)
        if pb is None:
            raise CommandError(f"kb playback not found for {name}")
        return pb

    async def play(self, name: str, socket_path: str, path: str) -> None:
        """Start playing ``path`` to VM ``name``."""
        self._reap()
        if name in self.playing:
            raise CommandError(f"kb playback {name} already playing")
        try:
            await asyncio.to_thread(_events.check_file, path)
        except OSError as err:
            raise CommandError(f"open {path}: {(err.strerror or str(err)).lower()}") from None
        except ValueError as err:
            raise CommandError(str(err)) from None
        try:
            client = await Client.open_unix(socket_path)
        except (OSError, RfbError, TimeoutError) as err:
            raise CommandError(f"dial vnc: {err}") from None
        if name in self.playing:
            await client.close()
            raise CommandError(f"kb playback {name} already playing")
        pb = Playback(name, client)
        pb.file = path  # shown by ``vnc`` before the task reads the file
        self.playing[name] = pb
        pb.task = self._tasks.spawn(pb.run(path), f"play:{name}")

    async def stop(self, name: str) -> None:
        pb = self._get(name)
        pb.closed = True
        if pb.task is not None:
            pb.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pb.task
        self.playing.pop(name, None)

    def pause(self, name: str) -> None:
        pb = self._get(name)
        if pb.paused:
            raise CommandError("playback not pauseable")
        pb.signals.put_nowait(_Signal("pause"))
        pb.paused = True

    def resume(self, name: str) -> None:
        pb = self._get(name)
        if not pb.paused:
            raise CommandError("playback not playable")
        pb.signals.put_nowait(_Signal("play"))
        pb.paused = False

    def step(self, name: str) -> None:
        pb = self._get(name)
        if pb.paused:
            raise CommandError("playback not stepable")
        pb.signals.put_nowait(_Signal("step"))

    def get_step(self, name: str) -> str:
        return self._get(name).step_text

    async def inject(self, name: str, socket_path: str, text: str) -> None:
        """``vnc inject``: into the running playback, or straight to the VM."""
        try:
            event = await asyncio.to_thread(_events.parse_event, text)
        except ValueError as err:
            raise CommandError(str(err)) from None
        except OSError as err:
            raise CommandError(f"open {err.filename}: {(err.strerror or '').lower()}") from None
        self._reap()
        pb = self.playing.get(name)
        if pb is not None:
            if isinstance(event, KeyEvent | PointerEvent):
                await pb.client.send(event)
            else:
                kind = "load" if isinstance(event, LoadFile) else "wait"
                pb.signals.put_nowait(_Signal(kind, event))
            return
        if isinstance(event, LoadFile):
            await self.play(name, socket_path, event.file)
            return
        if isinstance(event, WaitForIt):
            raise CommandError(
                "unhandled inject event for non-running playback: *vnc.WaitForItEvent"
            )
        try:
            client = await Client.open_unix(socket_path)
        except (OSError, RfbError, TimeoutError) as err:
            raise CommandError(f"dial vnc: {err}") from None
        try:
            await client.send(event)
            await client.sync()
        finally:
            await client.close()

    def info(self) -> list[list[str]]:
        self._reap()
        return [row for pb in self.playing.values() if (row := pb.info()) is not None]

    async def clear(self) -> None:
        for name in list(self.playing):
            with contextlib.suppress(CommandError):
                await self.stop(name)
        await self._tasks.aclose()
