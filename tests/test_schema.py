"""The published schema: ``megabus schema``, and a program that knows nothing but it."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import msgspec
from procs import must
from solonode import solo_node

from megabus.bus.schema import NOT_SUBJECTS, SCHEMA_VERSION, SUBJECTS
from megabus.bus.subjects import Subjects
from megabus.handlers import commands
from megabus.handlers.node import registry

MEGABUS = str(Path(sys.executable).parent / "megabus")
PROGRAM = Path(__file__).parent / "programs" / "schema_only.py"


def test_every_subject_builder_is_published() -> None:
    builders = {
        name
        for name, _ in inspect.getmembers(Subjects, inspect.isfunction)
        if not name.startswith("_")
    }
    published = {entry[0] for entry in SUBJECTS}
    assert builders == published | set(NOT_SUBJECTS)
    assert not published & set(NOT_SUBJECTS)
    # a wildcard names the subject it covers
    assert {v for v in NOT_SUBJECTS.values() if v} <= published


async def test_megabus_schema_prints_subjects_messages_and_every_command() -> None:
    doc = json.loads(await must(MEGABUS, "schema"))
    assert doc["type"] == "megabus.schema.v1"
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["subject_version"] == "v1"
    by_name = {s["name"]: s for s in doc["subjects"]}
    cmd = by_name["node_cmd"]
    assert cmd["subject"] == "{prefix}.v1.node.{node}.cmd"
    assert (cmd["kind"], cmd["direction"]) == ("request", "client -> node")
    assert cmd["replies"] == ["CommandReply", "CommandWorking", "ErrorReply"]
    assert by_name["event"]["subject"] == "{prefix}.v1.event.{namespace}.{kind}"
    # every message a subject names has its JSON Schema, with its versioned tag
    for spec in doc["subjects"]:
        for name in spec["messages"] + spec["replies"]:
            assert name in doc["messages"], name
    tag = doc["messages"]["CommandRequest"]["properties"]["type"]["enum"]
    assert tag == ["megabus.cmd.v1.request"]
    assert doc["messages"]["CommandRequest"]["required"] == ["type", "line"]
    # the command table is the registry's, whatever families are loaded
    commands.load()
    table = [(c["patterns"], c["family"], c["kind"]) for c in doc["commands"]]
    expected = [
        (list(h.patterns), h.func.__module__.rsplit(".", 1)[-1], h.kind) for h in registry.HANDLERS
    ]
    assert table == expected
    assert {c["family"] for c in doc["commands"]} == set(commands.FAMILIES)


async def test_a_program_that_knows_only_the_schema_drives_a_node(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(await must(MEGABUS, "schema"))
    async with solo_node(tmp_path / "base") as solo:
        # the node serves the same document, its name filled in
        served = await solo.node.bus.nc.request(
            solo.node.bus.subjects.node_schema("solo"), b"", timeout=10
        )
        doc = msgspec.json.decode(served.data)
        assert doc["node"] == "solo"
        assert doc["commands"] == json.loads(schema.read_text())["commands"]

        # -I: no user site, no PYTHONPATH; the program imports nats and json only
        out = await must(
            sys.executable, "-I", str(PROGRAM), str(schema), solo.url, str(solo.operator), "solo"
        )
    got = json.loads(out.splitlines()[-1])
    assert got["vlans"] == [[["lab", "301"]]]
    assert got["error"] == ["alias already in use"]
    assert got["events"] == [
        ["sch1", "launch", "BUILDING"],
        ["sch1", "state", "QUIT"],
        ["sch1", "flush", "QUIT"],
    ]
    assert got["megabus_modules"] == []
