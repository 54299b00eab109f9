"""Running helper programs from tests: no shell, a timeout, the output kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

#: Seconds any one helper program may take.
CALL_TIMEOUT = 60.0


async def run(
    *argv: str,
    timeout: float = CALL_TIMEOUT,  # noqa: ASYNC109
    cwd: str | Path | None = None,
) -> tuple[int, str]:
    """Run a program (no shell), in ``cwd`` if given; its exit status and combined output."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


async def must(*argv: str) -> str:
    """Run a program that must succeed; its output."""
    code, out = await run(*argv)
    assert code == 0, f"{' '.join(argv)}: {out}"
    return out
