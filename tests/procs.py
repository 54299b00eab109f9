"""Running helper programs from tests: no shell, a timeout, the output kept."""

from __future__ import annotations

import asyncio

#: Seconds any one helper program may take.
CALL_TIMEOUT = 60.0


async def run(*argv: str, timeout: float = CALL_TIMEOUT) -> tuple[int, str]:  # noqa: ASYNC109
    """Run a program (no shell); its exit status and combined output."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
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
