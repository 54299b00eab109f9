"""One namespace's cc server on this node (2.8's ``ron.Server``).

It listens (a unix socket per container VM, TCP for ``cc listen``), dials
(a KVM VM's virtio-serial socket), keeps the table of connected agents, hands
each agent the commands meant for it the moment they exist, files responses
on disk and publishes each one on ``<root>.cc.<namespace>.resp.<id>.<uuid>``
as it arrives, and serves ``cc send`` and ``cc recv`` files.

A bad frame from an agent gets an :class:`~megabus.bus.cc_messages.Error`
back and is dropped; a frame over the size limit or a stream that ends
mid-frame costs that agent its connection (it redials), nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
import nats.errors

from megabus.bus import cc_messages as wire
from megabus.bus.stored import Filter
from megabus.bus.tasks import TaskSet
from megabus.handlers.cc import filter as cc_filter
from megabus.handlers.cc import responses
from megabus.handlers.cc._client import CLIENT_EXPIRED, ClientConn, HandshakeError, handshake
from megabus.handlers.cc._pipes import PipeBridge
from megabus.handlers.cc._store import CommandState, CommandStore
from megabus.handlers.cc._tunnels import TunnelMux

if TYPE_CHECKING:
    from megabus.bus.connection import Bus
    from megabus.handlers.cc import CcNode
    from megabus.handlers.model.vm import VM

logger = logging.getLogger(__name__)

#: The text of one ``vm info`` column of a VM ("" when it has none).
Describe = Callable[["VM", str], str]
#: Publishes a cc client event: namespace, client UUID, detail (``action`` and more).
EventSink = Callable[[str, str, dict[str, str]], None]

#: Seconds an accepted connection has to send the magic bytes.
MAGIC_TIMEOUT = 60.0
#: Seconds between two dials of a VM's serial socket (2.8's CLIENT_RECONNECT_RATE).
RECONNECT_RATE = 5.0


class CcServer:
    """The cc server of one namespace."""

    def __init__(self, node: CcNode, namespace: str) -> None:
        self.node = node
        self.bus: Bus | None = node.bus
        self.namespace = namespace
        self.store = CommandStore(namespace, node.bus, self._on_command)
        self.clients: dict[str, ClientConn] = {}
        #: ``cc filter`` and ``cc prefix`` (node-local, as in 2.8).
        self.filter: Filter | None = None
        self.prefix = ""
        self._listeners: dict[str, asyncio.Server] = {}
        #: Per VM UUID: its socket listener key or its serial dial task.
        self._vm_listeners: dict[str, str] = {}
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self.tasks = TaskSet(f"cc:{namespace}")
        self.tunnels = TunnelMux(namespace)
        self.pipes = PipeBridge(namespace, lambda: node.pipes, self.tasks)

    @property
    def files_dir(self) -> str:
        return self.node.files_dir

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        """Stop listening and dialing, hang up on every agent, stop following the stream."""
        for server in self._listeners.values():
            server.close()
        self._listeners.clear()
        self._vm_listeners.clear()
        for task in self._dialers.values():
            task.cancel()
        dialers = list(self._dialers.values())
        self._dialers.clear()
        if dialers:
            await asyncio.wait(dialers, timeout=5.0)
        await self.tunnels.close()
        self.pipes.close()
        for conn in list(self.clients.values()):
            await conn.close()
        await self.tasks.aclose()
        await self.store.close()

    # -- transports --------------------------------------------------------------------------

    async def listen_tcp(self, port: int, host: str = "") -> int:
        """``cc listen <port>``; returns the port (useful with 0)."""
        key = f"tcp:{host}:{port}"
        if key in self._listeners:
            raise OSError(f"already listening on :{port}")

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername")
            await self._serve(reader, writer, f"tcp:{peer}", None, MAGIC_TIMEOUT)

        server = await asyncio.start_server(accept, host or None, port, limit=2**16)
        self._listeners[key] = server
        sockets = server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def listen_unix(self, path: str, vm: VM | None) -> None:
        """Listen on a unix socket (a container's ``<fs>/cc``); replaces an older one."""
        key = f"unix:{path}"
        old = self._listeners.pop(key, None)
        if old is not None:
            old.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(reader, writer, key, vm, MAGIC_TIMEOUT)

        server = await asyncio.start_unix_server(accept, path, limit=2**16)
        self._listeners[key] = server
        if vm is not None:
            self._vm_listeners[vm.uuid] = key

    def dial_serial(self, path: str, vm: VM) -> None:
        """Keep dialing a KVM VM's virtio-serial socket until detached or told too old."""
        if vm.uuid in self._dialers and not self._dialers[vm.uuid].done():
            return
        self._dialers[vm.uuid] = self.tasks.spawn(self._dial_loop(path, vm), f"serial:{vm.name}")

    async def _dial_loop(self, path: str, vm: VM) -> None:
        """Dial the port's socket and serve agent sessions on it, one after the other.

        The socket stays connected between sessions: when QEMU's side of a
        virtio-serial port is disconnected, a guest write throttles the port
        and QEMU 7.2 never unthrottles it (it has no socket to watch), so the
        agent would be mute for good. A session that ends (the agent went
        silent: a paused VM) leaves the stream open and the node waits for
        the agent's next magic bytes, skipping whatever comes before them.
        """
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(path, limit=2**16), RECONNECT_RATE
                )
            except (OSError, TimeoutError) as err:
                logger.debug("cc: dial serial %s: %s", path, err)
                await asyncio.sleep(RECONNECT_RATE)
                continue
            try:
                while not reader.at_eof() and not writer.is_closing():
                    too_old = await self._serve(
                        reader, writer, f"serial:{path}", vm, None, keep_stream=True
                    )
                    if too_old:
                        logger.error("cc: agent of vm %s is too old; not redialling", vm.name)
                        return
            finally:
                await _hang_up(writer)
            await asyncio.sleep(RECONNECT_RATE)

    async def detach(self, vm: VM) -> None:
        """Forget a VM's socket or serial port and drop its agent."""
        key = self._vm_listeners.pop(vm.uuid, None)
        if key is not None:
            server = self._listeners.pop(key, None)
            if server is not None:
                server.close()
        task = self._dialers.pop(vm.uuid, None)
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=5.0)
        conn = self.clients.get(vm.uuid)
        if conn is not None:
            await conn.close()

    # -- one connection --------------------------------------------------------------------

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        via: str,
        vm: VM | None,
        magic_timeout: float | None,
        *,
        keep_stream: bool = False,
    ) -> bool:
        """Run one agent session to its end; returns whether the agent was too old.

        The connection is closed at the end, except with ``keep_stream`` (a
        serial port's socket, which its dialer owns).
        """
        try:
            hello = await handshake(reader, writer, magic_timeout=magic_timeout)
        except HandshakeError as err:
            logger.warning("cc %s: %s: %s", self.namespace, via, err)
            if not keep_stream or err.too_old:
                await _hang_up(writer)
            return err.too_old
        except (asyncio.IncompleteReadError, OSError, TimeoutError, wire.FrameError) as err:
            logger.debug("cc %s: %s: handshake failed: %s", self.namespace, via, err)
            if not keep_stream:
                await _hang_up(writer)
            return False
        info = hello.client
        if vm is None:
            vm = self.node.vms.find(self.namespace, info.uuid)
        elif info.uuid.lower() != vm.uuid.lower():
            # the socket names the VM, whatever the agent believes its UUID is
            logger.info("cc: agent on vm %s says uuid %s; using %s", vm.name, info.uuid, vm.uuid)
        if vm is not None:
            info.uuid = vm.uuid
        conn = ClientConn(reader, writer, info, via, vm, keep_stream=keep_stream)
        conn.features = list(hello.features)
        if info.uuid in self.clients:
            text = f"client {info.uuid} already exists!"
            logger.warning("cc %s: %s", self.namespace, text)
            with contextlib.suppress(OSError, TimeoutError):
                await conn.send(wire.Error(error=text))
            await conn.close()
            return False
        if hello.epoch == self.store.epoch:
            conn.max_sent = hello.last_command_id
        try:
            features = [wire.FEATURE_ACKS]
            if self.pipes.available:
                features.append(wire.FEATURE_PIPES)
            await conn.send(wire.Welcome(node=self.node.name, features=features))
        except (OSError, TimeoutError):
            await conn.close()
            return False
        self.clients[info.uuid] = conn
        self.node.on_event(
            self.namespace, info.uuid,
            {"action": "connect", "hostname": info.hostname, "via": str(via),
             "vm": conn.vm.name if conn.vm is not None else ""},
        )  # fmt: skip
        self._apply_tags(conn)
        logger.info(
            "cc %s: client %s (%s) connected via %s", self.namespace, info.uuid, info.hostname, via
        )
        beat = self.tasks.spawn(self._heartbeat(conn), f"hb:{info.uuid}")
        try:
            await self.deliver(conn)
            await self._read_loop(conn)
        finally:
            beat.cancel()
            if self.clients.get(info.uuid) is conn:
                del self.clients[info.uuid]
                self.node.on_event(self.namespace, info.uuid, {"action": "disconnect"})
            await self.tunnels.drop_client(conn)
            self.pipes.drop_client(conn)
            await conn.close()
            logger.info("cc %s: client %s disconnected", self.namespace, info.uuid)
        return False

    async def _heartbeat(self, conn: ClientConn) -> None:
        while not conn.closed:
            await asyncio.sleep(wire.HEARTBEAT_RATE)
            try:
                await conn.send(wire.Heartbeat())
            except (OSError, TimeoutError, RuntimeError):
                await conn.close()
                return

    async def _read_loop(self, conn: ClientConn) -> None:
        while not conn.closed:
            try:
                frame = await asyncio.wait_for(wire.read_frame(conn.reader), CLIENT_EXPIRED)
            except wire.FrameTooLargeError as err:
                logger.warning("cc %s: client %s: %s; hanging up", self.namespace, conn.uuid, err)
                with contextlib.suppress(OSError, TimeoutError):
                    await conn.send(wire.Error(error=f"refused: {err}"))
                return
            except wire.FrameError as err:
                logger.warning("cc %s: client %s: %s", self.namespace, conn.uuid, err)
                try:
                    await conn.send(wire.Error(error=f"refused: {err}"))
                except (OSError, TimeoutError):
                    return
                continue
            except TimeoutError:
                logger.info("cc %s: client %s expired", self.namespace, conn.uuid)
                return
            except (asyncio.IncompleteReadError, OSError) as err:
                if isinstance(err, asyncio.IncompleteReadError) and err.partial:
                    logger.warning("cc %s: client %s: truncated frame", self.namespace, conn.uuid)
                return
            conn.checkin = time.monotonic()
            try:
                await self._handle(conn, frame)
            except (OSError, TimeoutError) as err:
                logger.info("cc %s: client %s: %s", self.namespace, conn.uuid, err)
                return

    async def _handle(self, conn: ClientConn, frame: wire.AnyFrame) -> None:
        match frame:
            case wire.Info(client=client):
                client.uuid = conn.uuid
                conn.info = client
                self._apply_tags(conn)
            case wire.Response():
                await self._on_response(conn, frame)
            case wire.FileRequest(id=cmd_id, name=name):
                self.tasks.spawn(self._send_file(conn, cmd_id, name), f"send:{name}")
            case wire.FileData():
                await self._on_file_data(conn, frame)
            case wire.Tunnel():
                await self.tunnels.on_frame(conn, frame)
            case wire.Pipe():
                await self.pipes.on_frame(conn, frame)
            case wire.FsReply():
                await self.node.mounts.on_reply(frame)
            case wire.Error(error=error):
                logger.warning("cc %s: client %s reports: %s", self.namespace, conn.uuid, error)
            case wire.Heartbeat():
                pass
            case _:
                await conn.send(wire.Error(error=f"unexpected {type(frame).__name__} frame"))

    def _apply_tags(self, conn: ClientConn) -> None:
        if conn.vm is not None:
            conn.vm.tags.update(conn.info.tags)

    # -- commands --------------------------------------------------------------------------

    def _on_command(self, state: CommandState, added: bool) -> None:
        if not added:
            return
        for conn in list(self.clients.values()):
            self.tasks.spawn(self.deliver(conn), f"deliver:{conn.uuid}")

    def _vm_info(self, conn: ClientConn, key: str) -> str:
        if conn.vm is None or key not in self.node.columns:
            return ""
        return self.node.describe(conn.vm, key)

    def matches(self, filt: Filter | None, conn: ClientConn) -> bool:
        """Whether ``conn`` passes ``filt``, its VM's tags and ``vm info`` included."""
        vm_tags = dict(conn.vm.tags) if conn.vm is not None else {}
        return cc_filter.matches(filt, conn.info, vm_tags, lambda k: self._vm_info(conn, k))

    async def deliver(self, conn: ClientConn) -> None:
        """Send ``conn`` every command it has not been considered for and that matches."""
        if not self.store.commands:
            return
        todo: list[CommandState] = []
        for cmd_id in sorted(self.store.commands):
            if cmd_id <= conn.max_sent:
                continue
            state = self.store.commands[cmd_id]
            rec = state.record
            if rec.spec.once and conn.uuid in state.sent:
                continue
            if self.matches(rec.filter, conn):
                todo.append(state)
        conn.max_sent = max(conn.max_sent, max(self.store.commands))
        if not todo:
            return
        for state in todo:
            if state.record.spec.once:
                # recorded before the agent sees it: at most once, even if it crashes
                state.sent.add(conn.uuid)
                await self.store.done(state.record.id, conn.uuid, responded=False)
        self.pipes.check_agent(conn, [s.record.spec for s in todo])
        with contextlib.suppress(OSError, TimeoutError, RuntimeError):
            await conn.send(
                wire.Commands(epoch=self.store.epoch, commands=[s.record.spec for s in todo])
            )

    async def new_command(
        self, spec: wire.Command, *, prefix: str | None = None, filt: Filter | None = None
    ) -> int:
        """Create a command; returns its ID.

        It gets the namespace's ``cc prefix`` and ``cc filter`` unless it is
        given its own (``router <vm> commit`` targets one VM whatever the user set).
        """
        return await self.store.create(
            spec,
            self.prefix if prefix is None else prefix,
            self.filter if filt is None else filt,
            self.node.name,
        )

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every command with ``prefix`` (2.8's ``DeleteCommands``); how many went."""
        ids = [i for i, s in self.store.commands.items() if s.record.prefix == prefix]
        for cmd_id in ids:
            await self.store.delete(cmd_id)
        return len(ids)

    # -- responses and files ----------------------------------------------------------------

    async def _on_response(self, conn: ClientConn, frame: wire.Response) -> None:
        state = self.store.commands.get(frame.id)
        if state is not None and conn.uuid in state.checked_in:
            # sent again after a redial because our ack was lost: recorded already
            await self._ack(conn, frame.id)
            return
        failed = conn.recv_failed.pop(frame.id, [])
        if failed:
            frame.stderr = "\n".join(s for s in (frame.stderr, *failed) if s)
        event = wire.ResponseEvent(
            namespace=self.namespace,
            id=frame.id,
            uuid=conn.uuid,
            node=self.node.name,
            hostname=conn.info.hostname,
            stdout=frame.stdout,
            stderr=frame.stderr,
            exit_code=frame.exit_code,
        )
        if self.bus is not None:
            subject = self.bus.subjects.cc(self.namespace, "resp", str(frame.id), conn.uuid)
            try:
                await self.bus.nc.publish(subject, msgspec.json.encode(event))
            except nats.errors.Error as err:
                logger.warning("cc %s: cannot publish response: %s", self.namespace, err)
        try:
            await asyncio.to_thread(
                responses.write_response,
                self.files_dir,
                self.namespace,
                frame.id,
                conn.uuid,
                frame.stdout,
                frame.stderr,
                frame.exit_code if frame.record_exit_code else None,
            )
        except (OSError, ValueError) as err:
            logger.error("cc %s: could not record response %d: %s", self.namespace, frame.id, err)
        try:
            await self.store.done(frame.id, conn.uuid, responded=True)
        except Exception as err:
            logger.warning("cc %s: could not record check-in: %s", self.namespace, err)
        await self._ack(conn, frame.id)

    async def _ack(self, conn: ClientConn, cmd_id: int) -> None:
        if wire.FEATURE_ACKS in conn.features:
            await conn.send(wire.ResponseAck(id=cmd_id))

    def resolve_send(self, name: str) -> str:
        """A ``cc send`` file: in the namespace's directory first, then the files root.

        Raises:
            ValueError: the name climbs out of the files directory.
        """
        rel = responses.safe_relative(name)
        first = os.path.join(responses.base_dir(self.files_dir, self.namespace), rel)
        if os.path.exists(first):
            return first
        return os.path.join(self.files_dir, rel)

    async def _send_file(self, conn: ClientConn, cmd_id: int, name: str) -> None:
        try:
            path = self.resolve_send(name)
            fh = await asyncio.to_thread(open, path, "rb")
        except (OSError, ValueError) as err:
            with contextlib.suppress(OSError, TimeoutError):
                await conn.send(wire.FileData(id=cmd_id, name=name, error=str(err), eof=True))
            return
        try:
            perm = os.fstat(fh.fileno()).st_mode & 0o777
            offset = 0
            while True:
                data = await asyncio.to_thread(fh.read, wire.CHUNK_SIZE)
                eof = len(data) < wire.CHUNK_SIZE
                await conn.send(
                    wire.FileData(
                        id=cmd_id, name=name, offset=offset, data=data, perm=perm, eof=eof
                    )
                )
                offset += len(data)
                if eof:
                    return
        except (OSError, TimeoutError, RuntimeError) as err:
            logger.info("cc %s: sending %s to %s: %s", self.namespace, name, conn.uuid, err)
        finally:
            fh.close()

    async def _on_file_data(self, conn: ClientConn, frame: wire.FileData) -> None:
        if frame.error:
            logger.error("cc %s: file error from %s: %s", self.namespace, conn.uuid, frame.error)
            return
        try:
            path = responses.recv_path(
                self.files_dir, self.namespace, frame.id, conn.uuid, frame.name
            )
        except ValueError as err:
            await conn.send(wire.Error(error=f"refused: {err}"))
            return
        failed = conn.recv_failed.get(frame.id, [])
        if any(f.startswith(f"{frame.name}: ") for f in failed):
            return  # the rest of a file that could not be written
        try:
            await asyncio.to_thread(
                _write_chunk, path, frame.offset, frame.data, frame.perm, frame.eof
            )
        except OSError as err:
            logger.error("cc %s: writing %s: %s", self.namespace, path, err)
            await asyncio.to_thread(_drop_partial, path)
            conn.recv_failed.setdefault(frame.id, []).append(f"{frame.name}: {err.strerror or err}")


def _write_chunk(path: str, offset: int, data: bytes, perm: int, eof: bool) -> None:
    """One chunk into ``path`` + PARTIAL; the last one renames it to ``path``."""
    os.makedirs(os.path.dirname(path), mode=0o770, exist_ok=True)
    part = path + responses.PARTIAL
    mode = "r+b" if offset and os.path.exists(part) else "wb"
    with open(part, mode) as fh:
        fh.seek(offset)
        fh.write(data)
    if eof:
        os.chmod(part, perm & 0o777 or 0o644)
        os.replace(part, path)


def _drop_partial(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path + responses.PARTIAL)


async def _hang_up(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 2.0)
