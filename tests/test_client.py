"""``megabus.client``: a program drives a real node through typed, generated methods."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_args

import pytest
from ccworld import stop, wait_for
from natsd import free_port
from procs import run
from solonode import Solo, solo_node

from megabus.bus.errors import NoRespondersError
from megabus.client import (
    ArgumentError,
    Client,
    CommandFailedError,
    Event,
    Result,
    Row,
    SyncClient,
    build_methods,
    quote,
)
from megabus.handlers import commands
from megabus.handlers.language.lexer import lex
from megabus.handlers.language.patterns import Kind
from megabus.handlers.node.table import command_table

#: Zero-argument methods the every-family test must not call on its node.
_HARMFUL = {"quit", "nuke", "clear_all", "dnsmasq_start", "debug_cpu_stop", "web"}


@pytest.fixture
async def solo(tmp_path: Path) -> AsyncIterator[Solo]:
    async with solo_node(tmp_path / "base") as s:
        yield s


@pytest.fixture
async def mm(solo: Solo) -> AsyncIterator[Client]:
    async with await Client.connect(base=str(solo.base)) as client:
        yield client


def test_methods_are_named_and_merged_as_pyapigen_did() -> None:
    commands.load()
    methods = build_methods(command_table())
    # 2.8's examples of generated names
    for name in (
        "vm_net_bond",
        "cc_test_conn_wait",
        "router_fw_chain_apply",
        "tap_create_bridge_ip",
    ):
        assert name in methods, name
    assert not {n for n in methods if n.startswith(("help", "namespace", "clear_namespace"))}
    vlans_range = methods["vlans_range"]
    assert [v.pattern for v in vlans_range.variants] == ["vlans range <min> <max>", "vlans range"]
    assert str(vlans_range.signature()).startswith("(min: str | int | float | None = None")
    assert vlans_range.doc.startswith("Variants:\n    vlans range <min> <max>\n    vlans range\n\n")
    info = methods["vm_info"].signature().parameters["summary"]
    assert get_args(get_args(info.annotation)[0]) == ("summary",)
    # 2.8's #1491: a zero is an argument like any other
    assert methods["capture_pcap_vm"].bind("v", 0, "f.pcap") == "capture pcap vm v 0 f.pcap"
    assert methods["vlans"].bind() == "vlans"
    # a value with a space stays one word; a list is words, a str a line as typed
    assert methods["vlans_add"].bind("a b", 5) == 'vlans add "a b" 5'
    assert methods["cc_exec"].bind(["sh", "-c", "echo hi"]) == 'cc exec sh -c "echo hi"'
    assert methods["cc_exec"].bind("sh -c 'echo hi'") == "cc exec sh -c 'echo hi'"
    with pytest.raises(ArgumentError, match="invalid argument combination"):
        methods["vlans_range"].bind(min=1)
    with pytest.raises(ArgumentError, match="invalid value 'sum' for summary"):
        methods["vm_info"].bind("sum")
    with pytest.raises(ArgumentError, match="wants a str or number"):
        methods["vlans_add"].bind("a", True)
    with pytest.raises(ArgumentError, match="missing a required argument"):
        methods["vlans_add"].bind("a")


@pytest.mark.parametrize(
    "word", ["plain", "", "a b", 'q"uote', "it's", "#x", "back\\slash", "t\tn\n"]
)
def test_quote_gives_exactly_one_word(word: str) -> None:
    assert [item.value for item in lex(f"echo {quote(word)}")] == ["echo", word]


def _fill(arg_kind: Kind, options: tuple[str, ...]) -> Any:
    if arg_kind is Kind.CHOICE:
        return options[0]
    if arg_kind is Kind.LIST:
        return ["/nonexistent/megabus-client-test"]
    if arg_kind is Kind.COMMAND:
        return "version"
    return "/nonexistent/megabus-client-test"


async def test_every_family_of_the_table_is_called_once(mm: Client) -> None:
    families: dict[str, list[str]] = {}
    for name, method in mm.methods.items():
        families.setdefault(method.family, []).append(name)
    # builtins (.columns...) and namespace are the client's own: Client.namespace()
    assert set(families) >= set(commands.FAMILIES) - {"builtins", "namespace"}
    for family, names in sorted(families.items()):
        safe = [n for n in names if n not in _HARMFUL and not n.startswith("clear_")]
        if not safe:  # nuke: its line made here, never sent (it ends the node)
            first = mm.command(names[0])
            required = {
                a.name: _fill(a.kind, a.options) for a in first.method.args if not a.optional
            }
            assert first.line(**required).startswith(names[0].split("_")[0])
            continue
        zero = [n for n in safe if all(a.optional for a in mm.methods[n].args)]
        method = mm.command(zero[0] if zero else safe[0])
        given = {a.name: _fill(a.kind, a.options) for a in method.method.args if not a.optional}
        try:
            result = await method(**given)
        except CommandFailedError as failed:  # a refusal is an answer too, naming the node
            result = failed.result
            assert result.errors, family
            assert {host for host, _ in result.errors} == {"solo"}, family
        assert isinstance(result, Result), family
        assert result.node == "solo"
        for row in result.rows:
            assert isinstance(row, Row)
            assert row.host == "solo"


async def test_typed_rows_errors_and_events(mm: Client, solo: Solo) -> None:
    assert mm.vlans.__signature__ == inspect.Signature([])
    await mm.vlans_add("lan", 301)
    (row,) = (await mm.vlans()).rows
    assert (row.host, row.alias, row.vlan) == ("solo", "lan", "301")
    assert row.as_dict() == {"host": "solo", "alias": "lan", "vlan": "301"}

    with pytest.raises(CommandFailedError, match=r"^solo: alias already in use$") as failed:
        await mm.vlans_add("lan", 302)
    assert (failed.value.node, failed.value.error) == ("solo", "alias already in use")

    async with mm.events("vm") as events:
        await mm.vm_launch_kvm("cl1")
        launched = await events.next(timeout=30)
        assert isinstance(launched, Event)
        assert (launched.name, launched.detail["action"], launched.detail["state"]) == (
            "cl1",
            "launch",
            "BUILDING",
        )
        (vm,) = (await mm.vm_info()).rows
        assert (vm.name, vm.state, vm.type) == ("cl1", "BUILDING", "kvm")
        assert vm.get("cc_active") == "false"
        assert vm.uuid == launched.detail["uuid"]
        (summary,) = (await mm.vm_info("summary")).rows
        assert summary.name == "cl1"
        await mm.vm_kill("cl1")
        assert (await events.next(timeout=30)).detail["state"] == "QUIT"
        await mm.vm_flush()
    assert (await mm.vm_info()).rows == []

    # a namespace view: same connection, commands in that namespace
    lab = mm.namespace("lab")
    await lab.vlans_add("inner", 310)
    assert [r.alias for r in (await lab.vlans()).rows] == ["inner"]
    assert [r.alias for r in (await mm.vlans()).rows] == ["lan"]

    # a method the node lacks is no method at all
    with pytest.raises(AttributeError, match="node solo has no command 'no_such_thing'"):
        _ = mm.no_such_thing
    with pytest.raises(
        NoRespondersError, match=r"node nobody does not answer on mb\.v1\.node\.nobody\.schema"
    ):
        await Client.connect(solo.url, "nobody", credentials=str(solo.operator), timeout=2)


async def test_cc_responses_come_back_typed(mm: Client, solo: Solo, tmp_path: Path) -> None:
    port = free_port()
    await mm.cc_listen(port)
    client_uuid = str(uuid.uuid4())
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "megabus.agent", "-path", str(tmp_path / "agent"),
        "-retry", "0.2", "-parent", "127.0.0.1", "-port", str(port), "-uuid", client_uuid,
    )  # fmt: skip
    try:
        async with mm.events("cc") as events:

            async def connected() -> bool:
                return [r.uuid for r in (await mm.cc_clients()).rows] == [client_uuid]

            await wait_for(connected, "the agent's connection")
            seen = await events.next(timeout=30)
            assert (seen.name, seen.detail["action"]) == (client_uuid, "connect")
        (cmd_id,) = (await mm.cc_exec(["sh", "-c", "echo one two; echo err >&2"])).data

        async def answered() -> bool:
            with contextlib.suppress(CommandFailedError):
                return len((await mm.cc_responses(cmd_id)).cc_responses()) == 2
            return False

        await wait_for(answered, "the agent's response")
        got = (await mm.cc_responses(cmd_id)).cc_responses()
        assert [(r.id, r.uuid, r.file, r.text) for r in got] == [
            (cmd_id, client_uuid, "stderr", "err\n"),
            (cmd_id, client_uuid, "stdout", "one two\n"),
        ]
        assert (await mm.cc_exitcode(cmd_id, client_uuid)).text == "0"
    finally:
        await stop(agent)


def _sync_session(base: str) -> tuple[str, list[str], str, list[str]]:
    with SyncClient.connect(base=base) as mm:
        version = mm.version().text
        mm.vlans_add("synced", 320)
        rows = [r.alias for r in mm.vlans().rows]
        with pytest.raises(CommandFailedError) as failed:
            mm.vlans_add("synced", 321)
        with mm.events("vm") as events:
            mm.vm_launch_kvm("s1")
            seen = events.next(30)
            mm.vm_kill("s1")
            mm.vm_flush()
        return version, rows, str(failed.value), [seen.name, seen.detail["action"]]


async def test_the_sync_client_needs_no_event_loop(solo: Solo) -> None:
    version, rows, failed, seen = await asyncio.to_thread(_sync_session, str(solo.base))
    assert version.startswith("megabus ")
    assert rows == ["synced"]
    assert failed == "solo: alias already in use"
    assert seen == ["s1", "launch"]


PROGRAM = """
import asyncio, sys
from megabus.client import Client

