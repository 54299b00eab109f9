"""The bus's exceptions, one tree with one root.

Callers that only care that "the bus failed" catch :class:`BusError`; the
leaves say what went wrong in words a user can act on::

    BusError
     ├── BusDecodeError        a message is not what its subject promises
     ├── BusConnectError       no NATS server of the list could be reached
     ├── BusTimeoutError       nothing arrived within the (idle) timeout
     │                         (also a built-in TimeoutError)
     ├── NoRespondersError     nobody subscribes the request's subject
     ├── PayloadTooLargeError  a message exceeds the server's max payload
     ├── RemoteError           the far side answered with an ErrorReply
     └── ServerStartError      the embedded nats-server did not come up
"""

from __future__ import annotations


class BusError(Exception):
    """Root of every bus error."""


class BusDecodeError(BusError):
    """A message could not be decoded; the text is msgspec's, with the JSON path."""


class BusConnectError(BusError):
    """Could not connect to any of the given NATS servers."""


class BusTimeoutError(BusError, TimeoutError):
    """No message arrived within the timeout."""


class NoRespondersError(BusError):
    """No subscriber serves the subject a request went to."""


class PayloadTooLargeError(BusError):
    """A message is larger than the connected server accepts."""


class RemoteError(BusError):
    """The serving node answered with an :class:`~megabus.bus.messages.ErrorReply`.

    Attributes:
        node: the node that answered (may be empty).
    """

    def __init__(self, message: str, *, node: str = "") -> None:
        super().__init__(message)
        self.node = node


class ServerStartError(BusError):
    """The embedded nats-server failed to start; the text holds its error lines."""


__all__ = [
    "BusConnectError",
    "BusDecodeError",
    "BusError",
    "BusTimeoutError",
    "NoRespondersError",
    "PayloadTooLargeError",
    "RemoteError",
    "ServerStartError",
]
