"""read, history, write, log, status updates, version, echo, help and clear all."""

from __future__ import annotations

import logging
from importlib.metadata import version
from pathlib import Path

from nodes import MiniNode

from megabus.handlers.commands.misc import tab_table
from megabus.handlers.language.gotime import format_duration, parse_duration


async def test_read_runs_each_line_in_its_namespace_and_records_the_lines(
    node: MiniNode, tmp_path: Path
) -> None:
    script = tmp_path / "s.mm"
    script.write_text("# set up\necho one\n\nnamespace foo\nvlans add x 200\necho two\r\n")
    batches = await node.run(f"read {script}")
    assert [b[0].response for b in batches if b[0].response] == ["one", "two"]
    assert node.state.active == "foo"
    assert node.state.vlans.aliases("foo") == [("x", 200)]
    assert node.state.history == [
        "# set up",
        "echo one",
        "namespace foo",
        "vlans add x 200",
        "echo two",
    ]


async def test_read_check_only_compiles_and_stops_at_a_bad_line(
    node: MiniNode, tmp_path: Path
) -> None:
    script = tmp_path / "bad.mm"
    script.write_text("vlans add x 200\nfrobnicate\necho never\n")
    assert await node.errors(f"read {script} check") == ["bad.mm:2 invalid command: `frobnicate`"]
    assert node.state.vlans.aliases("minimega") == []
    assert await node.errors(f"read {script}") == ["bad.mm:2 invalid command: `frobnicate`"]
    assert node.state.vlans.aliases("minimega") == [("x", 200)]
    nested = tmp_path / "nested.mm"
    nested.write_text(f"read {script}\n")
    assert await node.errors(f"read {nested}") == ["nested.mm:1 cannot run nested `read` commands"]
    missing = tmp_path / "missing"
    assert await node.errors(f"read {missing}") == [f"open {missing}: no such file or directory"]


async def test_history_clear_history_and_write(node: MiniNode, tmp_path: Path) -> None:
    await node.run("echo a")
    await node.run("# note")
    assert await node.text("history") == "echo a\n# note"
    out = tmp_path / "h.mm"
    await node.run(f"write {out}")
    assert out.read_text() == "echo a\n# note\nhistory"
    await node.run("clear history")
    assert node.state.history == []
    assert await node.errors(f"write {tmp_path}/no/such/dir/f") == [
        f"open {tmp_path}/no/such/dir/f: no such file or directory"
    ]


async def test_log_commands_change_python_logging(node: MiniNode, tmp_path: Path) -> None:
    assert await node.text("log level") == "error"
    await node.run("log level debug")
    assert logging.getLogger("megabus").level == logging.DEBUG
    assert await node.text("log level") == "debug"
    assert await node.text("log stderr") == "false"
    logfile = tmp_path / "logs" / "mb.log"
    await node.run(f"log file {logfile}")
    assert await node.text("log file") == str(logfile)
    await node.run("log filter secret")
    await node.run("log ring 2")
    logging.getLogger("megabus.test").info("hello file")
    logging.getLogger("megabus.test").info("a secret line")
    assert "hello file" in logfile.read_text()
    assert "secret" not in logfile.read_text()
    assert await node.text("log filter") == "[secret]"
    assert "hello file" in await node.text("log ring")
    assert await node.text("log mesh") == "mesh logging disabled"
    await node.run("log mesh head")
    assert await node.text("log mesh") == "sending all logs to node head"
    assert await node.errors("log ring x") == ['strconv.Atoi: parsing "x": invalid syntax']
    await node.run("clear log")
    assert await node.text("log level") == "error"
    assert await node.text("log file") == ""
    assert await node.text("log mesh") == "mesh logging disabled"
    assert await node.errors("log ring") == ["cannot dump log ring, not enabled"]


async def test_status_updates(node: MiniNode) -> None:
    assert await node.text("status updates") == "status update frequency: 3s"
    await node.run("status updates 1m30s")
    assert node.state.status_frequency == 90
    assert await node.text("status update") == "status update frequency: 1m30s"
    await node.run("status updates 0")
    assert await node.text("status updates") == "status updates disabled"
    for bad in ["5", "abc", "-1s", "1x"]:
        assert await node.errors(f"status updates {bad}") == ["invalid frequency duration provided"]


def test_go_durations_round_trip() -> None:
    cases = {"3s": "3s", "1.5h": "1h30m0s", "500ms": "500ms", "1m": "1m0s", "2h45m": "2h45m0s"}
    for text, shown in cases.items():
        assert format_duration(parse_duration(text)) == shown
    assert format_duration(1_500) == "1.5µs"


async def test_version_echo_and_help(node: MiniNode) -> None:
    assert await node.text("version") == f"megabus {version('megabus')}"
    assert await node.text("echo") == ""
    assert await node.text("echo a   'b c'") == "a b c"
    listing = await node.text("help")
    assert listing.startswith("Display help on a command. Here is a list of commands:\n")
    assert "\nvlans <add,> <alias> <vlan> \t" in listing
    assert await node.text("help vlans") == await node.text("help vl")
    usage = await node.text("help clear history")
    assert usage == (
        "Usage:\n\tclear history\n\nReset the command history. "
        'See "help history" for more information.'
    )
    assert await node.text("help nosuch") == "no help entry for `nosuch`"


def test_help_listing_aligns_with_tabs_as_go_tabwriter() -> None:
    rows = [["echo [args]... ", " :", " x ", ""], ["version ", " :", " long text ", ""]]
    # widest first cell is 15 wide: columns round up to 16, cells pad with tabs
    assert tab_table(rows) == ("echo [args]... \t :\t x \t\t\nversion \t :\t long text \t\n")


async def test_clear_all_clears_namespaces_vlans_and_history(node: MiniNode) -> None:
    await node.run("namespace foo")
    await node.run("vlans add a 300")
    await node.run("vlans blacklist 12")
    await node.run("clear all")
    assert node.state.active == "minimega"
    assert sorted(node.state.namespaces) == ["minimega"]
    assert node.state.vlans.blacklisted() == []
    assert node.state.history == ["clear all"]
