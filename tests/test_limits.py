"""Every bound has a clear error past it (issue 15, part 5).

- payload size: the server's ``max_payload`` (16 MiB on a node's own server);
  a request over it is refused before it is sent, a reply over it becomes an
  error reply;
- requests per node: ``max-requests`` run at once, ``max-waiting`` more wait,
  the next ones are refused at once (``node busy``);
- cc frames: :data:`MAX_FRAME` both ways, refused before the body is read;
- file paths: a NUL byte or more than ``PATH_MAX`` bytes;
- name ranges: at most :data:`MAX_NAMES` names from one range;
- names in subjects (namespaces, VLAN aliases, pipes), ``cc prefix`` and ``cc filter``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nodes import MiniNode, node_at

from megabus.bus import cc_messages
from megabus.bus.connection import Bus
from megabus.bus.errors import PayloadTooLargeError, RemoteError
from megabus.bus.messages import CommandReply, CommandRequest, LogRecord
from megabus.bus.rawclient import PayloadTooLargeError as RawPayloadTooLargeError
from megabus.bus.rawclient import RawClient
from megabus.bus.server import DEFAULT_MAX_PAYLOAD, EmbeddedServer
from megabus.config.settings import Settings
from megabus.handlers.language import LanguageError, expand
from megabus.handlers.language.ranges import MAX_NAMES
from megabus.handlers.main import Node
from megabus.handlers.model.config import MAX_QEMU_LINE
from megabus.handlers.model.paths import MAX_PATH_BYTES
from megabus.handlers.node.process import Emit, Executor

MEGABUS = str(Path(sys.executable).parent / "megabus")
SMALL = 64 * 1024


class Gate:
    """An executor: ``wait`` lines block until the gate opens; others echo (doubled)."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.open = asyncio.Event()
        self.running = 0
        self.most = 0
        self.lines: list[str] = []

    async def execute(self, req: CommandRequest, emit: Emit) -> None:
        self.lines.append(req.line[:20])
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if req.line == "wait":
                await self.open.wait()
            await emit(CommandReply(node=self.node, rendered=req.line * 2))
        finally:
            self.running -= 1


@contextlib.asynccontextmanager
async def gate_node(tmp_path: Path, url: str, **kw: object) -> AsyncIterator[tuple[Node, Gate]]:
    gate = Gate("lim")

    @contextlib.asynccontextmanager
    async def factory(settings: Settings, bus: Bus) -> AsyncIterator[Executor]:
        yield gate

    settings = Settings(name="lim", nats=[url], base=str(tmp_path / "base"), **kw)  # type: ignore[arg-type]
    node = Node(settings, dispatcher_factory=factory)
    await node.start()
    try:
        yield node, gate
    finally:
        gate.open.set()
        await node.stop()


@pytest.fixture
async def small_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(tmp_path / "small", port=0, max_payload=SMALL) as server:
        yield server


# --- payload size ---------------------------------------------------------------------------


def test_a_nodes_own_server_takes_16_mib() -> None:
    assert DEFAULT_MAX_PAYLOAD == 16 * 1024 * 1024


async def test_a_request_over_the_payload_limit_is_refused_before_sending(
    tmp_path: Path, small_server: EmbeddedServer
) -> None:
    url = small_server.client_url
    async with gate_node(tmp_path, url) as (_, gate):

        def both() -> tuple[str, str]:
            with RawClient.connect([url]) as raw:
                big = b'{"type":"megabus.cmd.v1.request","line":"' + b"x" * SMALL + b'"}'
                with pytest.raises(RawPayloadTooLargeError, match="exceeds the server's max"):
                    list(raw.request_stream("mb.v1.node.lim.cmd", big))
                # nothing was sent, and the connection still serves
                ok = b'{"type":"megabus.cmd.v1.request","line":"ok"}'
                replies = list(raw.request_stream("mb.v1.node.lim.cmd", ok))
                return str(replies[-1]["rendered"]), str(raw.info["max_payload"])

        assert await asyncio.to_thread(both) == ("okok", str(SMALL))
        bus = await Bus.connect([url], name="big")
        try:
            with pytest.raises(PayloadTooLargeError, match=f"max payload of {SMALL}"):
                await bus.publish(
                    "mb.v1.log.x.info", LogRecord(node="x", level="i", message="m" * SMALL)
                )
        finally:
            await bus.close()
        assert gate.lines == ["ok"]


