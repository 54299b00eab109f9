"""The ``megabus`` console script as a user runs it, without blocking the event loop."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

MEGABUS = str(Path(sys.executable).parent / "megabus")


async def megabus(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Run the console script without blocking the loop the node runs on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEGABUS_")}
    proc = await asyncio.create_subprocess_exec(
        MEGABUS,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
