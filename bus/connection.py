"""``Bus``: one nats-py connection with megabus's request helpers on top.

Commands are request-reply with a stream of replies: the node answers with
``CommandWorking`` keep-alives while a command runs and one ``CommandReply``
per batch, the last with ``more=False``. nats-py's ``request()`` resolves on
the first reply only, so :meth:`Bus.request_stream` subscribes its own unique
inbox and applies an *idle* timeout that every message resets; a deadline
would cut off ``shell sleep 600``.

Fan-out over nodes lives above the bus, in :mod:`megabus.handlers.node.fanout`
(the one fan-out: idle timeouts per node, membership watched while waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncGenerator
from typing import TypeVar

import nats
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from megabus.bus.codec import decode, encode
from megabus.bus.errors import (
    BusConnectError,
    BusDecodeError,
    BusTimeoutError,
    NoRespondersError,
    PayloadTooLargeError,
    RemoteError,
)
from megabus.bus.messages import (
    CommandReply,
    CommandRequest,
    CommandStream,
    CommandWorking,
    ErrorReply,
    Message,
)
from megabus.bus.subjects import DEFAULT_PREFIX, Subjects

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Status header value the server sends to a reply subject when nobody listens.
_NO_RESPONDERS = "503"
#: Seconds between reconnect attempts to the same server; other servers of the
#: list are tried at once.
RECONNECT_WAIT = 1
#: Seconds a drain may take at close before the connection is cut.
DRAIN_TIMEOUT = 5
#: Seconds JetStream API calls wait for the server.
JS_TIMEOUT = 5.0


class Bus:
    """One connection to NATS, with the subjects of one prefix.

    Build it with :meth:`connect`; close it with :meth:`close`.

    Attributes:
        nc: the nats-py client.
        js: its JetStream context.
        subjects: subject builders for the prefix.
        node: the name this connection acts for (a node's name, or a client's).
    """

    def __init__(self, nc: Client, *, name: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=JS_TIMEOUT)
        self.subjects = Subjects(prefix)
        self.node = name

    @classmethod
    async def connect(
        cls,
        urls: list[str],
        *,
        name: str,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 2.0,  # noqa: ASYNC109 - the contract's name; it bounds a retry loop
    ) -> Bus:
        """Connect to the first reachable server of ``urls``.

        Once connected the client reconnects for ever, trying every server of
        the list (and any the cluster announces).

        Raises:
            BusConnectError: no server answered within ``timeout`` seconds per URL.
            ValueError: ``prefix`` is not a valid subject prefix.
        """
        subjects = Subjects(prefix)  # fail on a bad prefix before any I/O
        nc = Client()
        connected = False

        async def on_error(err: Exception) -> None:
            # Refused attempts while connecting are expected; the timeout reports them.
            level = logging.WARNING if connected else logging.DEBUG
            logger.log(level, "nats %s: %s", name, err)

        async def on_disconnect() -> None:
            if connected:
                logger.warning("nats %s: disconnected", name)

        async def on_reconnect() -> None:
            logger.info("nats %s: reconnected to %s", name, _netloc(nc))

        budget = timeout * max(1, len(urls))
        try:
            async with asyncio.timeout(budget):
                await nc.connect(
                    servers=urls,
                    name=name,
                    connect_timeout=max(1, math.ceil(timeout)),
                    reconnect_time_wait=RECONNECT_WAIT,
                    max_reconnect_attempts=-1,
                    drain_timeout=DRAIN_TIMEOUT,
                    error_cb=on_error,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                )
        except (TimeoutError, OSError, nats.errors.Error) as err:
            await _close_quietly(nc)
            detail = str(err) or type(err).__name__
            if isinstance(err, TimeoutError):
                detail = f"no answer within {budget:g}s"
            raise BusConnectError(f"cannot connect to {', '.join(urls)}: {detail}") from None
        except BaseException:
            await _close_quietly(nc)
            raise
        connected = True
        logger.debug("nats %s: connected to %s", name, _netloc(nc))
        return cls(nc, name=name, prefix=subjects.prefix)

    @property
    def url(self) -> str:
        """The URL of the server this connection is on, or ``""``."""
        return _netloc(self.nc, scheme=True)

    # --- one-way ------------------------------------------------------------

    async def publish(self, subject: str, msg: Message, *, reply: str = "") -> None:
        """Publish ``msg`` on ``subject``.

        Raises:
            PayloadTooLargeError: the encoded message exceeds the server's limit.
            BusConnectError: the connection is closed.
        """
        data, headers = encode(msg)
        try:
            await self.nc.publish(subject, data, reply=reply, headers=headers)
        except nats.errors.MaxPayloadError:
            raise PayloadTooLargeError(
                f"message of {len(data)} bytes exceeds the server's max payload "
                f"of {self.nc.max_payload} bytes"
            ) from None
        except nats.errors.ConnectionClosedError:
            raise BusConnectError("the bus connection is closed") from None

    # --- request-reply ------------------------------------------------------

    async def request(
        self,
        subject: str,
        msg: Message,
        reply_type: type[T],
        timeout: float,  # noqa: ASYNC109 - handed to nats-py's request, which applies it
    ) -> T:
        """Send ``msg`` and decode the single reply as ``reply_type``.

        Raises:
            BusTimeoutError: no reply within ``timeout`` seconds.
            NoRespondersError: nobody serves ``subject``.
            RemoteError: the server answered with an :class:`ErrorReply`.
            BusDecodeError: the reply is neither ``reply_type`` nor an error.
        """
        data, headers = encode(msg)
        try:
            raw = await self.nc.request(subject, data, timeout=timeout, headers=headers)
        except nats.errors.NoRespondersError:
            raise NoRespondersError(f"no node serves {subject}") from None
        except nats.errors.TimeoutError:
            raise BusTimeoutError(f"no reply from {subject} within {timeout:g}s") from None
        except nats.errors.MaxPayloadError:
            raise PayloadTooLargeError(
                f"request of {len(data)} bytes exceeds the server's max payload"
            ) from None
        except nats.errors.ConnectionClosedError:
            raise BusConnectError("the bus connection is closed") from None
        try:
            return decode(raw.data, reply_type)
        except BusDecodeError as err:
            with contextlib.suppress(BusDecodeError):
                error = decode(raw.data, ErrorReply)
                raise RemoteError(error.error, node=error.node) from None
            raise BusDecodeError(f"bad reply from {subject}: {err}") from None

    async def request_stream(
        self, subject: str, msg: Message, *, idle_timeout: float
    ) -> AsyncGenerator[CommandReply | CommandWorking | ErrorReply, None]:
        """Send ``msg`` and yield every reply until the last one.

        The stream ends after a :class:`CommandReply` with ``more=False`` or
        after an :class:`ErrorReply` (which is yielded, not raised). Close it
        with :func:`contextlib.aclosing` when leaving early.

        Raises:
            BusTimeoutError: ``idle_timeout`` seconds passed without any message.
            NoRespondersError: nobody serves ``subject``.
            BusDecodeError: a reply is not a command reply.
        """
        inbox = self.nc.new_inbox()
        try:
            sub = await self.nc.subscribe(inbox)
        except nats.errors.ConnectionClosedError:
            raise BusConnectError("the bus connection is closed") from None
        try:
            await self.publish(subject, msg, reply=inbox)
            while True:
                try:
                    raw = await sub.next_msg(timeout=idle_timeout)
                except nats.errors.TimeoutError:
                    raise BusTimeoutError(
                        f"no reply from {subject} for {idle_timeout:g}s"
                    ) from None
                except nats.errors.ConnectionClosedError:
                    raise BusConnectError("the bus connection is closed") from None
                if raw.headers and raw.headers.get("Status") == _NO_RESPONDERS:
                    raise NoRespondersError(f"no node serves {subject}")
                try:
                    item: CommandReply | CommandWorking | ErrorReply = decode(
                        raw.data, CommandStream
                    )
                except BusDecodeError as err:
                    raise BusDecodeError(f"bad reply from {subject}: {err}") from None
                yield item
                if isinstance(item, ErrorReply) or (
                    isinstance(item, CommandReply) and not item.more
                ):
                    return
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    def _command_request(self, line: str, namespace: str, source: str) -> CommandRequest:
        return CommandRequest(line=line, namespace=namespace, source=source, client=self.node)

    async def command(
        self,
        node: str,
        line: str,
        *,
        namespace: str = "",
        source: str = "",
        idle_timeout: float = 10.0,
    ) -> list[CommandReply]:
        """Run ``line`` on ``node`` and return its batches of responses.

        Raises:
            RemoteError: the node could not serve the request at all.
            NoRespondersError: no process serves ``node``.
            BusTimeoutError: the node was silent for ``idle_timeout`` seconds.
        """
        req = self._command_request(line, namespace, source)
        replies: list[CommandReply] = []
        stream = self.request_stream(self.subjects.node_cmd(node), req, idle_timeout=idle_timeout)
        async with contextlib.aclosing(stream):
            async for item in stream:
                if isinstance(item, ErrorReply):
                    raise RemoteError(item.error, node=item.node or node)
                if isinstance(item, CommandReply):
                    replies.append(item)
        return replies

    async def close(self) -> None:
        """Drain the subscriptions and pending publishes, then close. Idempotent."""
        if self.nc.is_closed:
            return
        try:
            await self.nc.drain()
        except (nats.errors.Error, TimeoutError) as err:
            logger.debug("nats %s: drain failed (%s), closing", self.node, err)
            await _close_quietly(self.nc)


def _netloc(nc: Client, *, scheme: bool = False) -> str:
    url = nc.connected_url
    if url is None:
        return ""
    return f"{url.scheme}://{url.netloc}" if scheme else str(url.netloc)


async def _close_quietly(nc: Client) -> None:
    with contextlib.suppress(nats.errors.Error, OSError):
        await nc.close()


__all__ = ["Bus"]