async def test_a_reply_over_the_limit_becomes_an_error_reply(
    tmp_path: Path, small_server: EmbeddedServer
) -> None:
    url = small_server.client_url
    async with gate_node(tmp_path, url):
        bus = await Bus.connect([url], name="c")
        try:
            # the request fits, its doubled echo does not
            with pytest.raises(RemoteError, match="reply too large"):
                await bus.command("lim", "y" * (SMALL * 2 // 3))
            assert (await bus.command("lim", "z"))[0].rendered == "zz"
        finally:
            await bus.close()


async def test_megabus_read_reports_a_line_too_large_and_goes_on(
    tmp_path: Path, small_server: EmbeddedServer
) -> None:
    url = small_server.client_url
    script = tmp_path / "script.mm"
    script.write_text("echo first\n" + "echo " + "x" * SMALL + "\necho last\n")
    async with gate_node(tmp_path, url) as (_, gate):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEGABUS_")}
        proc = await asyncio.create_subprocess_exec(
            MEGABUS, "-nats", url, "-node", "lim", "-base", str(tmp_path / "none"),
            "read", str(script),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, err = await proc.communicate()
    assert proc.returncode == 1
    assert out.decode() == "echo firstecho first\necho lastecho last\n"
    assert err.decode().startswith("Error (lim): request of ")
    assert f"exceeds the server's max payload of {SMALL} bytes" in err.decode()
    assert gate.lines == ["echo first", "echo last"]


# --- requests per node ---------------------------------------------------------------------------


async def test_requests_past_running_and_waiting_are_refused_at_once(
    tmp_path: Path, nats_url: str
) -> None:
    async with gate_node(tmp_path, nats_url, max_requests=2, max_waiting=3) as (node, gate):
        bus = await Bus.connect([nats_url], name="flood")
        try:
            calls = [asyncio.create_task(bus.command("lim", "wait")) for _ in range(8)]
            async with asyncio.timeout(10):
                while node.running_requests < 5 or sum(c.done() for c in calls) < 3:  # noqa: ASYNC110 - polled: no event says "queued"
                    await asyncio.sleep(0.02)
            refused = [c for c in calls if c.done()]
            assert len(refused) == 3
            for call in refused:
                with pytest.raises(
                    RemoteError, match="node busy: 2 requests running and 3 waiting"
                ):
                    call.result()
            assert gate.running == 2  # max-requests at once; the others wait their turn
            gate.open.set()
            results = await asyncio.gather(*(c for c in calls if c not in refused))
            assert [r[0].rendered for r in results] == ["waitwait"] * 5
            assert gate.most == 2
            assert (await bus.command("lim", "after"))[0].rendered == "afterafter"
        finally:
            await bus.close()


def test_max_waiting_is_checked() -> None:
    with pytest.raises(ValueError, match="max-waiting -1"):
        Settings(max_waiting=-1)


# --- cc frames ---------------------------------------------------------------------------


def test_a_cc_frame_over_the_limit_is_refused_both_ways() -> None:
    big = cc_messages.FileData(id=1, name="f", data=b"\0" * (cc_messages.MAX_FRAME + 1))
    with pytest.raises(cc_messages.FrameTooLargeError, match="exceeds the 8388608-byte limit"):
        cc_messages.encode(big)
    with pytest.raises(cc_messages.FrameTooLargeError):
        cc_messages.frame_length(struct.pack(">I", cc_messages.MAX_FRAME + 1))
    assert (
        cc_messages.frame_length(struct.pack(">I", cc_messages.MAX_FRAME)) == cc_messages.MAX_FRAME
    )


async def test_an_oversized_frame_is_refused_before_its_body_is_read() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(struct.pack(">I", 2**32 - 1) + b"tail")
    with pytest.raises(cc_messages.FrameTooLargeError):
        await cc_messages.read_frame(reader)
    assert await reader.read(4) == b"tail"  # nothing of the body was taken


# --- file paths and name ranges ----------------------------------------------------------


@pytest.fixture
async def mini(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "lim", base=tmp_path / "base") as n,
    ):
        yield n


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('file stream "a\x00b"', "contains a NUL byte"),
        ('file list "a\x00b"', "contains a NUL byte"),
        ("file list " + "d/" * 2100, "path too long: 42"),
        ("file stream " + "f" * 5000, f"(at most {MAX_PATH_BYTES})"),
        ("file delete " + "g/" * 2100, "path too long"),
        ('vm config disk "x\x00y"', "contains a NUL byte"),
        ("vm config disk /" + "h" * 5000, "path too long: 5001 bytes"),
        ('vm config cdrom "c\x00d"', "contains a NUL byte"),
    ],
)
async def test_file_paths_past_the_bound_are_clear_errors(
    mini: MiniNode, line: str, error: str
) -> None:
    errors = await mini.errors(line)
    assert len(errors) == 1
    assert error in errors[0]
    assert "internal error" not in errors[0]