async def main():
    async with await Client.connect(base=sys.argv[1]) as mm:
        print([vm.name for vm in (await mm.vm_info()).rows])

asyncio.run(main())
"""


async def test_a_program_using_the_client_prints_only_what_it_prints(solo: Solo) -> None:
    # no "disconnected" warning on a close the program asked for
    code, out = await run(sys.executable, "-c", PROGRAM, str(solo.base))
    assert (code, out) == (0, "[]\n")


async def test_an_event_stream_ends_when_the_client_closes(solo: Solo) -> None:
    mm = await Client.connect(base=str(solo.base))
    events = mm.events("vm")
    async with events:
        await mm.close()
        assert [e async for e in events] == []


REPO = Path(__file__).resolve().parent.parent
TYPED_PROGRAM = """\
from typing import cast

from megabus.client import Client
from megabus_node import Node


async def good() -> None:
    mm = cast(Node, await Client.connect())
    await mm.vlans_add("lan", 101)
    await mm.vm_info()
    print((await mm.vm_info("summary")).rows[0].get("name"))


async def bad() -> None:
    mm = cast(Node, await Client.connect())
    await mm.vm_info("sum")
    await mm.vlans_add("lan")
"""


async def test_the_typing_stub_lets_mypy_check_calls(tmp_path: Path) -> None:
    # mypy sees the packages through a tree of symlinks, as ops/test.sh does
    repo = REPO
    (tmp_path / "megabus").mkdir()
    for root in ("bus", "handlers", "cli", "client", "config"):
        (tmp_path / "megabus" / root).symlink_to(repo / root)
    megabus = str(Path(sys.executable).parent / "megabus")
    code, text = await run(megabus, "schema", "-pyi")
    assert code == 0, text
    (tmp_path / "megabus_node.pyi").write_text(text)
    (tmp_path / "prog.py").write_text(TYPED_PROGRAM)
    mypy = str(Path(sys.executable).parent / "mypy")
    code, out = await run(
        mypy, "--strict", "--no-incremental", "--config-file", str(repo / "pyproject.toml"),
        str(tmp_path / "prog.py"), str(tmp_path / "megabus_node.pyi"), cwd=tmp_path,
    )  # fmt: skip
    assert code == 1, out
    errors = [line.split(": error: ")[0] for line in out.splitlines() if ": error: " in line]
    assert [e.rsplit(":", 1)[-1] for e in errors] == ["16", "17"], out  # bad(), only
    assert "expected \"Literal['summary'] | None\"" in out
    assert 'Missing positional argument "vlan" in call to "vlans_add"' in out
