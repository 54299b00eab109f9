"""``Client``: a node's commands as typed async methods, its events as async iterators.

The methods come from the node itself: :meth:`Client.connect` asks the node
for its published schema (``<prefix>.v1.node.<node>.schema``) and makes one
method per name of its command table (:mod:`megabus.client._methods`), so a
client never lists a command the node does not have, nor misses one it has.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

import nats.errors
from nats.aio.subscription import Subscription as NatsSubscription

from megabus.bus.codec import decode
from megabus.bus.connection import Bus
from megabus.bus.errors import (
    BusConnectError,
    BusDecodeError,
    BusTimeoutError,
    NoRespondersError,
)
from megabus.bus.messages import (
    Event,
    Heartbeat,
    LogRecord,
    Schema,
    SchemaRequest,
    StatusUpdate,
    VlanAliasEvent,
)
from megabus.bus.security import (
    OPERATOR,
    Credentials,
    TlsFiles,
    env_credentials,
    local_credentials,
    read_credentials,
)
from megabus.bus.subjects import bounded_token
from megabus.client._methods import Method, build_methods
from megabus.client._results import CommandFailedError, Result, reply_of

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Where a local node writes ``megabus.json`` unless told otherwise.
DEFAULT_BASE = "/tmp/megabus"
DEFAULT_NATS = "nats://127.0.0.1:4222"
#: Seconds a request may wait for the node: an idle timeout for commands
#: (a long command keeps it alive), a deadline for the schema.
DEFAULT_TIMEOUT = 10.0


class Command:
    """One generated method, bound to a client: ``await client.vm_info()``."""

    def __init__(self, client: Client, method: Method) -> None:
        self._client = client
        self.method = method
        self.__name__ = method.name
        self.__doc__ = method.doc
        self.__signature__ = method.signature()

    def line(self, *args: Any, **kwargs: Any) -> str:
        """The command line a call with these arguments sends."""
        return self.method.bind(*args, **kwargs)

    async def __call__(self, *args: Any, **kwargs: Any) -> Result:
        return await self._client.run(self.method.bind(*args, **kwargs))

    def __repr__(self) -> str:
        return f"<megabus command {self.method.name}{self.__signature__}>"


class Subscription(Generic[T]):
    """Typed messages of one subject (wildcards allowed), as an async iterator.

    Use it as ``async with`` so that the subscription exists before whatever
    should produce the messages runs; iterating without it subscribes at the
    first ``__anext__``. A message that does not decode is logged and skipped.
    """

    def __init__(self, bus: Bus, subject: str, type_: type[T]) -> None:
        self._bus = bus
        self.subject = subject
        self._type = type_
        self._sub: NatsSubscription | None = None

    async def __aenter__(self) -> Subscription[T]:
        if self._sub is None:
            self._sub = await self._bus.nc.subscribe(self.subject)
            await self._bus.nc.flush(timeout=int(DEFAULT_TIMEOUT))
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as err:
                logger.debug("unsubscribe %s: %s", self.subject, err)

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.next(timeout=None)
        except BusConnectError:
            raise StopAsyncIteration from None

    async def next(self, timeout: float | None = DEFAULT_TIMEOUT) -> T:  # noqa: ASYNC109
        """The next message; ``timeout=None`` waits for ever.

        Raises:
            BusTimeoutError: nothing came within ``timeout`` seconds.
            BusConnectError: the connection is closed.
        """
        try:
            await self.__aenter__()
        except nats.errors.ConnectionClosedError:
            raise BusConnectError("the bus connection is closed") from None
        assert self._sub is not None
        while True:
            try:
                msg = await self._sub.next_msg(timeout=timeout)
            except nats.errors.ConnectionClosedError:
                raise BusConnectError("the bus connection is closed") from None
            except nats.errors.TimeoutError:
                raise BusTimeoutError(f"nothing on {self.subject} within {timeout:g}s") from None
            try:
                return decode(msg.data, self._type)
            except BusDecodeError as err:
                logger.warning("skipped a message on %s: %s", msg.subject, err)


def _local_info(base: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(base, "megabus.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Client:
    """A connection to one node, with a method per command of its table.

    Build it with :meth:`connect`; ``async with`` closes it. Generated
    methods return a :class:`~megabus.client.Result` and raise
    :class:`~megabus.client.CommandFailedError` (naming the node) when a node
    answers with an error, unless ``raise_errors`` is false.
    """

    def __init__(
        self,
        bus: Bus,
        node: str,
        schema: Schema,
        *,
        namespace: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        raise_errors: bool = True,
        methods: dict[str, Method] | None = None,
        owner: bool = True,
    ) -> None:
        self.bus = bus
        self.node = node
        self.schema = schema
        self.namespace_name = namespace
        self.timeout = timeout
        self.raise_errors = raise_errors
        self.methods = methods if methods is not None else build_methods(schema.commands)
        self._owner = owner

    @classmethod
    async def connect(
        cls,
        nats: str | Sequence[str] | None = None,
        node: str | None = None,
        *,
        base: str | None = None,
        prefix: str | None = None,
        credentials: Credentials | str | None = None,
        tls: TlsFiles | None = None,
        namespace: str = "",
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - bounds each request, kept on the client
        raise_errors: bool = True,
        name: str = "megabus-client",
    ) -> Client:
        """Connect to a node and learn its commands.

        Without arguments it finds the local node as ``megabus -e`` does:
        ``<base>/megabus.json`` (base: ``$MEGABUS_BASE`` or ``/tmp/megabus``)
        names the server, the node, the prefix and the operator's credentials file.

        Args:
            nats: server URL(s); default ``$MEGABUS_NATS``, the local node's, or localhost.
            node: the node to command; default the local node.
            credentials: a :class:`Credentials` or a credentials file; default the
                environment's, else the local node's operator file.

        Raises:
            BusConnectError: no server answered (AuthorizationError: refused).
            NoRespondersError: no node of that name serves its schema.
        """
        base = base or os.environ.get("MEGABUS_BASE") or DEFAULT_BASE
        info = _local_info(base)
        chosen = nats or os.environ.get("MEGABUS_NATS", "")
        urls_text = chosen if isinstance(chosen, str) else ",".join(chosen)
        local = bool(info) and (not urls_text or urls_text == info.get("nats_url"))
        urls = [u.strip() for u in (urls_text or str(info.get("nats_url", ""))).split(",")]
        urls = [u for u in urls if u] or [DEFAULT_NATS]
        if isinstance(credentials, str):
            credentials = read_credentials(credentials)
        if credentials is None:
            credentials = env_credentials(os.environ)
        if credentials is None and local and info.get("auth"):
            credentials = local_credentials(str(info["auth"]), OPERATOR)
        if tls is None and local and info.get("tls_ca"):
            tls = TlsFiles(
                str(info.get("tls_ca", "")),
                str(info.get("tls_cert", "")),
                str(info.get("tls_key", "")),
            )
        prefix = prefix or os.environ.get("MEGABUS_PREFIX") or str(info.get("prefix") or "mb")
        node = node or str(info.get("name") or "")
        if not node:
            raise NoRespondersError("no node given and no local node found in " + base)
        bus = await Bus.connect(
            urls, name=name, prefix=prefix, timeout=timeout, credentials=credentials, tls=tls
        )
        subject = bus.subjects.node_schema(node)
        try:
            schema = await bus.request(subject, SchemaRequest(), Schema, timeout)
        except NoRespondersError:
            await bus.close()
            raise NoRespondersError(
                f"node {node} does not answer on {subject}: not running under prefix "
                f"{prefix}, or older than this client"
            ) from None
        except BaseException:
            await bus.close()
            raise
        return cls(
            bus, node, schema, namespace=namespace, timeout=timeout, raise_errors=raise_errors
        )

    async def close(self) -> None:
        """Close the connection (a :meth:`namespace` view leaves it to its parent)."""
        if self._owner:
            await self.bus.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def namespace(self, name: str) -> Client:
        """The same node, every command run in namespace ``name`` (2.8's ``mm.namespace``)."""
        return Client(
            self.bus,
            self.node,
            self.schema,
            namespace=name,
            timeout=self.timeout,
            raise_errors=self.raise_errors,
            methods=self.methods,
            owner=False,
        )

    async def run(self, line: str) -> Result:
        """Run one command line (minimega's language) and return what it gave.

        Raises:
            CommandFailedError: a node answered with an error (when ``raise_errors``).
            BusTimeoutError: the node was silent for the client's timeout.
            RemoteError: the node could not serve the request at all.
        """
        batches = await self.bus.command(
            self.node, line, namespace=self.namespace_name, idle_timeout=self.timeout
        )
        replies = tuple(reply_of(r) for batch in batches for r in batch.responses)
        result = Result(self.node, line, replies)
        if self.raise_errors and result.errors:
            raise CommandFailedError(result)
        return result

    def command(self, name: str) -> Command:
        """The generated method ``name`` (also reachable as an attribute).

        Raises:
            AttributeError: the node has no such command.
        """
        method = self.methods.get(name)
        if method is None:
            raise AttributeError(f"node {self.node} has no command {name!r}")
        return Command(self, method)

    def __getattr__(self, name: str) -> Command:
        if name.startswith("__") or "methods" not in self.__dict__:
            raise AttributeError(name)
        return self.command(name)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.methods})

    # --- following the bus -------------------------------------------------------

    def events(self, kind: str = "*", namespace: str | None = None) -> Subscription[Event]:
        """VM (``vm``) and cc client (``cc``) lifecycle events, of one namespace or all."""
        ns = self.namespace_name if namespace is None else namespace
        root = self.bus.subjects.root
        ns_token = bounded_token(ns, "namespace") if ns else "*"
        kind_token = "*" if kind == "*" else bounded_token(kind, "event kind")
        return Subscription(self.bus, f"{root}.event.{ns_token}.{kind_token}", Event)

    def heartbeats(self) -> Subscription[Heartbeat]:
        """Every node's heartbeats."""
        return Subscription(self.bus, self.bus.subjects.heartbeats(), Heartbeat)

    def statuses(self) -> Subscription[StatusUpdate]:
        """Status updates of long-running commands, from every node."""
        return Subscription(self.bus, self.bus.subjects.statuses(), StatusUpdate)

    def logs(self) -> Subscription[LogRecord]:
        """Every node's log records."""
        return Subscription(self.bus, self.bus.subjects.logs(), LogRecord)

    def vlan_events(self) -> Subscription[VlanAliasEvent]:
        """VLAN alias changes of every namespace."""
        return Subscription(self.bus, self.bus.subjects.all_vlans(), VlanAliasEvent)


__all__ = ["DEFAULT_BASE", "Client", "Command", "Subscription"]
