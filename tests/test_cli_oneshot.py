"""``megabus -e`` and ``megabus read`` as a user runs them: a subprocess against a real node."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from compat import running_node
from megabuscmd import megabus


@pytest.fixture
async def base(nats_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """A running node ``n1``; clients find it through ``<base>/megabus.json``."""
    async with running_node(nats_url, name="n1", base=tmp_path / "base"):
        yield str(tmp_path / "base")


async def test_version_prints_and_succeeds(base: str) -> None:
    rc, out, err = await megabus("-base", base, "-e", "version")
    assert (rc, err) == (0, "")
    assert out.strip()
    assert out.endswith("\n")


async def test_arguments_with_spaces_are_requoted(base: str) -> None:
    rc, out, _ = await megabus("-base", base, "-e", "echo", "a  b", "c")
    assert rc == 0
    assert out == "n1: a  b c\n"  # annotated with the host, as minimega -e does


async def test_failed_command_prints_error_line_and_exits_1(base: str) -> None:
    rc, out, err = await megabus("-base", base, "-e", "vlans", "add", "foo", "notavlan")
    assert rc == 1
    assert out == ""
    assert err.startswith("Error (n1): ")
    assert err.endswith("\n")


async def test_json_prints_one_line_per_batch(base: str) -> None:
    rc, out, _ = await megabus("-base", base, "-json", "-e", "echo", "hi")
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) == 1
    # minimega's JSON: Go's field names, as `.json true` renders them
    assert json.loads(lines[0]) == [
        {"Host": "n1", "Response": "hi", "Header": None, "Tabular": None, "Error": "", "Data": None}
    ]


async def test_missing_node_is_named_and_exits_2(base: str, nats_url: str) -> None:
    rc, out, err = await megabus("-nats", nats_url, "-node", "ghost", "-e", "version")
    assert rc == 2
    assert out == ""
    assert "ghost" in err
    assert "Traceback" not in err


async def test_unreachable_server_is_named_and_exits_2(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"nats://127.0.0.1:{s.getsockname()[1]}"
    rc, _, err = await megabus("-base", str(tmp_path), "-nats", url, "-e", "version")
    assert rc == 2
    assert url in err
    assert "Traceback" not in err


async def test_read_runs_each_line_in_order(base: str, tmp_path: Path) -> None:
    script = tmp_path / "script.mm"
    script.write_text("echo one\n\necho two\nvlans add foo notavlan\necho three\n")
    rc, out, err = await megabus("-base", base, "read", str(script))
    assert rc == 1  # one line failed; the others still ran
    assert out == "n1: one\nn1: two\nn1: three\n"
    assert err.startswith("Error (n1): ")


async def test_read_missing_file_is_a_clear_error(base: str, tmp_path: Path) -> None:
    rc, _, err = await megabus("-base", base, "read", str(tmp_path / "nope"))
    assert rc == 2
    assert "nope" in err
    assert "Traceback" not in err
