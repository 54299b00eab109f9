"""Open vSwitch for the network tests: started with ``ops/ovs.sh`` if none runs.

Import the fixtures into a test module (``from ovsfix import ovs``). The
session fixture starts a private switch only when no switch answers, and
stops it again at the end of the session; a switch that ran before is left
alone. Names made by tests come from :func:`unique`, so tests never collide
with each other or with a user's bridges.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OVS_SH = REPO / "ops" / "ovs.sh"

_counter = itertools.count()


def unique(prefix: str) -> str:
    """A link name no other test uses: ``prefix`` + pid + counter, at most 15 characters."""
    name = f"{prefix}{os.getpid() % 1000}x{next(_counter)}"
    assert len(name) <= 15, name
    return name


@pytest.fixture(scope="session")
def ovs() -> Iterator[None]:
    """A running Open vSwitch (the test fails if it cannot start)."""
    status = subprocess.run([OVS_SH, "status"], capture_output=True, text=True, check=False)
    started = status.returncode != 0
    if started:
        run = subprocess.run([OVS_SH, "start"], capture_output=True, text=True, check=False)
        assert run.returncode == 0, f"ops/ovs.sh start failed:\n{run.stdout}{run.stderr}"
    try:
        yield
    finally:
        if started:
            subprocess.run([OVS_SH, "stop"], capture_output=True, check=False)
