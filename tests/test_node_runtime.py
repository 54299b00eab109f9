"""The node runtime as a user sees it: nodes in one process stay apart, bursts wait,
errors share one root, what crosses the bus or sits in JetStream says what it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from megabus.bus.connection import Bus
from megabus.bus.errors import BusConnectError, CommandError, MegabusError
from megabus.bus.messages import CommandReply, CommandRequest, ErrorReply, LaunchReply
from megabus.bus.rawclient import RawClientError
from megabus.config.settings import SettingsError, load
from megabus.handlers.language.command import LanguageError
from megabus.handlers.main import Node
from megabus.handlers.net import VlanStore
from megabus.handlers.net._ovs import OvsError


@contextlib.asynccontextmanager
async def started(nats_url: str, base: Path, name: str, **extra: object) -> AsyncIterator[Node]:
    settings = load(
        {"name": name, "nats": [nats_url], "base": str(base), "heartbeat": 0.5, **extra},
        environ={},
    )
    node = Node(settings)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def run(bus: Bus, node: str, line: str, idle: float = 30.0) -> list[CommandReply]:
    out: list[CommandReply] = []
    stream = bus.request_stream(
        bus.subjects.node_cmd(node), CommandRequest(line=line), idle_timeout=idle
    )
    async with contextlib.aclosing(stream):
        async for item in stream:
            assert not isinstance(item, ErrorReply), item.error
            if isinstance(item, CommandReply):
                out.append(item)
    return out


def pids_running(argv: list[str]) -> list[int]:
    """Live processes running ``argv`` (the program by its base name)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[:1]:
                continue  # a zombie is dead, only not yet reaped
            words = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
            if words and [os.path.basename(words[0]), *words[1:]] == argv:
                found.append(int(pid))
    return found


async def test_stopping_one_node_leaves_the_other_nodes_background_processes(
    nats_url: str, bus: Bus, tmp_path: Path
) -> None:
    # two nodes in one process, as tests and embedding programs run them
    mine, theirs = ["sleep", "3001"], ["sleep", "3002"]
    async with started(nats_url, tmp_path / "b", "keeper") as keeper:
        async with started(nats_url, tmp_path / "a", "leaver"):
            await run(bus, "leaver", "background " + " ".join(mine))
            await run(bus, "keeper", "background " + " ".join(theirs))
            for _ in range(100):
                if pids_running(mine) and pids_running(theirs):
                    break
                await asyncio.sleep(0.05)
            assert pids_running(mine)
            assert pids_running(theirs)
        # the leaver's own process died with it; the keeper's did not
        assert not pids_running(mine)
        assert pids_running(theirs)
        assert keeper.running_requests == 0
    assert not pids_running(theirs)


async def test_requests_beyond_the_limit_wait_their_turn_and_none_is_dropped(
    nats_url: str, bus: Bus, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    async with started(nats_url, tmp_path / "n", "one", max_requests=1):
        first = asyncio.create_task(
            run(bus, "one", f"shell sh -c 'while [ ! -e {flag} ]; do sleep 0.05; done; echo first'")
        )
        await asyncio.sleep(0.3)  # the first holds the only slot
        rest = [asyncio.create_task(run(bus, "one", f"echo {i}")) for i in range(5)]
        done, _ = await asyncio.wait(rest, timeout=1.0)
        assert not done, "a request ran while the only slot was taken"
        flag.touch()
        answers = await asyncio.gather(first, *rest)
    texts = [r.rendered for replies in answers for r in replies if r.rendered]
    assert texts == ["one: first", "one: 0", "one: 1", "one: 2", "one: 3", "one: 4"]


def test_a_bad_request_limit_is_refused() -> None:
    with pytest.raises(SettingsError, match="max-requests"):
        load({"max_requests": 0}, environ={})
    with pytest.raises(SettingsError):
        load(environ={"MEGABUS_MAX_REQUESTS": "many"})


async def test_every_failure_a_program_sees_is_a_megabus_error(tmp_path: Path) -> None:
    with pytest.raises(MegabusError) as info:
        await Bus.connect(["nats://127.0.0.1:1"], name="x", timeout=0.5)
    assert isinstance(info.value, BusConnectError)
    with pytest.raises(MegabusError):
        load({"vlan_range": "9-1"}, environ={})
    for cls in (CommandError, LanguageError, OvsError, RawClientError, SettingsError):
        assert issubclass(cls, MegabusError), cls


async def test_what_jetstream_keeps_carries_a_versioned_type(
    nats_url: str, bus: Bus, tmp_path: Path
) -> None:
    async with started(nats_url, tmp_path / "n", "keeper"):
        await run(bus, "keeper", "vlans add lan 200")
        await run(bus, "keeper", "cc exec hostname")
    kv = await bus.js.key_value(bus.subjects.bucket("vlans"))
    alias = json.loads((await kv.get(next(k for k in await kv.keys() if "alias" in k))).value)
    assert alias == {"type": "megabus.vlans.v1.alias", "vlan": 200}
    claim = json.loads((await kv.get("vlan.200")).value)
    assert claim["type"] == "megabus.vlans.v1.claim"
    stream = bus.subjects.bucket("cc_minimega")
    msg = await bus.js.get_last_msg(stream, bus.subjects.cc("minimega", "s", "cmd", "1"))
    record = json.loads(msg.data)
    assert record["type"] == "megabus.ccstore.v1.cmd"
    assert record["spec"]["command"] == ["hostname"]
    # a store reads its own records back, as a restarted node does
    store = await VlanStore.open(bus, (101, 4096))
    try:
        assert store.vlan_of("minimega", "lan") == 200
    finally:
        await store.close()


async def test_a_launch_request_with_a_config_that_is_no_vm_config_is_refused(
    nats_url: str, bus: Bus, tmp_path: Path
) -> None:
    bad = {
        "type": "megabus.sched.v1.launch",
        "namespace": "minimega",
        "vm_type": "kvm",
        "names": ["x"],
        "config": {"memory": "lots"},
    }
    async with started(nats_url, tmp_path / "n", "target"):
        msg = await bus.nc.request(
            bus.subjects.node_launch("target"), msgspec.json.encode(bad), timeout=10
        )
        reply = msgspec.json.decode(msg.data, type=LaunchReply)
        assert reply.launched == 0
        assert reply.errors == [
            "bad launch request: Expected `int`, got `str` - at `$.config.memory`"
        ]
        # the node goes on serving
        assert [r.rendered for r in await run(bus, "target", "echo alive")] == ["target: alive"]


def test_a_node_without_command_families_refuses_to_dispatch() -> None:
    # the runtime never imports the families; main does. This process has
    # them (main is imported above), so check the runtime's own guard text.
    from megabus.handlers.node import dispatch, registry

    saved = list(registry.HANDLERS)
    registry.HANDLERS.clear()
    try:
        with pytest.raises(RuntimeError, match="no command families are registered"):
            dispatch.load_grammar()
    finally:
        registry.HANDLERS.extend(saved)
    assert dispatch.load_grammar() is not None
