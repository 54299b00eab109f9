"""Turn bus messages into NATS payloads and back.

A message travels as JSON (readable by any NATS client) with its versioned tag
repeated in the ``Mb-Schema`` header, so a subscriber can route or reject a
message without parsing it. Decoding goes through one cached
``msgspec.json.Decoder`` per target type: building a decoder compiles the
type's schema, which is far slower than using one.

This module imports nothing from nats-py, so code that runs inside guests can
use it.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar, overload

import msgspec

from megabus.bus.errors import BusDecodeError
from megabus.bus.messages import ErrorReply, Message

T = TypeVar("T")

#: Header carrying the message's schema tag, e.g. ``megabus.cmd.v1.request``.
SCHEMA_HEADER = "Mb-Schema"

_encoder = msgspec.json.Encoder()


def schema_of(msg: Message) -> str:
    """The versioned tag of ``msg`` (its ``type`` field on the wire)."""
    return str(type(msg).__struct_config__.tag)


def encode(msg: Message) -> tuple[bytes, dict[str, str]]:
    """Encode ``msg`` as JSON and the headers that go with it."""
    return _encoder.encode(msg), {SCHEMA_HEADER: schema_of(msg)}


def encode_error(error: str, *, node: str = "") -> tuple[bytes, dict[str, str]]:
    """Encode the :class:`ErrorReply` for a request that could not be served."""
    return encode(ErrorReply(node=node, error=error))


@functools.cache
def _decoder(type_: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(type_)


@overload
def decode(data: bytes, type_: type[T]) -> T: ...
@overload
def decode(data: bytes, type_: Any) -> Any: ...
def decode(data: bytes, type_: Any) -> Any:
    """Decode ``data`` as ``type_`` (a message type or a union of them).

    Raises:
        BusDecodeError: ``data`` is not valid JSON or does not match
            ``type_``; the message is msgspec's and names the path, e.g.
            ``Expected `str`, got `int` - at `$.line```.
    """
    try:
        return _decoder(type_).decode(data)
    except msgspec.DecodeError as err:
        raise BusDecodeError(str(err)) from None


__all__ = ["SCHEMA_HEADER", "decode", "encode", "encode_error", "schema_of"]
