"""``megabus attach`` driven through its standard input, against a real node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from compat import running_node
from megabuscmd import megabus


@pytest.fixture
async def base(nats_url: str, tmp_path: Path) -> AsyncIterator[str]:
    async with running_node(nats_url, name="n1", base=tmp_path / "base"):
        yield str(tmp_path / "base")


async def test_attach_runs_lines_until_disconnect(base: str) -> None:
    rc, out, err = await megabus(
        "-base", base, "attach", stdin="echo hello\n\nvlans add foo bad\ndisconnect\necho never\n"
    )
    assert rc == 0
    assert "megabus:n1$ " in out
    assert "hello\n" in out
    assert "never" not in out
    assert err.startswith("Error (n1): ")


async def test_attach_shows_the_namespace_in_the_prompt(base: str) -> None:
    rc, out, _ = await megabus("-base", base, "-namespace", "foo", "attach", stdin="")
    assert rc == 0
    assert "megabus:n1[foo]$ " in out


async def test_quit_must_be_given_twice(base: str) -> None:
    rc, out, _ = await megabus("-base", base, "attach", stdin="quit\necho still here\n")
    assert rc == 0
    assert "enter 'quit' again" in out
    assert "still here\n" in out
