"""The ``file`` family on a real node: list (2.8's columns), delete, get, stream, bad paths."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nodes import MiniNode, node_at

from megabus.bus.server import EmbeddedServer


@pytest.fixture
async def fnode(tmp_path: Path) -> AsyncIterator[tuple[MiniNode, Path]]:
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "file", base=tmp_path / "base") as n,
    ):
        files = Path(n.state.settings.files_dir)
        (files / "snapshots" / "matrix").mkdir(parents=True)
        (files / "snapshots" / "matrix" / "neo1.migrate").write_bytes(b"x" * 10)
        (files / "snapshots" / "matrix" / "launch.mm").write_text("vm start all\n")
        (files / "foo.migrate").write_bytes(b"abc")
        (files / ".hidden").write_text("")
        yield n, files


def table(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")] for line in text.splitlines()]


async def test_list_root_children_with_28_columns(fnode: tuple[MiniNode, Path]) -> None:
    node, _ = fnode
    rows = table(await node.text("file list"))
    assert rows[0] == ["dir", "name", "size", "modified"]
    by_name = {r[1]: r for r in rows[1:]}
    assert set(by_name) == {".hidden", "foo.migrate", "snapshots"}
    assert by_name["snapshots"][0] == "<dir>"
    assert by_name["foo.migrate"][0] == ""
    assert by_name["foo.migrate"][2] == "3"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", by_name["foo.migrate"][3]
    )


async def test_list_subdir_names_are_relative_to_files(fnode: tuple[MiniNode, Path]) -> None:
    node, _ = fnode
    out = await node.text(".column dir,name file list snapshots/matrix/")
    assert table(out) == [
        ["dir", "name"],
        ["", "snapshots/matrix/launch.mm"],
        ["", "snapshots/matrix/neo1.migrate"],
    ]
    # recursive lists files only, at any depth
    out = await node.text(".column name file list / recursive")
    assert [r[0] for r in table(out)[1:]] == [
        ".hidden",
        "foo.migrate",
        "snapshots/matrix/launch.mm",
        "snapshots/matrix/neo1.migrate",
    ]


async def test_filter_matches_28s_compat_form(fnode: tuple[MiniNode, Path]) -> None:
    node, _ = fnode
    out = await node.text(".filter name=foo.migrate .column dir,name file list")
    assert out == "dir  | name\n     | foo.migrate"
    assert await node.text(".filter name=nothing .column dir,name file list") == ""


async def test_globs_and_missing_paths(fnode: tuple[MiniNode, Path]) -> None:
    node, _ = fnode
    out = await node.text(".column name file list snapshots/matrix/*.mm")
    assert table(out)[1:] == [["snapshots/matrix/launch.mm"]]
    assert await node.text("file list no/such/dir") == ""
    assert await node.errors("file list no/such/dir") == []


async def test_delete_file_dir_glob_and_never_above_root(fnode: tuple[MiniNode, Path]) -> None:
    node, files = fnode
    outside = files.parent / "keep.txt"
    outside.write_text("outside the files dir")
    assert await node.errors("file delete ../keep.txt") == []
    assert outside.exists()
    assert await node.errors("file delete foo.migrate") == []
    assert not (files / "foo.migrate").exists()
    assert await node.errors("file delete snapshots/matrix/*.migrate") == []
    assert sorted(os.listdir(files / "snapshots" / "matrix")) == ["launch.mm"]
    assert await node.errors("file delete snapshots/") == []
    assert not (files / "snapshots").exists()
    # deleting the root empties it but keeps it
    assert await node.errors("file delete /") == []
    assert files.is_dir()
    assert os.listdir(files) == []
    # nothing to delete is not an error in 2.8
    assert await node.errors("file delete nothing-here") == []


async def test_get_on_one_node_and_stream(fnode: tuple[MiniNode, Path]) -> None:
    node, _ = fnode
    assert await node.errors("file get foo.migrate") == []
    batches = await node.run("file stream foo.migrate")
    data = [r.data for b in batches for r in b]
    assert base64.b64decode(data[0]) == b"abc"
    errors = await node.errors("file stream missing.bin")
    assert len(errors) == 1
    assert "missing.bin: no such file or directory" in errors[0]
    assert await node.text("file status") == ""
