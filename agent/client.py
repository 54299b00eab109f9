"""The agent's connection to its node: dial, handshake, heartbeats, commands, redial.

One session per connection: magic bytes both ways, a :class:`Hello` with the
client info, the node's :class:`Welcome`; then the agent sends its info every
5 s and reads with a 13 s deadline: a node silent that long (a paused or
restored VM, a dead node) is dropped and redialled. Commands run one at a
time in ID order on a worker that outlives sessions, so a response made while
disconnected goes out on the next connection. A node that says the agent is
too old is not dialled again: the agent exits.
"""

# Python 3.9 in guests: asyncio.TimeoutError is not TimeoutError there.
# ruff: noqa: UP041

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field

from megabus.agent import sysinfo
from megabus.agent.exec import Processes, conn_test
from megabus.agent.files import Downloads, upload
from megabus.agent.fs import FsServer
from megabus.agent.pipes import PipeLinks, run_piped
from megabus.agent.transport import dial
from megabus.agent.tunnel import Tunnels
from megabus.agent.version import VERSION
from megabus.bus import cc_messages as wire

logger = logging.getLogger(__name__)

#: Seconds to wait for the node's magic bytes and welcome.
HANDSHAKE_TIMEOUT = 5.0
#: Seconds allowed for one frame write.
WRITE_TIMEOUT = 30.0
CONTROL_SOCKET = "miniccc"
PID_FILE = "miniccc.pid"


class TooOldError(Exception):
    """The node no longer speaks this agent's protocol."""


@dataclass
class Options:
    """How the agent reaches its node and where it keeps its files."""

    family: str = "tcp"
    parent: str = ""
    port: int = wire.DEFAULT_PORT
    serial: str = ""
    path: str = "/tmp/miniccc"
    uuid: str = ""
    #: Seconds between dials (2.8: 15 s between its 480 tries; any failure here retries).
    retry: float = 5.0
    heartbeat: float = wire.HEARTBEAT_RATE
    silence: float = wire.SILENCE_TIMEOUT
    tags: dict[str, str] = field(default_factory=dict)
    #: What ``cc mount`` serves of this guest (2.8 served ``/``).
    fs_root: str = "/"

    @property
    def files_dir(self) -> str:
        return os.path.join(self.path, "files")


