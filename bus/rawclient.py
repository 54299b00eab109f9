"""A small synchronous NATS client for the one-shot ``megabus -e`` path.

nats-py plus asyncio cost well over 100 ms to import, more than the whole
budget of a one-shot command, so this module speaks the NATS text protocol
with the standard library only (``socket`` and ``json``). It does exactly
what a command client needs: connect (trying each URL in turn), log in,
subscribe to one private inbox, publish a request with headers, and read the
replies of a command stream until its last batch. It is not a general NATS
client: no JetStream, no reconnection in the background.

TLS is NATS's usual upgrade: the server sends its ``INFO`` in the clear, and
when that says ``tls_required`` (or the URL is ``tls://``) the client wraps the
socket with Python's ``ssl`` before its ``CONNECT``; ``ssl`` is imported only
then, so plain connections do not pay for it. Credentials (user and password)
go in the ``CONNECT`` line (see :mod:`megabus.bus.security` for why not nkeys).
The server's refusals become errors a user can act on: a refused login
(:class:`AuthorizationError`), a publish or subscription the role may not make
(:class:`PermissionDeniedError`), a request over the server's payload limit
(:class:`PayloadTooLargeError`, checked before sending).

Protocol reference: https://docs.nats.io/reference/reference-protocols/nats-protocol
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from urllib.parse import unquote

from megabus.bus.errors import AuthorizationError as BusAuthorizationError
from megabus.bus.errors import BusError
from megabus.bus.errors import NoRespondersError as BusNoRespondersError
from megabus.bus.errors import PayloadTooLargeError as BusPayloadTooLargeError
from megabus.bus.errors import PermissionDeniedError as BusPermissionDeniedError
from megabus.bus.security import Credentials, TlsFiles, is_tls_error, refused_text, tls_error_text

# ``typing`` costs the one-shot path a few ms; the names are for the type
# checker only (mypy treats any ``TYPE_CHECKING`` name as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from typing import Any


#: Type tags of the command stream (see ``megabus.bus.messages``); repeated
#: here so that this module never imports msgspec.
REPLY = "megabus.cmd.v1.reply"
WORKING = "megabus.cmd.v1.working"
ERROR = "megabus.v1.error"

_CRLF = b"\r\n"
_MAX_LINE = 64 * 1024


class RawClientError(BusError):
    """Base class of everything this client raises; the message is for users."""


class ConnectError(RawClientError):
    """No server of the list could be reached, or one refused us."""


class NoRespondersError(RawClientError, BusNoRespondersError):
    """Nobody subscribes to the subject (NATS status 503)."""

    def __init__(self, subject: str) -> None:
        super().__init__(f"no responders on {subject}")
        self.subject = subject


class IdleTimeoutError(RawClientError):
    """The stream went quiet for longer than the idle timeout."""

    def __init__(self, subject: str, idle: float, got_any: bool) -> None:
        what = "stopped answering" if got_any else "did not answer"
        super().__init__(f"{subject} {what} within {idle:g}s")
        self.subject = subject
        self.got_any = got_any


class ServerError(RawClientError):
    """The server sent ``-ERR`` or closed the connection."""


class AuthorizationError(ConnectError, BusAuthorizationError):
    """The server refused our credentials, or that we came without any."""


class PermissionDeniedError(RawClientError, BusPermissionDeniedError):
    """The server refused a publish or subscription to this connection's user."""


class PayloadTooLargeError(RawClientError, BusPayloadTooLargeError):
    """A request larger than the server's ``max_payload``; nothing was sent."""


#: ``-ERR 'Permissions Violation for Publish to "subject"'`` (or ``Subscription to``).
_VIOLATION = b"Permissions Violation for "


