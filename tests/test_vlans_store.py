"""The VLAN store against a real nats-server: allocation races, sharing, ranges, odd names."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from megabus.bus.errors import CommandError
from megabus.bus.messages import VlanAliasEvent
from megabus.bus.server import EmbeddedServer
from megabus.bus.subjects import Subjects
from megabus.handlers.net._vlanstore import VlanStore, decode_token, encode_token


@dataclass
class FakeBusless:
    """The four attributes of ``Bus`` the store uses, over a real connection."""

    nc: Client
    js: JetStreamContext
    subjects: Subjects
    node: str


@pytest.fixture
async def vlan_nats_url(tmp_path: Path) -> AsyncIterator[str]:
    async with EmbeddedServer(tmp_path / "js", port=0) as server:
        yield server.client_url


OpenStore = Callable[..., Awaitable[VlanStore]]


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:8]


@pytest.fixture
async def open_store(vlan_nats_url: str, prefix: str) -> AsyncIterator[OpenStore]:
    clients: list[Client] = []
    stores: list[VlanStore] = []

    async def make(node: str = "n1", default: tuple[int, int] = (101, 4096)) -> VlanStore:
        nc = await nats.connect(vlan_nats_url)
        clients.append(nc)
        bus = FakeBusless(nc, nc.jetstream(), Subjects(prefix), node)
        store = await VlanStore.open(bus, default)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()
    for nc in clients:
        await nc.close()


async def eventually(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.02)
    assert check()


def test_token_encoding_round_trips_any_text() -> None:
    for text in ["", "a", "a.b", "a b", "*", ">", "_x_", "ns//A", "día", "🙂", "x=y/z"]:
        token = encode_token(text)
        assert all(c.isalnum() or c in "-_=" for c in token)
        assert "." not in token
        assert decode_token(token) == text
    assert encode_token("a.b") != encode_token("a b")


async def test_two_nodes_allocating_200_aliases_at_once_never_share_a_vlan(
    open_store: OpenStore,
) -> None:
    a = await open_store("a")
    b = await open_store("b")
    names = [f"net{i}" for i in range(200)]

    async def run(store: VlanStore, order: list[str]) -> dict[str, int]:
        return {name: await store.lookup("minimega", name) for name in order}

    got_a, got_b = await asyncio.gather(run(a, names), run(b, list(reversed(names))))
    # each alias has one VLAN, whichever node asked
    assert got_a == got_b
    vlans = list(got_a.values())
    assert len(set(vlans)) == 200
    assert all(101 <= v < 4096 for v in vlans)
    await eventually(lambda: len(a.aliases("minimega")) == len(b.aliases("minimega")) == 200)


async def test_an_alias_added_by_hand_on_one_node_shows_on_the_other(
    open_store: OpenStore,
) -> None:
    a = await open_store("a")
    b = await open_store("b")
    await a.add_alias("foo", "DMZ", 300)
    await eventually(lambda: b.print_vlan("foo", 300) == "DMZ (300)")
    assert b.print_vlan("bar", 300) == "foo//DMZ (300)"
    assert b.alias_of("foo", 300) == "DMZ"
    assert await b.lookup("bar", "foo//DMZ") == 300
    with pytest.raises(CommandError, match=r"^alias already in use$"):
        await b.add_alias("foo", "DMZ", 301)
    with pytest.raises(CommandError, match=r"^vlan already in use$"):
        await b.add_alias("foo", "OTHER", 300)


async def test_each_change_is_published_as_an_event(
    open_store: OpenStore, vlan_nats_url: str, prefix: str
) -> None:
    a = await open_store("a")
    got: list[VlanAliasEvent] = []
    nc = await nats.connect(vlan_nats_url)

    async def keep(msg: Msg) -> None:
        got.append(msgspec.json.decode(msg.data, type=VlanAliasEvent))

    sub = await nc.subscribe(Subjects(prefix).vlans("foo"), cb=keep)
    vlan = await a.lookup("foo", "A")
    await eventually(lambda: len(got) == 1)
    await sub.unsubscribe()
    await nc.close()
    assert (got[0].namespace, got[0].action, got[0].alias, got[0].vlan) == ("foo", "add", "A", vlan)
    assert got[0].node == "a"


async def test_allocation_follows_2_8_rules(open_store: OpenStore) -> None:
    s = await open_store()
    assert await s.lookup("minimega", "101") == 101  # a number is used as is...
    assert s.blacklisted() == [101]  # ...and blacklisted
    assert await s.lookup("minimega", "A") == 102
    assert await s.lookup("minimega", "B") == 103
    assert await s.lookup("minimega", "A") == 102
    assert s.print_vlan("minimega", 102) == "A (102)"
    assert s.print_vlan("minimega", 101) == "101"
    assert await s.lookup("foo", "A") == 104
    assert await s.lookup("bar", "minimega//A") == 102
    assert s.print_vlan("bar", 102) == "minimega//A (102)"
    for bad in ["4096", "-1", "+5000"]:
        with pytest.raises(CommandError, match=r"^invalid VLAN \(0 <= vlan < 4096\)$"):
            await s.lookup("minimega", bad)
    assert await s.lookup("minimega", "+7") == 7


async def test_ranges_overlap_and_run_out(open_store: OpenStore) -> None:
    s = await open_store()
    with pytest.raises(CommandError, match=r"^expected min > max$"):
        await s.set_range("foo", 130, 120)
    await s.set_range("foo", 120, 122)
    with pytest.raises(CommandError, match=r"^range overlaps with another namespace: foo$"):
        await s.set_range("bar", 100, 125)
    assert await s.lookup("foo", "x") == 120
    assert await s.lookup("foo", "y") == 121
    with pytest.raises(CommandError, match=r"^out of VLANs$"):
        await s.lookup("foo", "z")
    assert s.ranges()["foo"].next == 121
    with pytest.raises(CommandError, match=r"^range overlaps with another namespace: foo$"):
        await s.set_range("", 119, 130)
    # the global range skips a namespace's reserved VLANs
    await s.set_range("baz", 102, 104)
    assert await s.lookup("minimega", "g") == 101
    assert await s.lookup("minimega", "h") == 104
    await s.delete("foo", "")
    assert s.namespace_range("foo") is None
    assert s.aliases("foo") == []


async def test_clear_all_restores_the_configured_default_range(open_store: OpenStore) -> None:
    s = await open_store(default=(500, 600))
    assert await s.lookup("minimega", "A") == 500
    await s.set_range("", 200, 300)
    assert await s.lookup("minimega", "B") == 200
    await s.blacklist(501)
    await s.clear_all()
    assert s.aliases("minimega") == []
    assert s.blacklisted() == []
    assert s.global_range() == (500, 600)
    assert await s.lookup("minimega", "C") == 500


async def test_clear_all_on_one_node_clears_every_node(open_store: OpenStore) -> None:
    a = await open_store("a")
    b = await open_store("b", default=(700, 800))
    await a.lookup("minimega", "A")
    await b.clear_all()
    await eventually(lambda: a.aliases("minimega") == [])
    assert await b.lookup("minimega", "A") == 700


@pytest.mark.parametrize(
    ("namespace", "alias"),
    [
        ("my ns", "a b"),
        ("x.y", "a.b.c"),
        ("*", ">"),
        ("día", "réseau🙂"),
        ("ns", "a//b"),
        ("_5F", "_"),
    ],
)
async def test_odd_characters_in_names_work(
    open_store: OpenStore, namespace: str, alias: str
) -> None:
    a = await open_store("a")
    b = await open_store("b")
    vlan = await a.lookup(namespace, alias)
    await eventually(lambda: b.alias_of(namespace, vlan) is not None)
    # `a//b` inside ns means namespace a, alias b, as 2.8 parses it
    expect = alias if "//" not in alias else alias.split("//", 1)[1]
    assert b.aliases(namespace if "//" not in alias else alias.split("//", 1)[0]) == [
        (expect, vlan)
    ]
    assert await b.lookup(namespace, alias) == vlan


async def test_empty_alias_is_a_clear_error(open_store: OpenStore) -> None:
    s = await open_store()
    with pytest.raises(CommandError, match="invalid VLAN alias"):
        await s.lookup("foo", "bar//")
    with pytest.raises(CommandError, match="invalid VLAN alias"):
        await s.lookup("foo", "")


async def test_clear_vlans_prefix_deletes_matching_aliases_only(open_store: OpenStore) -> None:
    s = await open_store()
    await s.lookup("foo", "web1")
    await s.lookup("foo", "web2")
    db = await s.lookup("foo", "db")
    await s.set_range("foo", 200, 210)
    await s.delete("foo", "web")
    assert s.aliases("foo") == [("db", db)]
    assert s.namespace_range("foo") == (200, 210)
    # the freed VLANs can be handed out again
    assert await s.lookup("bar", "x") == 101


async def test_allocations_after_clear_cost_what_they_cost_on_a_fresh_bucket(
    open_store: OpenStore, vlan_nats_url: str
) -> None:
    # After `clear vlans` every key is a delete marker. Creating one again must
    # stay one conditional put: nats-py's create() would first be refused, then
    # read the marker back, then put (the "twice as slow for good" bug).
    store = await open_store()
    for i in range(5):
        await store.lookup("minimega", f"a{i}")
    await store.clear_all()
    spy = await nats.connect(vlan_nats_url)
    reads: list[str] = []

    async def seen(msg: Msg) -> None:
        if ".MSG.GET." in msg.subject or ".DIRECT.GET." in msg.subject:
            reads.append(msg.subject)

    try:
        await spy.subscribe("$JS.API.>", cb=seen)
        await spy.flush()
        for i in range(5):
            assert await store.lookup("minimega", f"a{i}") == 101 + i
        await spy.flush()
        await asyncio.sleep(0.2)  # let the spy's last messages arrive
    finally:
        await spy.close()
    assert reads == []
    assert [store.vlan_of("minimega", f"a{i}") for i in range(5)] == [101, 102, 103, 104, 105]
