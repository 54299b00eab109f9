"""cc stdio: guest programs read and write the node's pipes through a real agent process.

``cc exec``/``cc background`` with ``stdin=``, ``stdout=``, ``stderr=`` (2.8's
plumbing with miniccc): the agent opens readers and writers on its node, the
node bridges them to the pipes, and the values go on across nodes like any
other. Old agents and odd frames are refused clearly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from ccworld import CcWorld, cc_world, wait_for
from meshnodes import start_node
from pipeworld import FakeAgent

from megabus.agent.exec import Processes
from megabus.agent.pipes import PipeLinks, run_piped
from megabus.bus import cc_messages as wire

U1 = "51515151-5151-4515-8515-515151515151"
U2 = "52525252-5252-4525-8525-525252525252"


@pytest.fixture
async def world(nats_url: str, tmp_path: Path) -> AsyncIterator[CcWorld]:
    async with cc_world(nats_url, tmp_path / "node") as w:
        yield w


async def _agent(world: CcWorld) -> None:
    sock = await world.unix_socket()
    await world.agent("guest", "-family", "unix", "-parent", sock, "-uuid", U1)

    async def connected() -> bool:
        return await world.clients() == {U1}

    await wait_for(connected, "the agent connected")


async def _rows(world: CcWorld) -> list[list[str]]:
    return await world.rows(".columns name,readers,writers,count,previous pipe")


async def _until_row(world: CcWorld, row: list[str]) -> None:
    async def there() -> bool:
        return row in await _rows(world)

    try:
        await wait_for(there, f"pipe row {row}", limit=20)
    except AssertionError:
        raise AssertionError(f"pipe shows {await _rows(world)}, want a row {row}") from None


async def test_a_guest_reads_one_pipe_and_writes_another_across_nodes(
    world: CcWorld, nats_url: str, tmp_path: Path
) -> None:
    far = await start_node(nats_url, tmp_path, "far")
    try:
        await _agent(world)
        # another node reads what the guest writes
        replies = await world.bus.command("far", "plumb cout farout")
        assert [r.error for rep in replies for r in rep.responses if r.error] == []
        await world.ok("cc background stdin=cin stdout=cout sed -u s/hello/bye/")
        await _until_row(world, ["minimega//cin", "1", "0", "0", ""])
        await _until_row(world, ["minimega//cout", "0", "1", "0", ""])

        await world.ok('pipe cin "hello world"')
        await _until_row(world, ["minimega//cout", "0", "1", "1", "bye world"])

        async def far_got() -> bool:
            replies = await world.bus.command("far", ".columns name,previous pipe")
            rows = [row for rep in replies for r in rep.responses for row in r.tabular or []]
            return ["minimega//farout", "bye world"] in rows

        await wait_for(far_got, "the far node's pipeline got the guest's line")
        # the program stays a background process of the agent
        procs = await world.rows("cc process list all")
        assert [r[3] for r in procs] == ["sed -u s/hello/bye/"]

        # deleting its input pipe ends the program's stdin: it exits, its writer goes
        await world.ok("clear pipe cin")
        await _until_row(world, ["minimega//cout", "0", "0", "1", "bye world"])
    finally:
        await far.stop()


async def test_exec_with_stdin_runs_until_its_input_ends(world: CcWorld) -> None:
    await _agent(world)
    await world.ok("cc exec stdin=cin2 stdout=cout2 head -n 1")
    await _until_row(world, ["minimega//cin2", "1", "0", "0", ""])
    await world.ok("pipe cin2 first")
    await _until_row(world, ["minimega//cout2", "0", "0", "1", "first"])
    await _until_row(world, ["minimega//cin2", "0", "0", "1", "first"])

    async def exited() -> bool:
        resps = await world.run(f"cc exitcode 1 {U1}")
        return [r.response for r in resps] == ["0"]

    await wait_for(exited, "the exit code of the piped command")


async def test_stderr_to_a_pipe_and_stdout_to_the_response(world: CcWorld) -> None:
    await _agent(world)
    await world.ok("plumb cerr errsink")
    await world.ok("cc exec stderr=cerr sh -c 'echo out; echo oops >&2'")
    await _until_row(world, ["minimega//errsink", "0", "1", "1", "oops"])
    stdout = world.files / "miniccc_responses" / "1" / U1 / "stdout"

    async def recorded() -> bool:
        return stdout.exists()

    await wait_for(recorded, "the response's stdout")
    assert stdout.read_text() == "out\n"
    assert not (stdout.parent / "stderr").exists()


async def test_bad_pipe_names_in_cc_commands_are_refused(world: CcWorld) -> None:
    for line in ("cc exec stdin=a.b cat", "cc background stdout=x> cat", "cc exec stderr=* ls"):
        errors = [r.error for r in await world.run(line) if r.error]
        assert len(errors) == 1, line
        assert errors[0].startswith("invalid pipe name"), errors
    assert await world.rows("cc commands") == []


async def test_odd_pipe_frames_and_unknown_frames_are_refused_clearly(world: CcWorld) -> None:
    sock = await world.unix_socket()
    agent = await FakeAgent.connect(sock, U2, [wire.FEATURE_PIPES])
    try:
        assert agent.welcome is not None
        assert wire.FEATURE_PIPES in agent.welcome.features
        await agent.send(wire.Pipe(pipe="p", op="bogus"))
        err = await agent.next(wire.Error)
        assert isinstance(err, wire.Error)
        assert err.error == "refused: unknown pipe op 'bogus'"
        await agent.send(wire.Pipe(pipe="a.b", op="new_reader"))
        err = await agent.next(wire.Error)
        assert isinstance(err, wire.Error)
        assert err.error.startswith("refused: invalid pipe name 'a.b'")
        # a frame from a newer agent: refused, and the connection goes on
        await agent.send_raw(msgspec.msgpack.encode({"type": "megabus.cc.v9.future", "x": 1}))
        err = await agent.next(wire.Error)
        assert isinstance(err, wire.Error)
        assert err.error.startswith("refused: bad frame")
        # a well-formed reader still works on the same connection
        await agent.send(wire.Pipe(pipe="fine", op="new_reader"))
        await _until_row(world, ["minimega//fine", "1", "0", "0", ""])
        await world.ok("pipe fine hi")
        data = await agent.next(wire.Pipe)
        assert data == wire.Pipe(pipe="fine", op="data", data="hi\n")
    finally:
        await agent.close()
    # the agent went: its reader with it
    await _until_row(world, ["minimega//fine", "0", "0", "1", "hi"])


async def test_an_agent_from_before_pipes_gets_its_command_and_the_node_says_why(
    world: CcWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="megabus.handlers.cc")
    sock = await world.unix_socket()
    agent = await FakeAgent.connect(sock, U2, [])
    try:
        await world.ok("cc exec stdin=in1 cat")
        cmds = await agent.next(wire.Commands)
        assert isinstance(cmds, wire.Commands)
        assert [c.stdin for c in cmds.commands] == ["in1"]

        async def warned() -> bool:
            return any("too old for pipes" in r.getMessage() for r in caplog.records)

        await wait_for(warned, "the node's warning")
    finally:
        await agent.close()


async def test_an_agent_on_a_node_without_pipes_does_not_run_the_command() -> None:
    sent: list[wire.Frame] = []

    async def send(frame: wire.Frame) -> None:
        sent.append(frame)

    links = PipeLinks(send)
    await links.welcome(wire.Welcome(node="old"))  # no features: a node from before pipes
    cmd = wire.Command(id=1, command=["cat"], stdin="in")
    out, err, code = await run_piped(Processes("/nonexistent"), links, cmd)
    assert (out, code) == ("", -1)
    assert err == "megabus agent: node old does not carry pipes (stdin=in)"
    assert sent == []
    await asyncio.sleep(0)
