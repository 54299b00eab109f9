"""Command-line mistakes get a clear message and exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MEGABUS = str(Path(sys.executable).parent / "megabus")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MEGABUS, *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-bogus"], "flag provided but not defined: -bogus"),
        (["-e"], "-e needs a command"),
        (["-timeout", "soon", "-e", "version"], "invalid timeout"),
        (["-nats"], "flag needs an argument: -nats"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["events", "nonsense"], "unknown event kind 'nonsense'"),
        (["node", "-vlanrange", "5-1"], "invalid vlan range"),
        (["node", "-recover=maybe"], "invalid boolean value"),
    ],
)
def test_bad_command_lines(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_forms() -> None:
    result = run("-h")
    assert result.returncode == 0
    for form in ("megabus node", "-e <command...>", "attach", "read FILE", "events", "status"):
        assert form in result.stdout