async def test_name_ranges_past_the_bound_are_refused_before_anything_runs(mini: MiniNode) -> None:
    with pytest.raises(
        LanguageError, match=f"range of 2147483648 names exceeds the limit of {MAX_NAMES}"
    ):
        expand("vm[0-2147483647]")
    with pytest.raises(LanguageError, match="exceeds the limit"):
        expand("a[0-60000],b[0-60000]")
    with pytest.raises(LanguageError, match="exceeds the limit"):
        expand("c[" + ",".join(f"{i * 50000}-{i * 50000 + 49999}" for i in range(3)) + "]")
    assert len(expand(f"d[1-{MAX_NAMES}]")) == MAX_NAMES
    errors = await mini.errors("vm launch kvm foo[0-2147483647]")
    assert errors == [f"range of 2147483648 names exceeds the limit of {MAX_NAMES}"]
    assert await mini.text("vm info") == ""


async def test_qemu_overrides_that_multiply_the_line_are_refused(mini: MiniNode) -> None:
    # found by ops/fuzz.py: each override may double the line; thirty of them
    # asked the node for gigabytes before anything could say no
    for _ in range(30):
        assert await mini.errors("vm config qemu-override e ee") == []
    errors = await mini.errors("vm config qemu-override")
    assert len(errors) == 1
    assert errors[0].startswith("qemu overrides make a qemu line of ")
    assert errors[0].endswith(f"characters, over the limit of {MAX_QEMU_LINE}")


@pytest.mark.parametrize("field", ["serial-ports", "fifos"])
async def test_device_counts_are_bounded(mini: MiniNode, field: str) -> None:
    # found by ops/fuzz.py: `vm config serial-ports 2147483648` then made
    # `vm config qemu-override` build two billion qemu arguments
    assert await mini.errors(f"vm config {field} 1024") == []
    assert await mini.errors(f"vm config {field} 2147483648") == [
        f"invalid {field} 2147483648: at most 1024"
    ]
    assert await mini.text(f"vm config {field}") == "1024"


async def test_virtio_ports_are_bounded(mini: MiniNode) -> None:
    assert await mini.errors("vm config virtio-ports 2147483648") == [
        "invalid virtio-ports 2147483648: at most 1024 ports"
    ]
    assert await mini.errors("vm config virtio-ports a,b") == []


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("namespace {long}", "namespace name too long: 5000 characters"),
        ("vm config net {long}", "VLAN alias too long: 5000 characters"),
        ("vlans add {long} 200", "VLAN alias too long: 5000 characters"),
        ("vlans add other//{long} 201", "VLAN alias too long: 5000 characters"),
    ],
)
async def test_names_too_long_for_a_subject_are_refused_and_the_bus_survives(
    mini: MiniNode, line: str, error: str
) -> None:
    # found by ops/fuzz.py: a 5000-character alias made a KV key the server
    # refused, which closed the node's NATS connection for good
    errors = await mini.errors(line.format(long="y" * 5000))
    assert len(errors) == 1
    assert errors[0].startswith(error)
    assert await mini.errors("vm config net LAN") == []
    assert await mini.errors("vlans add web 300") == []


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("pipe {long} hello", "pipe name too long: 5000 characters"),
        ("pipe ns//{long} hello", "pipe name too long: 5000 characters"),
        ("pipe {long}//p hello", "namespace name too long: 5000 characters"),
        ("plumb {long} cat", "pipe name too long: 5000 characters"),
        ("cc prefix {long}", "cc prefix too long: 5000 bytes (at most 1000)"),
        ("cc filter hostname={long}", "cc filter too long: 5009 bytes (at most 4096)"),
    ],
)
async def test_pipe_names_and_cc_tags_past_their_bound_are_refused(
    mini: MiniNode, line: str, error: str
) -> None:
    errors = await mini.errors(line.format(long="p" * 5000))
    assert len(errors) == 1
    assert error in errors[0]
    assert await mini.errors("cc prefix ok") == []
    assert await mini.errors("cc filter hostname=h1") == []


async def test_cc_works_in_a_namespace_whose_name_fills_a_subject(tmp_path: Path) -> None:
    # found by ops/fuzz.py: the cc stream is named after the namespace, and
    # JetStream takes at most 255 characters there
    long = "n" * 900
    async with EmbeddedServer(tmp_path / "js", port=0) as server:
        node = Node(Settings(name="n1", nats=[server.client_url], base=str(tmp_path / "b")))
        await node.start()
        bus = await Bus.connect([server.client_url], name="c")
        try:
            for line in ("cc exec true", "cc commands", "clear cc"):
                replies = await bus.command("n1", f"namespace {long} {line}")
                assert [r.error for rep in replies for r in rep.responses if r.error] == [], line
        finally:
            await bus.close()
            await node.stop()
