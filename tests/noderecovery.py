"""Node processes started through ``ops/mm-recover.sh``, as ``-recover`` tests need them."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEGABUS = str(Path(os.environ.get("VIRTUAL_ENV") or REPO / ".venv") / "bin" / "megabus")
SCRIPT = REPO / "ops" / "mm-recover.sh"
NODE = "rec"
#: Bounded waits: this many tries, POLL seconds apart.
TRIES = 300
POLL = 0.1


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def start(base: Path, url: str, *, recover: bool) -> asyncio.subprocess.Process:
    """A node process through ops/mm-recover.sh; returns once it answers."""
    info = base / "megabus.json"
    with contextlib.suppress(FileNotFoundError):
        info.unlink()  # a killed node leaves its own behind
    env = dict(os.environ)
    env.update(
        MEGABUS=MEGABUS,
        MM_BASE=str(base),
        MM_NAME=NODE,
        MM_NATS=url,
        MM_LOGLEVEL="error",
        MM_RECOVER="true" if recover else "false",
    )
    proc = await asyncio.create_subprocess_exec(
        "sh", str(SCRIPT), env=env, stdin=asyncio.subprocess.DEVNULL
    )
    for _ in range(TRIES):
        if info.exists() or proc.returncode is not None:
            break
        await asyncio.sleep(POLL)
    assert info.exists(), f"node did not start (status {proc.returncode})"
    return proc
