"""``Bus``: one nats-py connection with megabus's request helpers on top.

Commands are request-reply with a stream of replies: the node answers with
``CommandWorking`` keep-alives while a command runs and one ``CommandReply``
per batch, the last with ``more=False``. nats-py's ``request()`` resolves on
the first reply only, so :meth:`Bus.request_stream` subscribes its own unique
inbox and applies an *idle* timeout that every message resets; a deadline
would cut off ``shell sleep 600``.

Fan-out over nodes lives above the bus, in :mod:`megabus.handlers.node.fanout`
(the one fan-out: idle timeouts per node, membership watched while waiting).

Security (:mod:`megabus.bus.security`): the connection logs in with
credentials and speaks TLS when asked. The server's refusals are turned into
clear errors at once rather than timeouts: bad or missing credentials and a
failed TLS handshake end :meth:`Bus.connect` on the first refusal (nats-py
itself would retry them for ever), and a request whose publish or reply
subscription the server refuses ends with :class:`PermissionDeniedError` (the
server only says so asynchronously, through the error callback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import AsyncGenerator, Coroutine
from typing import Any, TypeVar

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.nuid import NUID

from megabus.bus.codec import decode, encode
from megabus.bus.errors import (
    AuthorizationError,
    BusConnectError,
    BusDecodeError,
    BusError,
    BusTimeoutError,
    NoRespondersError,
    PayloadTooLargeError,
    PermissionDeniedError,
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
from megabus.bus.security import (
    Credentials,
    TlsFiles,
    is_tls_error,
    refused_text,
    tls_error_text,
)
from megabus.bus.subjects import DEFAULT_PREFIX, MAX_SUBJECT_BYTES, Subjects

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
#: nats-py's text of a permissions violation: ``nats: permissions violation for
#: publish to "subject"`` (or ``subscription to``).
_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"', re.I)


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
        self.user = ""
        #: :meth:`close` has begun.
        self.closing = False
        # Requests waiting for replies, by the subjects the server may refuse
        # them (the request subject, the reply inbox): a refusal wakes them.
        self._waiting: dict[str, set[asyncio.Queue[Msg | BusError]]] = {}
        # One wildcard inbox for every request's replies (nats-py's request()
        # does the same): a subscription per request cost a SUB and an UNSUB
        # on the wire, a subscription task and the server's bookkeeping each time.
        self._inbox: str | None = None  # "_INBOX.<nuid>", subscribed as "<inbox>.*"
        self._replies: dict[str, asyncio.Queue[Msg | BusError]] = {}
        self._nuid = NUID()

    def _refused(self, text: str) -> None:
        """The server refused a publish or a subscription (the error callback's text)."""
        m = _VIOLATION.search(text)
        if m is None:
            return
        op, subject = m.group(1).lower(), m.group(2)
        if self._inbox is not None and subject == f"{self._inbox}.*":
            self._inbox = None  # the next request subscribes again (and hears why)
        who = f"user {self.user!r}" if self.user else "this connection (no credentials)"
        verb = "publish to" if op == "publish" else "subscribe to"
        err = PermissionDeniedError(
            f"permission denied: {who} may not {verb} {subject}", subject=subject
        )
        for queue in self._waiting.get(subject, ()):
            queue.put_nowait(err)

    @classmethod
    async def connect(
        cls,
        urls: list[str],
        *,
        name: str,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 2.0,  # noqa: ASYNC109 - the contract's name; it bounds a retry loop
        credentials: Credentials | None = None,
        tls: TlsFiles | None = None,
    ) -> Bus:
        """Connect to the first reachable server of ``urls``.

        Once connected the client reconnects for ever, trying every server of
        the list (and any the cluster announces).

        Args:
            credentials: the user to log in as; none for a server without authorization.
            tls: certificate files; TLS is spoken whenever the server requires it
                (the system's trust store verifies it when ``tls`` names no CA).

        Raises:
            AuthorizationError: the server refused the credentials (or their absence).
            BusConnectError: no server answered within ``timeout`` seconds per URL,
                or the TLS handshake failed.
            SecurityError: a certificate file is missing or bad.
            ValueError: ``prefix`` is not a valid subject prefix.
        """
        subjects = Subjects(prefix)  # fail on a bad prefix before any I/O
        ssl_context = tls.ssl_context() if tls else None
        nc = Client()
        connected = False
        bus: Bus | None = None
        loop = asyncio.get_running_loop()
        refusal: asyncio.Future[BusConnectError] = loop.create_future()
        where = ", ".join(urls)

        async def on_error(err: Exception) -> None:
            if bus is not None:
                bus._refused(str(err))
            # Refused attempts while connecting are expected; the timeout reports them.
            level = logging.WARNING if connected else logging.DEBUG
            logger.log(level, "nats %s: %s", name, err)
            if not connected and not refusal.done():
                # Retrying cannot help these: end the connect at once.
                if isinstance(err, nats.errors.AuthorizationError) or (
                    "authorization violation" in str(err).lower()
                ):
                    refusal.set_result(
                        AuthorizationError(
                            f"cannot connect to {where}: {refused_text(credentials)}"
                        )
                    )
                elif is_tls_error(err):
                    refusal.set_result(
                        BusConnectError(f"cannot connect to {where}: TLS: {tls_error_text(err)}")
                    )

        async def on_disconnect() -> None:
            # A close we asked for is no news: a program using the client would
            # see the warning on stderr (logging's last-resort handler) each time.
            if connected and not (bus is not None and bus.closing):
                logger.warning("nats %s: disconnected", name)

        async def on_reconnect() -> None:
            logger.info("nats %s: reconnected to %s", name, _netloc(nc))

        budget = timeout * max(1, len(urls))
        connecting = asyncio.ensure_future(
            nc.connect(
                servers=urls,
                name=name,
                connect_timeout=max(1, math.ceil(timeout)),
                reconnect_time_wait=RECONNECT_WAIT,
                max_reconnect_attempts=-1,
                drain_timeout=DRAIN_TIMEOUT,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                user=credentials.user if credentials is not None else None,
                password=credentials.password if credentials is not None else None,
                tls=ssl_context,
            )
        )
        try:
            try:
                either: list[asyncio.Future[Any]] = [connecting, refusal]
                async with asyncio.timeout(budget):
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if not connecting.done():
                    raise refusal.result()
                await connecting  # connected, or raises what nats-py raised
            finally:
                if not connecting.done():
                    connecting.cancel()
                    await asyncio.wait([connecting])
        except (TimeoutError, OSError, nats.errors.Error) as err:
            await _close_quietly(nc)
            detail = str(err) or type(err).__name__
            if isinstance(err, TimeoutError):
                detail = f"no answer within {budget:g}s"
            raise BusConnectError(f"cannot connect to {where}: {detail}") from None
        except BaseException:
            await _close_quietly(nc)
            raise
        connected = True
        logger.debug("nats %s: connected to %s", name, _netloc(nc))
        bus = cls(nc, name=name, prefix=subjects.prefix)
        bus.user = credentials.user if credentials is not None else ""
        return bus

    @property
    def url(self) -> str:
        """The URL of the server this connection is on, or ``""``."""
        return _netloc(self.nc, scheme=True)

    # --- one-way ------------------------------------------------------------

    async def publish(self, subject: str, msg: Message, *, reply: str = "") -> None:
        """Publish ``msg`` on ``subject``.

        Raises:
            PayloadTooLargeError: the encoded message exceeds the server's limit.
            BusError: the subject is longer than :data:`MAX_SUBJECT_BYTES` (a
                server drops a client for it, and nats-py would stay closed).
            BusConnectError: the connection is closed.
        """
        if len(subject) > MAX_SUBJECT_BYTES:
            raise BusError(
                f"subject of {len(subject)} bytes is longer than {MAX_SUBJECT_BYTES}: not sent"
            )
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
            PermissionDeniedError: the server refused the publish (at once, not at the timeout).
            RemoteError: the server answered with an :class:`ErrorReply`.
            BusDecodeError: the reply is neither ``reply_type`` nor an error.
        """
        data, headers = encode(msg)
        try:
            raw = await self._refusable(
                (subject,), self.nc.request(subject, data, timeout=timeout, headers=headers)
            )
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
            PermissionDeniedError: the server refused the request or its reply inbox.
            BusDecodeError: a reply is not a command reply.
        """
        # Replies go through our own queue (not the subscription's) so that a
        # refusal by the server, reported to the error callback, ends the wait.
        queue: asyncio.Queue[Msg | BusError] = asyncio.Queue()
        try:
            wildcard = await self._reply_inbox()
        except nats.errors.ConnectionClosedError:
            raise BusConnectError("the bus connection is closed") from None
        token = self._nuid.next().decode()
        inbox = f"{wildcard[:-1]}{token}"
        self._replies[token] = queue
        watched = (subject, wildcard)
        for key in watched:
            self._waiting.setdefault(key, set()).add(queue)
        try:
            await self.publish(subject, msg, reply=inbox)
            while True:
                try:
                    raw = await asyncio.wait_for(queue.get(), idle_timeout)
                except TimeoutError:
                    if self.nc.is_closed:
                        raise BusConnectError("the bus connection is closed") from None
                    raise BusTimeoutError(
                        f"no reply from {subject} for {idle_timeout:g}s"
                    ) from None
                if isinstance(raw, BusError):
                    raise raw
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
            self._unwatch(watched, queue)
            self._replies.pop(token, None)

    async def _reply_inbox(self) -> str:
        """The wildcard subject every request's replies arrive on, subscribed once."""
        if self._inbox is None:
            inbox = self.nc.new_inbox()
            self._inbox = inbox
            try:
                await self.nc.subscribe(f"{inbox}.*", cb=self._on_reply)
            except BaseException:
                self._inbox = None
                raise
        return f"{self._inbox}.*"

    async def _on_reply(self, msg: Msg) -> None:
        # the token after the last dot names the request (several wildcard
        # subscriptions may exist after a refusal: they all route here)
        queue = self._replies.get(msg.subject.rpartition(".")[2])
        if queue is not None:
            queue.put_nowait(msg)

    async def _refusable(self, keys: tuple[str, ...], call: Coroutine[Any, Any, Msg]) -> Msg:
        """``call``'s result, or the server's refusal of a subject of ``keys`` if that comes first.

        The server reports a refused publish only through the error callback;
        without this a request would wait out its whole timeout.
        """
        queue: asyncio.Queue[Msg | BusError] = asyncio.Queue()
        for key in keys:
            self._waiting.setdefault(key, set()).add(queue)
        work = asyncio.ensure_future(call)
        refusal = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait({work, refusal}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._unwatch(keys, queue)
            for task in (work, refusal):
                if not task.done():
                    task.cancel()
            await asyncio.gather(work, refusal, return_exceptions=True)
        if work.done() and not work.cancelled():
            return work.result()  # raises what the request raised
        err = refusal.result()
        assert isinstance(err, BusError)
        raise err

    def _unwatch(self, keys: tuple[str, ...], queue: asyncio.Queue[Msg | BusError]) -> None:
        for key in keys:
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.discard(queue)
                if not waiting:
                    del self._waiting[key]

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
        """Drain the subscriptions and pending publishes, then close. Idempotent.

        Requests still waiting for replies end with :class:`BusConnectError`.
        """
        if self.nc.is_closed:
            return
        self.closing = True
        try:
            await self.nc.drain()
        except (nats.errors.Error, TimeoutError) as err:
            logger.debug("nats %s: drain failed (%s), closing", self.node, err)
            await _close_quietly(self.nc)
        for queue in {q for waiting in self._waiting.values() for q in waiting}:
            queue.put_nowait(BusConnectError("the bus connection is closed"))


def _netloc(nc: Client, *, scheme: bool = False) -> str:
    url = nc.connected_url
    if url is None:
        return ""
    return f"{url.scheme}://{url.netloc}" if scheme else str(url.netloc)


async def _close_quietly(nc: Client) -> None:
    # uvloop raises RuntimeError (not OSError) for a write to a transport the
    # server already closed, e.g. when a terminal's ^C stopped both at once
    with contextlib.suppress(nats.errors.Error, OSError, RuntimeError):
        await nc.close()


__all__ = ["Bus"]