def parse_url(url: str) -> tuple[str, int, dict[str, str]]:
    """Split ``nats://[user:pass@|token@]host[:port]`` into host, port and auth fields.

    Raises:
        ConnectError: the URL is not a plain ``nats://`` URL.
    """
    rest = url.strip()
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        if scheme not in ("nats", "tcp", "tls"):
            raise ConnectError(
                f"unsupported URL scheme in {url!r}: only nats:// and tls:// are supported"
            )
    rest = rest.split("/", 1)[0]
    auth: dict[str, str] = {}
    if "@" in rest:
        cred, rest = rest.rsplit("@", 1)
        if ":" in cred:
            user, password = cred.split(":", 1)
            auth = {"user": unquote(user), "pass": unquote(password)}
        elif cred:
            auth = {"auth_token": unquote(cred)}
    host, port = rest, 4222
    if rest.startswith("["):  # [ipv6]:port
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = _port(tail[1:], url)
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
        port = _port(port_text, url)
    if not host:
        raise ConnectError(f"invalid NATS URL {url!r}: no host")
    return host, port, auth


def _port(text: str, url: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ConnectError(f"invalid NATS URL {url!r}: bad port {text!r}") from None
    if not 0 < port < 65536:
        raise ConnectError(f"invalid NATS URL {url!r}: bad port {port}")
    return port


class RawClient:
    """One NATS connection with one wildcard inbox for request replies.

    Use :meth:`connect`, then :meth:`request_stream` any number of times (one
    at a time), then :meth:`close` (or use it as a context manager).
    """

    def __init__(self, sock: socket.socket, url: str, info: dict[str, Any], user: str = "") -> None:
        self.url = url
        self.info = info
        self.user = user
        self._sock = sock
        #: Whether the connection speaks TLS.
        self.secure = False
        # What a non-blocking read raises when nothing is there (TLS adds its own).
        self._would_block: tuple[type[BaseException], ...] = (BlockingIOError,)
        self._buf = bytearray()
        # One wildcard subscription serves every request of this connection;
        # each request gets its own last token so late replies of an earlier
        # request (after a timeout) are told apart and dropped.
        self._inbox = f"_INBOX.{os.urandom(12).hex()}"
        self._seq = 0
        self._sid = "1"
        self._subscribed = False

    # --- connecting -----------------------------------------------------------

    @classmethod
    def connect(
        cls,
        urls: list[str] | str,
        *,
        timeout: float = 2.0,
        name: str = "megabus-cli",
        credentials: Credentials | None = None,
        tls: TlsFiles | None = None,
    ) -> RawClient:
        """Connect to the first server of ``urls`` (a list or comma-separated) that answers.

        The handshake (INFO, TLS when the server requires it, CONNECT,
        PING/PONG) is finished before returning, so a bad password or
        certificate is reported here.

        Args:
            credentials: the user to log in as (over any ``user:pass@`` of a URL).
            tls: certificate files; without them a TLS server is verified
                against the system's trust store.

        Raises:
            AuthorizationError: a server refused the login (no other URL is tried:
                the servers of one cluster share their users).
            ConnectError: no URL worked; the message names each URL and why.
            SecurityError: a certificate file is missing or bad.
        """
        if isinstance(urls, str):
            urls = [u for u in urls.split(",") if u.strip()]
        if not urls:
            raise ConnectError("no NATS server URL given")
        failures: list[str] = []
        for url in urls:
            try:
                return cls._connect_one(url.strip(), timeout, name, credentials, tls)
            except AuthorizationError as err:
                raise AuthorizationError(f"{url.strip()}: {err}") from None
            except (OSError, RawClientError) as err:
                failures.append(f"{url.strip()}: {_reason(err)}")
        raise ConnectError("cannot connect to NATS: " + "; ".join(failures))

    @classmethod
    def _connect_one(
        cls,
        url: str,
        timeout: float,
        name: str,
        credentials: Credentials | None,
        tls: TlsFiles | None,
    ) -> RawClient:
        host, port, auth = parse_url(url)
        if credentials is not None:
            auth = {"user": credentials.user, "pass": credentials.password}
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = cls(sock, url, {}, auth.get("user", ""))
            deadline = time.monotonic() + timeout
            line = client._read_line(deadline)
            if not line.startswith(b"INFO "):
                raise ConnectError(f"not a NATS server (got {line[:40]!r})")
            client.info = json.loads(line[5:])
            if client.info.get("tls_required") or url.strip().startswith("tls://"):
                if not (client.info.get("tls_required") or client.info.get("tls_available")):
                    raise ConnectError("the server does not offer TLS (URL tls://)")
                sock = client._start_tls(host, tls, deadline)
            connect: dict[str, Any] = {
                "verbose": False,
                "pedantic": False,
                "headers": True,
                "no_responders": True,
                "lang": "python-raw",
                "version": "0.1",
                "protocol": 1,
                "name": name,
                **auth,
            }
            try:
                client._send(b"CONNECT " + json.dumps(connect).encode() + _CRLF + b"PING" + _CRLF)
                client._await_pong(time.monotonic() + timeout)
            except ServerError as err:
                if "authorization violation" in str(err).lower():
                    raise AuthorizationError(refused_text(credentials)) from None
                if client.secure:
                    # Over TLS a server checks our certificate after the
                    # handshake, and says so by ending the session.
                    cause = err.__cause__
                    why = tls_error_text(cause) if cause is not None else "session closed"
                    raise ConnectError(
                        f"TLS: the server ended the session ({why}): it needs a client "
                        "certificate signed by a CA it trusts (-tls-cert, -tls-key)"
                    ) from None
                raise
            return client
        except BaseException:
            sock.close()
            raise

    def _start_tls(self, host: str, tls: TlsFiles | None, deadline: float) -> socket.socket:
        """Wrap the socket in TLS (after the server's INFO, as NATS does); the new socket."""
        import ssl

        ctx: ssl.SSLContext = tls.ssl_context() if tls else ssl.create_default_context()
        self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            self._sock = ctx.wrap_socket(self._sock, server_hostname=host)
        except ssl.SSLError as err:
            raise ConnectError(f"TLS: {tls_error_text(err)}") from None
        self._would_block = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
        self.secure = True
        return self._sock

    def _await_pong(self, deadline: float) -> None:
        while True:
            line = self._read_line(deadline)
            if line == b"PONG":
                return
            if line == b"PING":
                self._send(b"PONG" + _CRLF)
            elif line.startswith(b"-ERR"):
                raise ServerError(_err_text(line))
            # +OK and INFO updates need no answer

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def alive(self) -> bool:
        """Answer pending server PINGs without blocking; False when the server hung up.

        An interactive shell calls this before each command, since the
        server drops a client that leaves its PINGs unanswered for long.
        """
        try:
            self._sock.setblocking(False)
            try:
                while True:
                    chunk = self._sock.recv(65536)
                    if not chunk:
                        return False
                    self._buf += chunk
            except self._would_block:
                pass
            finally:
                self._sock.setblocking(True)
            while (end := self._buf.find(_CRLF)) >= 0 and bytes(self._buf[:4]) in (
                b"PING",
                b"PONG",
            ):
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                if line == b"PING":
                    self._send(b"PONG" + _CRLF)
            return True
        except OSError:
            return False

    # --- requests ---------------------------------------------------------------

    def request_stream(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None = None,
        idle_timeout: float = 10.0,
    ) -> Iterator[dict[str, Any]]:
        """Publish a request and yield its decoded replies until the last one.

        Yields every ``megabus.cmd.v1.reply`` (the last has ``more`` false)
        and a final ``megabus.v1.error``; ``megabus.cmd.v1.working``
        keep-alives only reset the idle timer. Replies that are not JSON
        objects end the stream with a :class:`ServerError`.

        Raises:
            NoRespondersError: nobody serves ``subject``.
            IdleTimeoutError: no message for ``idle_timeout`` seconds.
            PermissionDeniedError: this user may not publish to ``subject`` or
                receive replies.
            PayloadTooLargeError: the request is over the server's limit (not sent).
            ServerError: the server sent -ERR or closed the connection.
        """
        hdr = b"NATS/1.0\r\n"
        for key, value in (headers or {}).items():
            hdr += f"{key}: {value}".encode() + _CRLF
        hdr += _CRLF
        total = len(hdr) + len(payload)
        limit = self.info.get("max_payload")
        if isinstance(limit, int) and total > limit:
            # Checked before anything is queued: the server would drop the
            # whole connection for it, and the subscription must still go out.
            raise PayloadTooLargeError(
                f"request of {total} bytes exceeds the server's max payload of {limit} bytes"
            )
        self._seq += 1
        reply = f"{self._inbox}.{self._seq}"
        out = bytearray()
        if not self._subscribed:
            out += f"SUB {self._inbox}.* {self._sid}".encode() + _CRLF
            self._subscribed = True
        out += f"HPUB {subject} {reply} {len(hdr)} {total}".encode() + _CRLF
        out += hdr + payload + _CRLF
        self._send(bytes(out))

        got_any = False
        while True:
            deadline = time.monotonic() + idle_timeout
            msg = self._next_msg(reply, deadline)
            if msg is None:
                raise IdleTimeoutError(subject, idle_timeout, got_any)
            status, body = msg
            if status == "503":
                raise NoRespondersError(subject)
            if status and not body:
                continue  # other status-only messages (e.g. 100 idle heartbeat)
            got_any = True
            try:
                decoded = json.loads(body)
            except ValueError:
                raise ServerError(f"undecodable reply on {subject}: {body[:80]!r}") from None
            if not isinstance(decoded, dict):
                raise ServerError(f"unexpected reply on {subject}: {body[:80]!r}")
            kind = decoded.get("type")
            if kind == WORKING:
                continue
            yield decoded
            if kind == ERROR or (kind == REPLY and not decoded.get("more", False)):
                return

    # --- framing ------------------------------------------------------------------

    def _next_msg(self, reply: str, deadline: float) -> tuple[str, bytes] | None:
        """The next message for ``reply`` as (status, payload); None at the deadline."""
        while True:
            try:
                line = self._read_line(deadline)
            except TimeoutError:
                return None
            if line.startswith(b"MSG ") or line.startswith(b"HMSG "):
                has_headers = line.startswith(b"H")
                parts = line.split()
                size = int(parts[-1])
                hdr_len = int(parts[-2]) if has_headers else 0
                try:
                    data = self._read_exact(size + 2, deadline)[:size]
                except TimeoutError:
                    return None
                if parts[1].decode() != reply:
                    continue  # a late reply to an earlier request
                status = _status(data[:hdr_len]) if has_headers else ""
                return status, data[hdr_len:]
            if line == b"PING":
                self._send(b"PONG" + _CRLF)
            elif line.startswith(b"-ERR"):
                raise self._refusal(line)
            # +OK, PONG and INFO need nothing

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as err:
            raise ServerError(f"connection to {self.url} lost: {_reason(err)}") from err

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self._sock.settimeout(left)
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:
            raise
        except OSError as err:
            raise ServerError(f"connection to {self.url} lost: {_reason(err)}") from err
        if not chunk:
            raise ServerError(f"connection to {self.url} closed by the server")
        self._buf += chunk

    def _read_line(self, deadline: float) -> bytes:
        while (end := self._buf.find(_CRLF)) < 0:
            if len(self._buf) > _MAX_LINE:
                raise ServerError("protocol line too long")
            self._fill(deadline)
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _read_exact(self, size: int, deadline: float) -> bytes:
        while len(self._buf) < size:
            self._fill(deadline)
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def _refusal(self, line: bytes) -> RawClientError:
        """The error of a ``-ERR`` line: a permission refusal in words, else the server's text."""
        at = line.find(_VIOLATION)
        if at < 0:
            return ServerError(_err_text(line))
        what = line[at + len(_VIOLATION) :].decode(errors="replace").strip("' ")
        op, _, subject = what.partition(" to ")
        subject = subject.strip('"')
        verb = "publish to" if op.lower() == "publish" else "subscribe to"
        who = f"user {self.user!r}" if self.user else "a client without credentials"
        return PermissionDeniedError(
            f"permission denied: {who} may not {verb} {subject}", subject=subject
        )


def _status(header_block: bytes) -> str:
    """The status code of a header block's first line (``NATS/1.0 503``), or ""."""
    first = header_block.split(_CRLF, 1)[0].split()
    return first[1].decode() if len(first) > 1 else ""


def _err_text(line: bytes) -> str:
    text = line[4:].strip().strip(b"'").decode(errors="replace")
    return f"NATS server error: {text}"


def _reason(err: BaseException) -> str:
    if isinstance(err, RawClientError):
        return str(err)
    if is_tls_error(err):
        return f"TLS: {tls_error_text(err)}"
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    return str(err) or type(err).__name__