class Agent:
    """One agent process."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.uuid = sysinfo.uuid_from(opts.uuid, opts.path)
        self.tags: dict[str, str] = dict(opts.tags)
        self.processes = Processes(opts.files_dir)
        self.downloads = Downloads(opts.files_dir)
        self.tunnels = Tunnels()
        self.pipes = PipeLinks(self.send)
        self.fs = FsServer(opts.fs_root)
        self.epoch = ""
        self.last_command_id = 0
        self._queue: asyncio.Queue[wire.Command] = asyncio.Queue()
        self._outbox: list[wire.Frame] = []
        #: Responses sent on this connection that the node has not acknowledged yet
        #: (only when it does acknowledge: ``wire.FEATURE_ACKS``).
        self._unacked: dict[int, wire.Response] = {}
        self._acks = False
        self._flushing = asyncio.Lock()
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._info_changed = asyncio.Event()
        #: Whether the current connection got as far as the node's welcome.
        self._welcomed = False

    # -- who we are --------------------------------------------------------------------------

    def info(self) -> wire.ClientInfo:
        ips, macs = sysinfo.addresses()
        return wire.ClientInfo(
            uuid=self.uuid,
            hostname=sysinfo.hostname(),
            arch=sysinfo.arch(),
            os=sysinfo.os_name(),
            version=VERSION,
            ips=ips,
            macs=macs,
            tags=dict(self.tags),
            processes=self.processes.listing(),
        )

    def set_tag(self, key: str, value: str) -> None:
        """A tag for the VM, sent to the node at once."""
        self.tags[key] = value
        self._info_changed.set()

    # -- sending -------------------------------------------------------------------------------

    async def send(self, frame: wire.Frame) -> None:
        """Write one frame on the current connection (``OSError`` when there is none)."""
        data = wire.encode(frame)
        async with self._lock:
            writer = self._writer
            if writer is None:
                raise OSError("not connected")
            writer.write(data)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)

    async def _flush_outbox(self) -> None:
        # one flusher at a time: two would send the head twice and then drop the next
        async with self._flushing:
            while self._outbox:
                frame = self._outbox[0]
                await self.send(frame)
                self._outbox.pop(0)
                if self._acks and isinstance(frame, wire.Response):
                    self._unacked[frame.id] = frame

    async def _respond(self, frame: wire.Response) -> None:
        self._outbox.append(frame)
        try:
            await self._flush_outbox()
        except (OSError, asyncio.TimeoutError) as err:
            logger.info("response %d queued until the node is back: %s", frame.id, err)

    # -- the main loop -------------------------------------------------------------------------

    async def run(self) -> int:
        """Dial, serve, redial, until cancelled or told we are too old; returns an exit status."""
        os.makedirs(self.opts.files_dir, exist_ok=True)
        if not self.uuid:
            logger.error(
                "no UUID: no DMI product UUID here; give --uuid or write %s/uuid", self.opts.path
            )
            return 1
        worker = asyncio.ensure_future(self._worker())
        control = await self._start_control()
        try:
            while True:
                try:
                    reader, writer = await dial(
                        self.opts.family, self.opts.parent, self.opts.port, self.opts.serial
                    )
                except (OSError, asyncio.TimeoutError) as err:
                    logger.debug("dial failed: %s", err)
                    await asyncio.sleep(self.opts.retry)
                    continue
                self._welcomed = False
                try:
                    await self._session(reader, writer)
                except TooOldError as err:
                    logger.error("%s", err)
                    return 3
                except (
                    OSError,
                    asyncio.TimeoutError,
                    asyncio.IncompleteReadError,
                    wire.FrameError,
                ) as err:
                    # a dial that never reached a node (a serial port with nobody
                    # on the host side) repeats every second: not worth a line each
                    logger.log(
                        logging.INFO if self._welcomed else logging.DEBUG,
                        "connection lost: %s",
                        str(err) or type(err).__name__,
                    )
                await asyncio.sleep(min(self.opts.retry, 1.0))
        finally:
            worker.cancel()
            await asyncio.wait([worker], timeout=5.0)
            if control is not None:
                control.close()
            await self.tunnels.close()
            await self.fs.close()
            await self.processes.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(wire.MAGIC)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
            await asyncio.wait_for(wire.expect_magic(reader), HANDSHAKE_TIMEOUT)
            hello = wire.Hello(
                client=self.info(),
                last_command_id=self.last_command_id,
                epoch=self.epoch,
                features=[wire.FEATURE_PIPES, wire.FEATURE_ACKS],
            )
            writer.write(wire.encode(hello))
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
            first = await asyncio.wait_for(wire.read_frame(reader), HANDSHAKE_TIMEOUT)
            if isinstance(first, wire.TooOld):
                raise TooOldError(f"node refused this agent: {first.error}")
            if not isinstance(first, wire.Welcome):
                text = first.error if isinstance(first, wire.Error) else type(first).__name__
                raise OSError(f"handshake refused: {text}")
            logger.info("connected to node %s", first.node or "?")
            self._welcomed = True
            self._acks = wire.FEATURE_ACKS in first.features
            # what the last node may have lost goes out again, first and in order
            if self._unacked:
                resend = sorted(self._unacked.values(), key=lambda r: r.id)
                self._outbox[:0] = [r for r in resend if r not in self._outbox]
                self._unacked.clear()
            self._writer = writer
            self.tunnels.send = self.send
            beat = asyncio.ensure_future(self._heartbeat())
            try:
                await self.pipes.welcome(first)
                await self._flush_outbox()
                await self._read_loop(reader)
            finally:
                beat.cancel()
                await asyncio.wait([beat], timeout=5.0)
        finally:
            self._writer = None
            self.tunnels.drop_streams()
            writer.close()

    async def _heartbeat(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._info_changed.wait(), self.opts.heartbeat)
            except asyncio.TimeoutError:
                pass
            self._info_changed.clear()
            try:
                await self.send(wire.Info(client=self.info()))
            except (OSError, asyncio.TimeoutError):
                return

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                frame = await asyncio.wait_for(wire.read_frame(reader), self.opts.silence)
            except asyncio.TimeoutError:
                raise OSError(f"no word from the node in {self.opts.silence:g}s") from None
            except wire.FrameTooLargeError:
                raise
            except wire.FrameError as err:
                logger.warning("%s", err)
                continue
            await self._handle(frame)

    async def _handle(self, frame: wire.AnyFrame) -> None:
        if isinstance(frame, wire.Commands):
            if frame.epoch != self.epoch:
                self.epoch = frame.epoch
                self.last_command_id = 0
            for cmd in sorted(frame.commands, key=lambda c: c.id):
                if cmd.id > self.last_command_id:
                    self.last_command_id = cmd.id
                    self._queue.put_nowait(cmd)
        elif isinstance(frame, wire.ResponseAck):
            self._unacked.pop(frame.id, None)
        elif isinstance(frame, wire.FileData):
            self.downloads.on_chunk(frame)
        elif isinstance(frame, wire.Tunnel):
            await self.tunnels.on_frame(frame)
        elif isinstance(frame, wire.Pipe):
            self.pipes.on_frame(frame)
        elif isinstance(frame, wire.ListenTunnel):
            await self.tunnels.listen(frame)
        elif isinstance(frame, wire.FsRequest):
            self.fs.on_request(frame, self.send)
        elif isinstance(frame, wire.Error):
            logger.warning("node says: %s", frame.error)
        elif isinstance(frame, wire.Heartbeat):
            pass
        else:
            logger.warning("unexpected %s frame", type(frame).__name__)

    # -- running commands ------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            cmd = await self._queue.get()
            try:
                await self._run(cmd)
            except asyncio.CancelledError:
                raise
            except Exception:  # one command must never stop the agent
                logger.exception("command %d failed", cmd.id)

    async def _run(self, cmd: wire.Command) -> None:
        """2.8's order: files in, kills, log level, command, test-conn, files out, response."""
        stdout: list[str] = []
        stderr: list[str] = []
        code = 0
        for name in cmd.files_send:
            err = await self.downloads.fetch(self.send, cmd.id, name)
            if err:
                stderr.append(err)
        if cmd.pid:
            self.processes.kill(cmd.pid)
        if cmd.kill_all:
            self.processes.kill_all(cmd.kill_all)
        if cmd.level:
            set_level(cmd.level)
        record = False
        if cmd.command:
            if cmd.stdin or cmd.stdout or cmd.stderr:
                out, err, code = await run_piped(self.processes, self.pipes, cmd)
                stdout.append(out)
                stderr.append(err)
                record = not cmd.background
                self._info_changed.set()
            elif cmd.background:
                err, _pid = await self.processes.start(cmd.command)
                if err:
                    stderr.append(err)
                self._info_changed.set()
            else:
                out, err, code = await self.processes.run(cmd.command)
                stdout.append(out)
                stderr.append(err)
                record = True
        if cmd.conn_test is not None:
            stdout.append(await conn_test(cmd.conn_test) + "\n")
        for path in cmd.files_recv:
            try:
                err = await upload(self.send, cmd.id, path)
            except (OSError, asyncio.TimeoutError) as exc:
                err = str(exc)
            if err:
                stderr.append(f"{path}: {err}")
        await self._respond(
            wire.Response(
                id=cmd.id,
                stdout="".join(stdout),
                stderr="\n".join(s for s in stderr if s),
                exit_code=code,
                record_exit_code=record,
            )
        )

    # -- the local control socket (``megabus agent --tag k v``) ---------------------------

    async def _start_control(self) -> asyncio.AbstractServer | None:
        if not hasattr(asyncio, "start_unix_server"):
            return None
        path = os.path.join(self.opts.path, CONTROL_SOCKET)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                line = await asyncio.wait_for(reader.readline(), 5.0)
                request = json.loads(line)
                key, value = request["tag"]
                self.set_tag(str(key), str(value))
                writer.write(b"ok\n")
            except (ValueError, KeyError, TypeError, asyncio.TimeoutError) as err:
                writer.write(f"error: {err}\n".encode())
            await writer.drain()
            writer.close()

        return await asyncio.start_unix_server(serve, path)


async def send_tag(path: str, key: str, value: str) -> str:
    """``megabus agent --tag k v``: ask the running agent to set a tag; its answer."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_unix_connection(os.path.join(path, CONTROL_SOCKET)), 5.0
    )
    writer.write(json.dumps({"tag": [key, value]}).encode() + b"\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.readline(), 5.0)
    writer.close()
    return answer.decode().strip()


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}


def set_level(name: str) -> None:
    """``cc log level``: the agent's log level."""
    logging.getLogger().setLevel(_LEVELS.get(name, logging.INFO))
    logger.info("log level set to %s", name)


def check_pid_file(path: str) -> str | None:
    """2.8 refuses to start twice: an error text when another agent runs here, else write ours."""
    pid_path = os.path.join(path, PID_FILE)
    try:
        with open(pid_path) as fh:
            other = int(fh.read().strip() or 0)
    except (OSError, ValueError):
        other = 0
    if other and other != os.getpid() and _alive(other):
        return f"another agent runs here (pid {other}, {pid_path})"
    os.makedirs(path, exist_ok=True)
    with open(pid_path, "w") as fh:
        fh.write(str(os.getpid()))
    return None


def _alive(pid: int) -> bool:
    if sys.platform.startswith("win"):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
