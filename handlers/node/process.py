"""The node process: one per host, serving commands over the bus.

A node connects to NATS (starting its own nats-server when none is given and
none listens locally), serves its command subjects, publishes heartbeats and
announces itself as a NATS micro service. Every request runs in its own task,
so a slow command never holds up another one and no lock is held across a
bus request (minimega 2.8's #1474 deadlock cannot happen here). While a command
runs, the node sends ``CommandWorking`` keep-alives so clients can use an idle
timeout instead of a deadline.

Shutdown is ordered: stop accepting (drain the command subscriptions), let the
running requests finish (bounded), stop heartbeats and the service, close the
handlers' state, drain the connection, stop the embedded server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import nats.errors
import nats.micro
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro.request import Request
from nats.micro.service import Service

from megabus.bus.codec import decode, encode
from megabus.bus.connection import Bus
from megabus.bus.errors import BusDecodeError, BusError, PayloadTooLargeError, ServerStartError
from megabus.bus.messages import CommandReply, CommandRequest, CommandWorking, ErrorReply, Heartbeat
from megabus.bus.server import EmbeddedServer, port_open
from megabus.bus.subjects import token
from megabus.bus.tasks import TaskSet
from megabus.config.settings import Settings
from megabus.handlers.node.access import NodeAccess
from megabus.handlers.node.table import node_schema

logger = logging.getLogger(__name__)

#: Seconds between ``CommandWorking`` keep-alives of a running command.
WORKING_INTERVAL = 2.0
#: Seconds running requests get to finish at shutdown before they are cancelled.
SHUTDOWN_GRACE = 10.0
#: Seconds to wait for the server to confirm subscriptions.
FLUSH_TIMEOUT = 5
#: Seconds allowed to connect to each NATS URL.
CONNECT_TIMEOUT = 2.0
#: Name of the file local front ends read to find the node.
INFO_FILE = "megabus.json"


@functools.cache
def version() -> str:
    """The installed megabus version (there is no ``megabus/__init__.py`` to hold it)."""
    try:
        return importlib.metadata.version("megabus")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


Emit = Callable[[CommandReply], Awaitable[None]]


class Executor(Protocol):
    """What the node needs of a dispatcher: run one request, emit its batches."""

    async def execute(self, req: CommandRequest, emit: Emit) -> None: ...


#: Builds the executor for a node and owns whatever it needs while the node runs.
DispatcherFactory = Callable[[Settings, Bus], contextlib.AbstractAsyncContextManager[Executor]]


@contextlib.asynccontextmanager
async def default_dispatcher(settings: Settings, bus: Bus) -> AsyncIterator[Executor]:
    """The real dispatcher over a fresh :class:`NodeState`, its services running.

    The command families must be registered (:mod:`megabus.handlers.main`
    imports them); a node with none refuses to start.
    """
    # Imported here so that this module (and nodes in tests that bring their
    # own executor) load without the engines.
    from megabus.handlers.net import VlanStore
    from megabus.handlers.node.dispatch import Dispatcher, load_grammar
    from megabus.handlers.node.lifecycle import serving
    from megabus.handlers.node.state import NodeState

    load_grammar()  # fails at once, and clearly, without the families
    vlans = await VlanStore.open(bus, settings.vlan_bounds())
    try:
        state = NodeState(settings=settings, vlans=vlans)
        logs = state.log_control()
        try:
            async with serving(state, bus):
                yield Dispatcher(state, bus)
        finally:
            logs.close()
    finally:
        await vlans.close()


def _read_stats() -> dict[str, Any]:
    """Load, CPUs and memory (MB) of this host; blocking file reads."""
    load = os.getloadavg()[0]
    mem: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    mem[key] = int(rest.split()[0]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    total = mem.get("MemTotal", 0)
    return {
        "load": load,
        "cpus": os.cpu_count() or 0,
        "mem_total": total,
        "mem_used": total - mem.get("MemAvailable", total),
    }


class Node:
    """One megabus node, started and stopped in-process.

    Args:
        settings: the node's settings.
        dispatcher_factory: builds the executor of commands; the real
            dispatcher by default. Tests pass a small one here.
    """

    def __init__(
        self, settings: Settings, *, dispatcher_factory: DispatcherFactory = default_dispatcher
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._factory = dispatcher_factory
        self._log = logger.getChild(token(self.name))
        self._bus: Bus | None = None
        self._server: EmbeddedServer | None = None
        self._access: NodeAccess | None = None
        self._executor: Executor | None = None
        self._exits = contextlib.AsyncExitStack()
        self._subs: list[Subscription] = []
        self._service: Service | None = None
        self._schema = b""
        self._heartbeat: asyncio.Task[None] | None = None
        self._requests = TaskSet(f"requests:{self.name}")
        # Beyond this many running requests the next ones wait (none is
        # dropped): a burst of clients cannot start unbounded work at once.
        self._slots = asyncio.Semaphore(settings.max_requests)
        self._started = time.time()
        self._info_written = False
        self._never = asyncio.Event()

    # --- public face ----------------------------------------------------------

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            raise RuntimeError("the node is not started")
        return self._bus

    @property
    def server(self) -> EmbeddedServer | None:
        """The nats-server this node started, if it started one."""
        return self._server

    @property
    def nats_url(self) -> str:
        return self.bus.url

    @property
    def info_path(self) -> Path:
        return Path(self.settings.base) / INFO_FILE

    @property
    def executor(self) -> Executor | None:
        """What runs this node's commands (the dispatcher) while the node is started."""
        return self._executor

    @property
    def quit_requested(self) -> asyncio.Event:
        """Set when a command asked the node to stop (``quit``, ``nuke``); never set otherwise."""
        found = getattr(self._executor, "quit_requested", None)
        return found if isinstance(found, asyncio.Event) else self._never

    @property
    def running_requests(self) -> int:
        return len(self._requests)

    async def start(self) -> None:
        """Connect, serve and announce the node; on failure undo what was done.

        Raises:
            BusError: no NATS server could be reached or started.
        """
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self._started = time.time()
        self._access = access = await asyncio.to_thread(NodeAccess.load, self.settings)
        urls = await self._nats_urls(access)
        self._bus = await Bus.connect(
            urls,
            name=self.name,
            prefix=self.settings.prefix,
            timeout=CONNECT_TIMEOUT,
            credentials=access.credentials,
            tls=access.tls,
        )
        self._executor = await self._exits.enter_async_context(
            self._factory(self.settings, self._bus)
        )
        await self._subscribe()
        await self._register_service()
        self._heartbeat = asyncio.create_task(self._beat(), name=f"heartbeat-{self.name}")
        await asyncio.to_thread(self._write_info)
        self._log.info("node %s serving on %s", self.name, self.nats_url)

    async def stop(self) -> None:
        """Shut down in order; safe on a partly started node and idempotent."""
        await self._stop_accepting()
        await self._finish_requests()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.wait([self._heartbeat])
            self._heartbeat = None
            await self._last_beat()
        if self._service is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._service.stop()
            self._service = None
        await self._exits.aclose()
        self._executor = None
        if self._bus is not None:
            await self._bus.close()
        if self._server is not None:
            await self._server.stop()
            self._server = None
        if self._info_written:
            await asyncio.to_thread(self._remove_info)
            self._info_written = False

    # --- start-up steps ---------------------------------------------------------

    async def _nats_urls(self, access: NodeAccess) -> list[str]:
        if self.settings.nats:
            return list(self.settings.nats)
        port = self.settings.nats_port
        url = f"nats://127.0.0.1:{port}"
        if await port_open("127.0.0.1", port):
            await asyncio.to_thread(access.join_local)
            return [url]
        # Authorization on, with credentials generated into the base (security.py).
        server = await asyncio.to_thread(access.embedded_server, port)
        try:
            await server.start()
        except ServerStartError:
            # Another node on this host may have won the race for the port.
            if await port_open("127.0.0.1", port):
                await asyncio.to_thread(access.join_local)
                return [url]
            raise
        self._server = server
        return [server.client_url]

    async def _subscribe(self) -> None:
        nc = self.bus.nc
        subjects = self.bus.subjects
        self._subs = [
            await nc.subscribe(
                subjects.node_cmd(self.name),
                queue=subjects.node_queue(self.name),
                cb=self._on_request,
            ),
            await nc.subscribe(subjects.any_cmd(), queue=subjects.all_queue(), cb=self._on_request),
        ]
        await nc.flush(timeout=FLUSH_TIMEOUT)

    async def _register_service(self) -> None:
        # Commands do not go through a micro endpoint: micro awaits each
        # handler inside the subscription's callback (one request at a time
        # unless we spawn our own tasks, which makes its stats meaningless),
        # answers failures with its own Nats-Service-Error headers instead of
        # our ErrorReply, and unsubscribes at stop where we need to drain.
        # The service is here for discovery ($SRV.PING/INFO/STATS), with one
        # small ``info`` endpoint that tells a tool where the node's commands go.
        subjects = self.bus.subjects
        self._service = await nats.micro.add_service(
            self.bus.nc,
            name=subjects.service_name(),
            version=version(),
            description="megabus node (minimega 2.8 on NATS)",
            metadata={
                "node": self.name,
                "prefix": subjects.prefix,
                "cmd": subjects.node_cmd(self.name),
            },
        )
        await self._service.add_endpoint(
            name="info",
            subject=subjects.node_info(self.name),
            queue_group=subjects.node_queue(self.name),
            handler=self._on_info,
            metadata={"node": self.name},
        )
        # The command table is fixed once the families are loaded: encode it once.
        self._schema = encode(node_schema(version(), self.name))[0]
        await self._service.add_endpoint(
            name="schema",
            subject=subjects.node_schema(self.name),
            queue_group=subjects.node_queue(self.name),
            handler=self._on_schema,
            metadata={"node": self.name},
        )

    def _info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "nats_url": self.nats_url,
            "prefix": self.bus.subjects.prefix,
            "pid": os.getpid(),
            # where local clients find credentials and TLS files (paths, never secrets)
            **(self._access.info() if self._access is not None else {}),
        }

    def _write_info(self) -> None:
        path = self.info_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._info(), indent=2) + "\n")
        tmp.replace(path)  # readers never see half a file
        self._info_written = True

    def _remove_info(self) -> None:
        # Leave the file alone if another node of this base has taken it over.
        try:
            if json.loads(self.info_path.read_text()).get("pid") == os.getpid():
                self.info_path.unlink()
        except (OSError, ValueError):
            pass

    # --- serving ---------------------------------------------------------------

    async def _on_info(self, req: Request) -> None:
        info = self._info()
        info.update(
            version=version(),
            uptime=time.time() - self._started,
            cmd=self.bus.subjects.node_cmd(self.name),
            running=self.running_requests,
        )
        await req.respond(json.dumps(info).encode())

    async def _on_schema(self, req: Request) -> None:
        await req.respond(self._schema)

    async def _on_request(self, msg: Msg) -> None:
        if not msg.reply:
            self._log.warning("request on %s without a reply subject, dropped", msg.subject)
            return
        try:
            req = decode(msg.data, CommandRequest)
        except BusDecodeError as err:
            self._log.warning("bad request on %s: %s", msg.subject, err)
            await self._send_error(msg.reply, f"bad request: {err}")
            return
        s = self.settings
        if len(self._requests) >= s.max_requests + s.max_waiting:
            # Each waiting request holds a task and its payload: past the bound
            # the client hears so at once instead of the node growing without end.
            self._log.warning("node busy, request %r refused", req.line[:40])
            await self._send_error(
                msg.reply,
                f"node busy: {s.max_requests} requests running and {s.max_waiting} waiting "
                "(max-requests, max-waiting)",
            )
            return
        self._requests.spawn(self._serve_in_turn(req, msg.reply), f"cmd {req.line[:40]!r}")

    async def _serve_in_turn(self, req: CommandRequest, reply: str) -> None:
        async with self._slots:
            await self._serve(req, reply)

    async def _serve(self, req: CommandRequest, reply: str) -> None:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        finished = False  # the client has had its last message

        async def emit(rep: CommandReply) -> None:
            nonlocal finished
            if finished:
                self._log.debug("reply after the last one to %r dropped", req.line)
                return
            try:
                await self.bus.publish(reply, rep)
            except PayloadTooLargeError as err:
                finished = True
                await self._send_error(reply, f"reply too large: {err}")
                return
            finished = not rep.more

        async def keepalive() -> None:
            while True:
                working = CommandWorking(node=self.name, elapsed=loop.time() - started)
                try:
                    await self.bus.publish(reply, working)
                except BusError as err:
                    self._log.debug("keep-alive failed: %s", err)
                await asyncio.sleep(WORKING_INTERVAL)

        self._log.debug("<- %r (%s)", req.line, req.client)
        # Most commands end well before the first keep-alive is due: a timer
        # costs a fraction of a task, so the keep-alive task starts only when
        # a command outlives it.
        alive: asyncio.Task[None] | None = None

        def start_keepalive() -> None:
            nonlocal alive
            alive = asyncio.create_task(keepalive(), name="keepalive")

        timer = loop.call_later(WORKING_INTERVAL, start_keepalive)
        try:
            await self._executor.execute(req, emit)
        except asyncio.CancelledError:
            if not finished:
                await self._send_error(reply, "the node is shutting down")
            raise
        except Exception as err:
            self._log.exception("command %r failed", req.line)
            if not finished:
                finished = True
                await self._send_error(reply, f"internal error: {err}")
        finally:
            timer.cancel()
            if alive is not None:
                alive.cancel()
                await asyncio.wait([alive])
        if not finished:
            # The executor forgot its last batch; the client must not hang.
            await emit(CommandReply(node=self.name, more=False))

    async def _send_error(self, reply: str, text: str) -> None:
        try:
            await self.bus.publish(reply, ErrorReply(node=self.name, error=text))
        except BusError as err:
            self._log.warning("could not send error reply: %s", err)

    # --- heartbeats -------------------------------------------------------------

    def _vm_count(self) -> int:
        # the real dispatcher knows its VMs; a bare executor (tests) has none
        counter = getattr(self._executor, "vm_count", None)
        return int(counter()) if callable(counter) else 0

    async def _beat(self) -> None:
        subject = self.bus.subjects.heartbeat(self.name)
        while True:
            stats = await asyncio.to_thread(_read_stats)
            hb = Heartbeat(
                node=self.name,
                version=version(),
                uptime=time.time() - self._started,
                interval=self.settings.heartbeat,
                vms=self._vm_count(),
                nats_url=self.nats_url,
                ts=time.time(),
                **stats,
            )
            try:
                await self.bus.publish(subject, hb)
            except BusError as err:
                self._log.warning("heartbeat not sent: %s", err)
            await asyncio.sleep(self.settings.heartbeat)

    async def _last_beat(self) -> None:
        """Tell the others this node leaves (they drop it at once; best effort)."""
        hb = Heartbeat(
            node=self.name, version=version(), uptime=time.time() - self._started,
            interval=self.settings.heartbeat, nats_url=self.nats_url, ts=time.time(),
            leaving=True,
        )  # fmt: skip
        try:
            await self.bus.publish(self.bus.subjects.heartbeat(self.name), hb)
            await self.bus.nc.flush(timeout=2)
        except (BusError, nats.errors.Error, TimeoutError) as err:
            self._log.info("last heartbeat not sent: %s", err)

    # --- shutdown steps ---------------------------------------------------------

    async def _stop_accepting(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            # Drain: requests already delivered still get served.
            try:
                await sub.drain()  # type: ignore[no-untyped-call]  # unannotated in nats-py
            except (nats.errors.Error, TimeoutError) as err:
                self._log.debug("drain of %s failed: %s", sub.subject, err)

    async def _finish_requests(self) -> None:
        if not len(self._requests):
            return
        self._log.info("waiting for %d running requests", len(self._requests))
        try:
            async with asyncio.timeout(SHUTDOWN_GRACE):
                await self._requests.join()
        except TimeoutError:
            self._log.warning(
                "cancelling %d requests still running at shutdown", len(self._requests)
            )
            await self._requests.aclose()


async def run_node(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Run a node until SIGINT, SIGTERM, ``quit`` or ``nuke`` (or cancellation), then shut down.

    Args:
        ready: set once the node serves requests.
    """
    node = Node(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (ValueError, RuntimeError, NotImplementedError):
            # Not the main thread: the caller stops us by cancelling.
            logger.debug("no handler for %s outside the main thread", sig.name)
    try:
        await node.start()
        if ready is not None:
            ready.set()
        # a signal, or `quit`/`nuke` typed to this node
        waits = [
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(node.quit_requested.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        logger.info("node %s: shutting down", node.name)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await node.stop()


__all__ = ["DispatcherFactory", "Executor", "Node", "default_dispatcher", "run_node", "version"]
