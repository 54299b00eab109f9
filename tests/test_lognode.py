"""Mesh logging and the log node, on a real nats-server with real nodes.

A node publishes its log records on ``mb.v1.log.<node>.<level>`` only while a
log node is set (``-log-node`` or ``log mesh``); ``megabus lognode`` writes
them to one rotating file per node and outlives the nodes that publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from natsd import until

from megabus.bus.codec import decode
from megabus.bus.connection import Bus
from megabus.bus.messages import LogRecord
from megabus.cli.lognode import LogWriter, RotatingFile, format_record
from megabus.config.settings import Settings
from megabus.handlers.main import Node

MEGABUS = str(Path(sys.executable).parent / "megabus")


@contextlib.asynccontextmanager
async def node(nats_url: str, tmp_path: Path, name: str, **kw: object) -> AsyncIterator[Node]:
    settings = Settings(
        name=name, nats=[nats_url], base=str(tmp_path / f"base-{name}"), level="info", **kw
    )  # type: ignore[arg-type]
    n = Node(settings)
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


class Tail:
    """Every log record on the bus, in arrival order."""

    def __init__(self) -> None:
        self.records: list[tuple[str, LogRecord]] = []

    async def on_msg(self, msg: object) -> None:
        self.records.append((msg.subject, decode(msg.data, LogRecord)))  # type: ignore[attr-defined]

    def messages(self) -> list[str]:
        return [r.message for _, r in self.records]


@pytest.fixture
async def tail(bus: Bus) -> Tail:
    t = Tail()
    await bus.nc.subscribe(bus.subjects.logs(), cb=t.on_msg)
    await bus.nc.flush()
    return t


async def run(bus: Bus, node: str, line: str) -> None:
    replies = await bus.command(node, line)
    errors = [r.error for rep in replies for r in rep.responses if r.error]
    assert errors == []


async def test_records_leave_the_node_only_while_a_log_node_is_set(
    nats_url: str, tmp_path: Path, bus: Bus, tail: Tail
) -> None:
    async with node(nats_url, tmp_path, "n1"):
        await run(bus, "n1", "log mesh")  # nothing set: nothing published
        await run(bus, "n1", "vlans add before 200")
        await run(bus, "n1", "log mesh collector")
        await run(bus, "n1", "vlans add during 201")
        await until(lambda: any("during" in m for m in tail.messages()))
        await run(bus, "n1", "clear log mesh")
        await run(bus, "n1", "vlans add cleared 202")
        await run(bus, "n1", "log mesh collector")
        await run(bus, "n1", "vlans add again 203")
        await until(lambda: any("again" in m for m in tail.messages()))
    # One queue, one publisher: had "before" or "cleared" been queued, they
    # would have arrived before the records that followed them.
    alias_lines = [m for m in tail.messages() if "adding VLAN alias" in m]
    assert alias_lines == [
        "adding VLAN alias minimega//during => 201",
        "adding VLAN alias minimega//again => 203",
    ]
    subject, record = next(r for r in tail.records if "during" in r[1].message)
    assert subject == "mb.v1.log.n1.info"
    assert (record.node, record.level, record.logger) == (
        "n1",
        "info",
        "megabus.handlers.net._vlanstore",
    )


async def test_log_node_setting_turns_it_on_and_debug_is_raised_to_info(
    nats_url: str, tmp_path: Path, bus: Bus, tail: Tail
) -> None:
    async with node(nats_url, tmp_path, "n1", log_node="collector"):
        replies = await bus.command("n1", "log mesh")
        assert replies[-1].responses[0].response == "sending all logs to node collector"
        # at debug the node logs every request it gets; none of that may ship
        await run(bus, "n1", "log level debug")
        await run(bus, "n1", "vlans add x 300")
        await until(lambda: any("minimega//x" in m for m in tail.messages()))
    assert tail.records
    assert {r.level for _, r in tail.records} <= {"info", "warn", "error", "fatal"}


async def test_a_node_named_as_its_own_log_node_does_not_publish(
    nats_url: str, tmp_path: Path, bus: Bus
) -> None:
    async with node(nats_url, tmp_path, "n1", log_node="n1"):
        replies = await bus.command("n1", "log mesh")
        assert replies[-1].responses[0].response == "mesh logging disabled"


def test_rotation_keeps_the_newest_lines_and_at_most_k_backups(tmp_path: Path) -> None:
    out = RotatingFile(tmp_path / "n.log", max_bytes=100, backups=2)
    for i in range(30):
        out.write(f"line {i:02d} " + "x" * 20 + "\n")  # 30 bytes
    out.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["n.log", "n.log.1", "n.log.2"]
    assert (tmp_path / "n.log").read_text().splitlines()[-1].startswith("line 29")
    assert all((tmp_path / n).stat().st_size <= 100 for n in names)
    # .1 holds the lines just before the live file's
    assert (tmp_path / "n.log.1").read_text().splitlines()[-1].startswith("line 26")


def test_fatal_from_another_node_is_written_as_error_and_names_stay_in_the_dir(
    tmp_path: Path,
) -> None:
    line = format_record(LogRecord(node="a", level="fatal", message="boom", logger="x", ts=0))
    assert " ERROR [node: a] x: boom" in line
    writer = LogWriter(tmp_path / "logs")
    writer.directory.mkdir()
    writer.write(LogRecord(node="../../evil", level="info", message="m"))
    writer.close()
    (written,) = writer.directory.iterdir()
    assert written.parent == writer.directory
    assert "evil" in written.name
    assert "/" not in written.name


async def start_lognode(nats_url: str, logdir: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEGABUS_")}
    proc = await asyncio.create_subprocess_exec(
        MEGABUS,
        "lognode",
        "-dir",
        str(logdir),
        "-nats",
        nats_url,
        "-max-bytes",
        "4000",
        "-backups",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        line = await proc.stdout.readline()
    assert line.decode().startswith("lognode: writing to"), line
    return proc


async def test_lognode_writes_a_rotating_file_per_node_as_nodes_come_and_go(
    nats_url: str, tmp_path: Path, bus: Bus
) -> None:
    logdir = tmp_path / "logs"
    proc = await start_lognode(nats_url, logdir)
    try:
        async with node(nats_url, tmp_path, "n1", log_node="collector"):
            await run(bus, "n1", "vlans add first 200")
            await until(lambda: "first" in _read(logdir / "n1.log"), within=10)
        # garbage on a log subject is skipped, the collector keeps going
        await bus.nc.publish("mb.v1.log.n9.info", b"{not json")
        async with node(nats_url, tmp_path, "n2", log_node="collector"):
            for i in range(120):  # ~100 bytes a line: 3 files of 4000 bytes
                await run(bus, "n2", f"vlans add alias{i} {400 + i}")
            await until(lambda: "alias119 " in _read(logdir / "n2.log"), within=10)
        # n1 came back: its file grows where it was
        async with node(nats_url, tmp_path, "n1", log_node="collector"):
            await run(bus, "n1", "vlans add second 201")
            await until(lambda: "second" in _read(logdir / "n1.log"), within=10)
        assert proc.returncode is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    n1 = _read(logdir / "n1.log")
    assert n1.index("minimega//first") < n1.index("minimega//second")
    assert " INFO [node: n1] megabus.handlers.net._vlanstore: adding VLAN alias" in n1
    names = sorted(p.name for p in logdir.iterdir())
    assert names == ["n1.log", "n2.log", "n2.log.1", "n2.log.2"]
    assert all((logdir / n).stat().st_size <= 4000 for n in names)
    # rotation lost nothing of the newest lines: they run on across files
    newest = _read(logdir / "n2.log.1") + _read(logdir / "n2.log")
    numbers = [int(w.split("alias")[1]) for w in newest.split() if w.startswith("minimega//alias")]
    assert numbers == list(range(numbers[0], 120))


async def test_events_tails_log_records(nats_url: str, tmp_path: Path, bus: Bus) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEGABUS_")}
    async with node(nats_url, tmp_path, "n1", log_node="collector"):
        proc = await asyncio.create_subprocess_exec(
            MEGABUS,
            "-nats",
            nats_url,
            "events",
            "log",
            "-count",
            "1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            # the subscriber may not be up yet: add aliases until it prints one
            i = 0
            while proc.returncode is None and i < 200:
                await run(bus, "n1", f"vlans add tail{i} {500 + i}")
                i += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(proc.wait()), 0.1)
        finally:
            if proc.returncode is None:
                proc.kill()
            out, _ = await proc.communicate()
    msg = json.loads(out.decode().splitlines()[0])
    assert msg["subject"] == "mb.v1.log.n1.info"
    assert msg["data"]["type"] == "megabus.log.v1"
    assert msg["data"]["message"].startswith("adding VLAN alias minimega//tail")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
