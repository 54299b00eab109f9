"""The bus: messages, subjects, codec, the NATS connection and server.

The public face is re-exported here, every name loading on first use: the
one-shot ``megabus -e`` path imports :mod:`megabus.bus.rawclient` and must not
pay for msgspec or nats-py, and code inside guests imports
:mod:`megabus.bus.messages` and the codec without nats-py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from megabus.bus.codec import SCHEMA_HEADER, decode, encode
    from megabus.bus.connection import Bus
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
        SecurityError,
        ServerStartError,
    )
    from megabus.bus.membership import Membership
    from megabus.bus.server import EmbeddedServer, port_open
    from megabus.bus.subjects import Subjects

_LAZY = {
    "SCHEMA_HEADER": "megabus.bus.codec",
    "decode": "megabus.bus.codec",
    "encode": "megabus.bus.codec",
    "AuthorizationError": "megabus.bus.errors",
    "BusConnectError": "megabus.bus.errors",
    "BusDecodeError": "megabus.bus.errors",
    "BusError": "megabus.bus.errors",
    "BusTimeoutError": "megabus.bus.errors",
    "NoRespondersError": "megabus.bus.errors",
    "PayloadTooLargeError": "megabus.bus.errors",
    "PermissionDeniedError": "megabus.bus.errors",
    "RemoteError": "megabus.bus.errors",
    "SecurityError": "megabus.bus.errors",
    "ServerStartError": "megabus.bus.errors",
    "Subjects": "megabus.bus.subjects",
    "Bus": "megabus.bus.connection",
    "Membership": "megabus.bus.membership",
    "EmbeddedServer": "megabus.bus.server",
    "port_open": "megabus.bus.server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "SCHEMA_HEADER",
    "AuthorizationError",
    "Bus",
    "BusConnectError",
    "BusDecodeError",
    "BusError",
    "BusTimeoutError",
    "EmbeddedServer",
    "Membership",
    "NoRespondersError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RemoteError",
    "SecurityError",
    "ServerStartError",
    "Subjects",
    "decode",
    "encode",
    "port_open",
]
