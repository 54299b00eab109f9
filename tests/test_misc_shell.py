"""``shell`` and ``background`` as a user sees them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from nodes import MiniNode, transcript

SCRIPT = """# Should run, only get output from shell
shell echo hello world
background echo hello world

# Should have errors
shell definitelynotarealcommand
background definitelynotarealcommand"""

WANT = """## # Should run, only get output from shell
## shell echo hello world
hello world
## background echo hello world

## # Should have errors
## shell definitelynotarealcommand
E: exec: "definitelynotarealcommand": executable file not found in $PATH
## background definitelynotarealcommand
E: exec: "definitelynotarealcommand": executable file not found in $PATH
"""


async def test_shell_script_matches_2_8(node: MiniNode) -> None:
    assert await transcript(node, SCRIPT) == WANT


async def test_arguments_are_not_interpreted_by_a_shell(node: MiniNode) -> None:
    assert await node.text("shell echo 'a;b' '*' 'a  b'") == "a;b * a  b"


async def test_failures_report_go_texts(node: MiniNode, tmp_path: Path) -> None:
    assert await node.errors("shell false") == ["exit status 1"]
    assert await node.errors("shell sh -c 'echo oops >&2'") == ["oops\n"]
    missing = tmp_path / "nope"
    assert await node.errors(f"shell {missing}") == [
        f'exec: "{missing}": stat {missing}: no such file or directory'
    ]
    script = tmp_path / "noexec"
    script.write_text("#!/bin/sh\n")
    assert await node.errors(f"shell {script}") == [f'exec: "{script}": permission denied']


async def test_background_returns_at_once_and_reaps_the_process(
    node: MiniNode, tmp_path: Path
) -> None:
    flag = tmp_path / "done"
    assert await node.errors(f"background sh -c 'sleep 0.2; touch {flag}'") == []
    assert not flag.exists()
    for _ in range(200):
        if flag.exists() and not len(node.state.background):
            break
        await asyncio.sleep(0.02)
    assert flag.exists()
    assert not len(node.state.background)  # waited for, so no zombie is left
    assert not any(_is_zombie_child(p) for p in os.listdir("/proc") if p.isdigit())


def _is_zombie_child(pid: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] == "Z" and int(fields[1]) == os.getpid()
