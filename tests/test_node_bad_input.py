"""Bad input of every kind gets a clear error and the node keeps serving.

These run the real node with the real dispatcher on a real nats-server, as a
user's `megabus -e` would reach it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from megabus.bus.codec import decode
from megabus.bus.connection import Bus
from megabus.bus.errors import RemoteError
from megabus.bus.messages import CommandReply, ErrorReply
from megabus.config.settings import Settings
from megabus.handlers.main import Node


@pytest.fixture
async def node(nats_url: str, tmp_path: Path) -> AsyncIterator[Node]:
    settings = Settings(name="n1", nats=[nats_url], base=str(tmp_path / "base"))
    n = Node(settings)
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


async def errors_of(client: Bus, line: str) -> list[str]:
    replies = await client.command("n1", line)
    return [r.error for rep in replies for r in rep.responses if r.error]


async def still_serving(client: Bus) -> None:
    replies = await client.command("n1", "echo still here")
    assert replies[-1].responses[0].response == "still here"


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("definitelynotacommand", "invalid command: `definitelynotacommand`"),
        # `vlans` and `vm` both start with "v": an ambiguous prefix matches nothing
        ("v", "invalid command: `v`"),
        ('echo "unterminated', 'missing terminal "'),
        ("echo bad\\qescape", "unexpected escaped character: q"),
        ("vm config memory lots", 'strconv.ParseUint: parsing "lots": invalid syntax'),
        (".filter nosuchcol=1 vlans", "no such column `nosuchcol`"),
        (".columns nosuch namespace", "no such column `nosuch`"),
    ],
)
async def test_bad_commands_get_minimega_errors(
    node: Node, client: Bus, line: str, error: str
) -> None:
    errs = await errors_of(client, line)
    assert errs == ([error] if error else [])
    await still_serving(client)


async def test_malformed_json_on_the_node_subject_gets_an_error_reply(
    node: Node, client: Bus
) -> None:
    subject = client.subjects.node_cmd("n1")
    for payload in (b"{not json", b'{"type":"megabus.cmd.v1.request"}', b"\xff" * 1000):
        msg = await client.nc.request(subject, payload, timeout=5)
        reply = decode(msg.data, ErrorReply)
        assert reply.error
    await still_serving(client)


async def test_a_ten_megabyte_line_gets_a_clear_error(node: Node, client: Bus) -> None:
    # echoed back, the reply would carry the text twice (responses and
    # rendered): more than the server takes, which the node says instead of
    # going silent
    with pytest.raises(RemoteError, match="reply too large"):
        await client.command("n1", "echo " + "x" * (10 * 1024 * 1024), idle_timeout=60)
    errs = await errors_of(client, "nosuch " + "y" * (10 * 1024 * 1024))
    assert len(errs) == 1
    assert errs[0].startswith("invalid command: `nosuch yyy")
    await still_serving(client)


ODD = ["with space", "dots.in.it", "star*gt>", "ünïcødé", "semi;colon", "$(rm -rf /)"]


@pytest.mark.parametrize("name", ODD)
async def test_odd_alias_names_work(node: Node, client: Bus, name: str) -> None:
    quoted = json.dumps(name, ensure_ascii=False)
    assert await errors_of(client, f"namespace odd vlans add {quoted} 555") == []
    replies = await client.command("n1", "namespace odd vlans")
    assert replies[-1].responses[0].tabular == [[name, "555"]]
    assert await errors_of(client, "clear namespace odd") == []
    await still_serving(client)


@pytest.mark.parametrize("name", [n for n in ODD if n != "dots.in.it"])
async def test_odd_namespace_names_are_refused_as_2_8_refuses_them(
    node: Node, client: Bus, name: str
) -> None:
    errs = await errors_of(client, f"namespace {json.dumps(name, ensure_ascii=False)}")
    assert errs == ["invalid name; must only include letters, numbers, hyphens and underscores"]
    await still_serving(client)


async def test_an_unknown_request_type_is_refused_and_named(node: Node, client: Bus) -> None:
    subject = client.subjects.node_cmd("n1")
    body = json.dumps({"type": "megabus.cmd.v9.request", "line": "echo hi"}).encode()
    msg = await client.nc.request(subject, body, timeout=5)
    reply = decode(msg.data, ErrorReply)
    assert "megabus.cmd.v9.request" in reply.error
    # a good request right after is served normally
    good = await client.command("n1", "echo ok")
    assert isinstance(good[-1], CommandReply)
