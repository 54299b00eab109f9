"""``ops/fuzz.py``, the live fuzzer: what it refuses to send, and a short run.

The node it fuzzes runs as root, so the lines it lets through are what keeps
the machine safe: ``shell`` only with ``echo``/``true``, ``plumb`` without
programs, no ``pipe ... via``, no ``cc mount``, and nobody but the fuzzer in
its ``vm launch`` namespace. A short run against a real node must answer
every case, with no internal error and the node alive.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest
from procs import run

from megabus.handlers import commands
from megabus.handlers.node import dispatch

FUZZ_PY = Path(__file__).resolve().parent.parent / "ops" / "fuzz.py"


@pytest.fixture(scope="module")
def fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("megabus_ops_fuzz", FUZZ_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("line", "sent"),
    [
        ("shell echo hi; rm -rf /", True),  # echo's arguments, no shell reads them
        ("shell true", True),
        ("background echo x", True),
        ("shell rm -rf /", False),
        ("sh rm -rf /", False),  # minicli's prefixes are the grammar's business
        ("background sleep 100", False),
        ("plumb p0 p1", True),
        ("plumb p0 rm", False),
        ('plumb p0 "sh -c x"', False),
        ("pipe p0 via sh", False),
        ("pipe p0 hello", True),
        ("cc exec rm -rf /", True),  # queued for agents that never connect
        ("cc mount 0 /tmp/x", False),
        ("namespace fuzzvms vm config volume /x /", False),
        ("namespace other vm config volume /x /", True),
        ("clear namespace all", False),
        ("vm launch container c1", False),
        (".columns name namespace fuzzvms vm kill all", False),
        ("file delete x", False),
    ],
)
def test_only_safe_lines_reach_the_node(fuzz: ModuleType, line: str, sent: bool) -> None:
    commands.load()
    cases = fuzz.Cases(random.Random(1), dispatch.load_grammar())
    assert cases.safe(line) is sent


async def test_a_short_live_run_answers_every_case(tmp_path: Path) -> None:
    code, out = await run(
        sys.executable, str(FUZZ_PY), "--cases", "600", "--seed", "3", timeout=300
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["findings"] == []
    assert result["answered"] == result["cases"] == 600
    assert result["node_alive"]
    assert result["running_after"] == 0
    assert code == 0
