"""Messages survive the wire, and bad payloads fail with a clear message."""

from __future__ import annotations

import pytest

from megabus.bus.codec import SCHEMA_HEADER, decode, encode
from megabus.bus.errors import BusDecodeError, BusError
from megabus.bus.messages import (
    CommandReply,
    CommandRequest,
    CommandStream,
    CommandWorking,
    ErrorReply,
    Heartbeat,
    Message,
    Response,
)

SAMPLES: list[Message] = [
    CommandRequest(line="vm info", namespace="foo", source="meshage", client="cli"),
    CommandReply(
        node="n1",
        responses=[Response(host="n1", header=["name"], tabular=[["vm0"]]), Response(error="x")],
        rendered="name\nvm0\n",
        more=True,
    ),
    CommandWorking(node="n1", elapsed=4.5),
    ErrorReply(node="n1", error="boom"),
    Heartbeat(node="n1", version="0.1.0", uptime=3.0, interval=2.0, load=0.5, cpus=2),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_keeps_every_field(msg: Message) -> None:
    data, _ = encode(msg)
    assert decode(data, type(msg)) == msg


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_schema_header_names_the_versioned_tag(msg: Message) -> None:
    _, headers = encode(msg)
    assert headers[SCHEMA_HEADER] == type(msg).__struct_config__.tag
    assert headers[SCHEMA_HEADER].startswith("megabus.")


def test_union_decodes_to_the_tagged_member() -> None:
    data, _ = encode(CommandWorking(node="a", elapsed=1.0))
    assert decode(data, CommandStream) == CommandWorking(node="a", elapsed=1.0)


def test_unknown_fields_are_ignored() -> None:
    data = b'{"type":"megabus.cmd.v1.request","line":"help","from_the_future":1}'
    assert decode(data, CommandRequest) == CommandRequest(line="help")


def test_malformed_json_is_a_decode_error() -> None:
    with pytest.raises(BusDecodeError, match="malformed"):
        decode(b"{not json", CommandRequest)


def test_wrong_field_type_names_the_path() -> None:
    with pytest.raises(BusDecodeError, match=r"\$\.line"):
        decode(b'{"type":"megabus.cmd.v1.request","line":42}', CommandRequest)


def test_wrong_message_type_names_the_tag() -> None:
    data, _ = encode(CommandReply(node="n1"))
    with pytest.raises(BusDecodeError, match=r"\$\.type"):
        decode(data, CommandRequest)


def test_garbage_bytes_are_a_bus_error() -> None:
    with pytest.raises(BusError):
        decode(b"\xff\xfe" * 1000, CommandRequest)
