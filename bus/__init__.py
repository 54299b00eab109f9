"""The bus: messages, subjects, codec, the NATS connection and server.

The public face is re-exported here. Names that need nats-py (``Bus``,
``Membership``, ``EmbeddedServer``) load on first use, so code inside guests
can import :mod:`megabus.bus.messages` and the codec without nats-py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from megabus.bus.codec import SCHEMA_HEADER, decode, encode
from megabus.bus.errors import (
    BusConnectError,
    BusDecodeError,
    BusError,
    BusTimeoutError,
    NoRespondersError,
    PayloadTooLargeError,
    RemoteError,
    ServerStartError,
)
from megabus.bus.subjects import Subjects

if TYPE_CHECKING:
    from megabus.bus.connection import Bus, FanoutResult
    from megabus.bus.membership import Membership
    from megabus.bus.server import EmbeddedServer, port_open

_LAZY = {
    "Bus": "megabus.bus.connection",
    "FanoutResult": "megabus.bus.connection",
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
    "Bus",
    "BusConnectError",
    "BusDecodeError",
    "BusError",
    "BusTimeoutError",
    "EmbeddedServer",
    "FanoutResult",
    "Membership",
    "NoRespondersError",
    "PayloadTooLargeError",
    "RemoteError",
    "ServerStartError",
    "Subjects",
    "decode",
    "encode",
    "port_open",
]
