"""Pipes across real nodes on one real nats-server: trees, modes, via, pipelines, a node leaving.

Each test runs three nodes in this process (:func:`meshnodes.cluster`); the
counts are 2.8's: every node that knows a pipe counts each value written to
it, and hands it to its own readers among the recipients.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from compat import run_lines, script_lines
from meshnodes import cluster
from natsd import start_server
from pipeworld import pipe_rows, plumber, until_row, until_rows

from megabus.bus.errors import CommandError
from megabus.handlers.pipes import MAX_MESSAGE

NODES = ["n1", "n2", "n3"]
COUNTS = "name,readers,writers,count"


async def test_a_tree_in_mode_all_then_round_robin_counts_as_2_8(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, NODES) as c:
        # the depth-2 tree of 2.8's plumbing_basic, one level per node
        for node, line in [
            ("n1", "plumb p0 p1"), ("n1", "plumb p0 p2"),
            ("n2", "plumb p1 p3"), ("n2", "plumb p1 p4"),
            ("n3", "plumb p2 p5"), ("n3", "plumb p2 p6"),
        ]:  # fmt: skip
            await c.ok(node, line)
        rows = await c.text("n1", "plumb")
        assert rows == "pipeline\nminimega//p0 minimega//p1\nminimega//p0 minimega//p2"

        await c.ok("n1", 'pipe p0 "Hello to you."')
        ns = "minimega//"
        await until_rows(c, "n1", [[f"{ns}p0", "2", "0", "1"], [f"{ns}p1", "0", "1", "1"],
                                   [f"{ns}p2", "0", "1", "1"]], COUNTS)  # fmt: skip
        await until_rows(c, "n2", [[f"{ns}p1", "2", "0", "1"], [f"{ns}p3", "0", "1", "1"],
                                   [f"{ns}p4", "0", "1", "1"]], COUNTS)  # fmt: skip
        await until_rows(c, "n3", [[f"{ns}p2", "2", "0", "1"], [f"{ns}p5", "0", "1", "1"],
                                   [f"{ns}p6", "0", "1", "1"]], COUNTS)  # fmt: skip

        # the writers of p1 and p2 are on n1: their mode there decides
        for p in ("p0", "p1", "p2"):
            await c.ok("n1", f"pipe {p} mode round-robin")
        for i in range(1, 5):
            await c.ok("n1", f'pipe p0 "This is round {i}."')
        await until_rows(c, "n1", [[f"{ns}p0", "round-robin", "5"], [f"{ns}p1", "round-robin", "3"],
                                   [f"{ns}p2", "round-robin", "3"]], "name,mode,count")  # fmt: skip
        await until_rows(
            c, "n2", [[f"{ns}p1", "3"], [f"{ns}p3", "2"], [f"{ns}p4", "2"]], "name,count"
        )
        await until_rows(
            c, "n3", [[f"{ns}p2", "3"], [f"{ns}p5", "2"], [f"{ns}p6", "2"]], "name,count"
        )


async def test_2_8s_distributed_recording_byte_for_byte(
    nats_url: str, tmp_path: Path, compat_dir: Path
) -> None:
    """2.8's ``distributed/plumbing_basic``: sed pipelines chained over mm1 -> mm2 -> mm3.

    2.8 ran it from the host that built the three-node cluster, so ``mesh send
    all`` reached all three; a fourth node plays that host here.
    """
    folder = compat_dir / "distributed"
    async with cluster(nats_url, tmp_path, ["host", "mm1", "mm2", "mm3"]) as c:
        await run_lines(c.client, script_lines(folder / "prolog"), node="host")
        got = await run_lines(c.client, script_lines(folder / "plumbing_basic"), node="host")
    assert got == (folder / "plumbing_basic.want").read_text()


async def test_a_writer_on_one_node_and_readers_on_two_others(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, NODES) as c:
        await c.ok("n2", "plumb wp out2")
        await c.ok("n3", "plumb wp out3")
        await c.ok("n1", "pipe wp first")
        await until_row(c, "n2", ["minimega//out2", "0", "1", "1", "first"])
        await until_row(c, "n3", ["minimega//out3", "0", "1", "1", "first"])
        # the writer's node counts what it wrote, though it has no reader
        assert await pipe_rows(c, "n1") == [["minimega//wp", "0", "0", "1", "first"]]

        # round-robin over the cluster's readers, in order: two each
        await c.ok("n1", "pipe wp mode round-robin")
        for i in range(4):
            await c.ok("n1", f"pipe wp v{i}")
        await until_row(c, "n2", ["minimega//out2", "0", "1", "3"], COUNTS)
        await until_row(c, "n3", ["minimega//out3", "0", "1", "3"], COUNTS)
        # every node that knows wp saw all five values
        for node in NODES:
            await until_row(c, node, ["minimega//wp", "5"], "name,count")

        # random: every value goes to exactly one of the two readers
        await c.ok("n1", "pipe wp mode random")
        for i in range(6):
            await c.ok("n1", f"pipe wp r{i}")

        async def delivered() -> int:
            total = 0
            for node, out in (("n2", "out2"), ("n3", "out3")):
                for row in await pipe_rows(c, node, "name,count"):
                    if row[0] == f"minimega//{out}":
                        total += int(row[1])
            return total

        async with asyncio.timeout(20):
            # remote state: polling is the only way
            while await delivered() != 6 + 6:  # noqa: ASYNC110
                await asyncio.sleep(0.05)


async def test_via_through_tr_runs_on_its_host_once_per_reader(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, NODES) as c:
        await c.ok("n2", "plumb v vout2")
        await c.ok("n3", "plumb v vout3")
        await c.ok("n1", "pipe v via tr a-z A-Z")
        assert await pipe_rows(c, "n1", "name,via") == [["minimega//v", "tr a-z A-Z"]]
        # written on n3: the write goes to n1, the via's host, which runs tr for each reader
        await c.ok("n3", 'pipe v "hello via"')
        await until_row(c, "n2", ["minimega//vout2", "0", "1", "1", "HELLO VIA"])
        await until_row(c, "n3", ["minimega//vout3", "0", "1", "1", "HELLO VIA"])

        await c.ok("n1", "clear pipe v via")
        await c.ok("n3", "pipe v plain")
        await until_row(c, "n2", ["minimega//vout2", "0", "1", "2", "plain"])


async def test_a_node_leaving_leaves_the_pipes_working(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, NODES) as c:
        await c.ok("n2", "plumb lv out2")
        await c.ok("n3", "plumb lv out3")
        await c.ok("n1", "pipe lv mode round-robin")
        await c.ok("n3", "pipe vx via tr a-z A-Z")
        await c.ok("n2", "plumb vx vxout")
        for i in range(2):
            await c.ok("n1", f"pipe lv before{i}")
        await until_row(c, "n2", ["minimega//out2", "1"], "name,count")
        await until_row(c, "n3", ["minimega//out3", "1"], "name,count")

        await c.nodes.pop("n3").stop()
        # every value now goes to the reader that is left, none is lost
        for i in range(4):
            await c.ok("n1", f"pipe lv after{i}")
        await until_row(c, "n2", ["minimega//out2", "5", "after3"], "name,count,previous")

        # the via left with its host: writes go on without it
        await c.settle(["n1", "n2"])
        await c.ok("n1", "pipe vx lowercase")
        await until_row(c, "n2", ["minimega//vxout", "1", "lowercase"], "name,count,previous")


async def test_pipe_names_with_wildcards_or_dots_are_refused(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["n1"]) as c:
        for line in (
            "pipe a.b x", 'pipe "a*" x', "pipe a> mode all", "pipe a.b log true",
            "pipe a.b via tr a b", "plumb in.x out", 'plumb in "o>ut"', "clear pipe x.y",
            "clear pipe x.y mode", "cc exec stdin=a.b cat", "cc background stdout=o* cat",
            "pipe ns.x//p x",
        ):  # fmt: skip
            errors = await c.errors("n1", line)
            assert len(errors) == 1, line
            assert errors[0].startswith("invalid pipe name "), (line, errors)
            assert "not allowed" in errors[0]
        assert await c.errors("n1", 'pipe "" x') == ["invalid pipe name '': empty"]
        # nothing was created; other characters are carried safely
        assert await pipe_rows(c, "n1") == []
        await c.ok("n1", 'plumb "a b" "c/d"')
        await c.ok("n1", 'pipe "a b" spaced')
        await until_rows(c, "n1", [["minimega//a b", "1", "0", "1", "spaced"],
                                   ["minimega//c/d", "0", "1", "1", "spaced"]])  # fmt: skip


async def test_a_via_that_dies_is_logged_and_the_pipe_goes_on(
    nats_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="megabus.pipes")
    dies = tmp_path / "dies.sh"
    dies.write_text("#!/bin/sh\nkill -9 $$\n")
    dies.chmod(0o755)
    async with cluster(nats_url, tmp_path, ["n1", "n2"]) as c:
        await c.ok("n2", "plumb d dout")
        await c.ok("n1", f"pipe d via {dies}")
        await c.ok("n1", "pipe d lost")
        await until_row(c, "n1", ["minimega//d", "1"], "name,count")
        await c.ok("n1", "pipe d via nosuchprogram-xyz")
        await c.ok("n1", "pipe d lost2")
        await until_row(c, "n1", ["minimega//d", "2"], "name,count")
        await c.ok("n1", "pipe d via false")
        await c.ok("n1", "pipe d lost3")
        await until_row(c, "n1", ["minimega//d", "3"], "name,count")
        texts = [r.getMessage() for r in caplog.records if r.name == "megabus.pipes"]
        assert any(f"via `{dies}` failed (killed by signal 9)" in t for t in texts), texts
        assert any("nosuchprogram-xyz not found in $PATH" in t for t in texts), texts
        assert any("via `false` failed (exit status 1)" in t for t in texts), texts
        # the reader got none of them, and the pipe works once the via is gone
        await c.ok("n1", "clear pipe d via")
        await c.ok("n1", "pipe d kept")
        await until_row(c, "n2", ["minimega//dout", "0", "1", "1", "kept"])


async def test_a_pipe_with_no_readers_drops_without_error(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["n1", "n2"]) as c:
        assert await c.errors("n1", "pipe nobody hello") == []
        await c.ok("n1", "pipe nobody mode round-robin")
        assert await c.errors("n1", "pipe nobody again") == []
        await c.ok("n1", "pipe nobody mode random")
        assert await c.errors("n1", "pipe nobody third") == []
        assert await pipe_rows(c, "n1") == [["minimega//nobody", "0", "0", "3", "third"]]
        assert await pipe_rows(c, "n2") == []  # a node that does not know a pipe ignores it


async def test_clear_plumb_and_clear_pipe_forms(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["n1"]) as c:
        await c.ok("n1", "plumb a b")
        assert await c.errors("n1", "plumb a b") == [
            "pipeline already exists: [minimega//a minimega//b]"
        ]
        assert await c.errors("n1", "clear plumb nope") == ["no such pipeline: [nope]"]
        assert await c.errors("n1", "clear pipe nope") == ["no such pipe: minimega//nope"]
        await c.ok("n1", "pipe a mode random")
        await c.ok("n1", "pipe a log true")
        await c.ok("n1", "pipe a via rev")
        assert await pipe_rows(c, "n1", "name,mode,via") == [
            ["minimega//a", "random", "rev"], ["minimega//b", "all", ""],
        ]  # fmt: skip
        await c.ok("n1", "clear pipe a mode")
        await c.ok("n1", "clear pipe a log")
        await c.ok("n1", "clear pipe a via")
        assert await pipe_rows(c, "n1", "name,mode,via") == [
            ["minimega//a", "all", ""], ["minimega//b", "all", ""],
        ]  # fmt: skip
        # b has the pipeline's writer; deleting a ends that pipeline
        assert await c.errors("n1", "clear pipe b") == [
            "cannot delete named pipe with open writers"
        ]
        await c.ok("n1", "clear pipe a")
        assert await c.text("n1", "plumb") == ""
        await c.ok("n1", "clear pipe b")
        # the listed form or the typed form of a pipeline both clear it
        await c.ok("n1", "plumb x y")
        await c.ok("n1", "plumb x z")
        await c.ok("n1", "clear plumb minimega//x minimega//y")
        await c.ok("n1", "clear plumb x z")
        assert await c.text("n1", "plumb") == ""
        # a writer that is not a pipeline's keeps its pipe; `clear pipe` says so
        writer = plumber(c.nodes["n1"]).writer("minimega//held")
        assert await c.errors("n1", "clear pipe") == ["cannot delete named pipe with open writers"]
        writer.close()
        await c.ok("n1", "clear pipe")
        assert await pipe_rows(c, "n1") == []


async def test_a_pipeline_through_an_external_program_and_its_end(
    nats_url: str, tmp_path: Path
) -> None:
    async with cluster(nats_url, tmp_path, NODES) as c:
        # line-buffered programs: a pipe carries lines as they come
        await c.ok("n2", 'plumb src "stdbuf -oL rev" mid')
        await c.ok("n3", 'plumb mid "sed -u s/hello/HELLO/" dst')
        await c.ok("n1", "pipe src olleh")
        await until_row(c, "n3", ["minimega//dst", "0", "1", "1", "HELLO"])
        # a program that ends ends its pipeline: readers and writers go
        await c.ok("n2", 'plumb once "head -n 1" once_out')
        await c.ok("n1", "pipe once one")
        await until_row(c, "n2", ["minimega//once_out", "0", "0", "1", "one"])
        assert await c.text("n2", "plumb") == "pipeline\nminimega//src stdbuf -oL rev minimega//mid"


async def test_data_far_larger_than_a_nats_message_goes_in_pieces(tmp_path: Path) -> None:
    server = await start_server(tmp_path / "small", max_payload=64 * 1024)
    try:
        async with cluster(server.client_url, tmp_path, ["n1", "n2"]) as c:
            reader = plumber(c.nodes["n2"]).reader("minimega//big")
            value = "".join(chr(0x41 + i % 26) for i in range(3 * 1024 * 1024)) + "é"
            await plumber(c.nodes["n1"]).write("minimega//big", value)
            async with asyncio.timeout(20):
                got = await reader.get()
            assert got == value + "\n"
            rows = await pipe_rows(c, "n2", "name,count")
            assert rows == [["minimega//big", "1"]]
            # beyond what a pipe carries at all: refused, clearly
            with pytest.raises(CommandError, match=f"over the {MAX_MESSAGE}-byte limit"):
                await plumber(c.nodes["n1"]).write("minimega//big", "x" * (MAX_MESSAGE + 1))
            reader.close()
    finally:
        await server.stop()


async def test_pipe_log_logs_every_value_that_passes_a_node(
    nats_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="megabus.pipes")
    async with cluster(nats_url, tmp_path, ["n1", "n2"]) as c:
        await c.ok("n2", "plumb lg lgout")
        await c.ok("n2", "pipe lg log true")
        await c.ok("n1", "pipe lg seen")
        await until_row(c, "n2", ["minimega//lgout", "1"], "name,count")
        await c.ok("n2", "clear pipe lg log")
        await c.ok("n1", "pipe lg unseen")
        await until_row(c, "n2", ["minimega//lgout", "2"], "name,count")
    texts = [r.getMessage() for r in caplog.records if r.name == "megabus.pipes"]
    assert "pipe minimega//lg: seen" in texts
    assert not any("unseen" in t for t in texts)
