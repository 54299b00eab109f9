"""Fault: a guest paused for 60 s; its agent answers again within 15 s of the resume.

A real container (``minicccfs``, its agent started by its init) is frozen
with ``vm stop`` (the freezer cgroup: every process of the guest stops, as
SIGSTOP would) for 60 s, far past both sides' 13 s silence timeout. After
``vm start`` a cc command must be answered within 15 s, and one sent while
the guest was frozen runs too, once.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from ccworld import wait_for
from noderecovery import alive, cc_active, cleanup, info, run, start

from megabus.bus.connection import Bus

pytestmark = pytest.mark.timeout(300)

PAUSE = 60.0
#: The issue's bound: a resumed guest's agent answers within this many seconds.
ANSWER_WITHIN = 15.0


async def test_a_guest_paused_a_minute_answers_soon_after_it_resumes(
    tmp_path: Path, nats_url: str, client: Bus, minicccfs: Path
) -> None:
    base = tmp_path / "base"
    node = await start(base, nats_url, recover=False)
    pids: list[int] = []
    try:
        await run(client, f"vm config filesystem {minicccfs}")
        await run(client, "vm launch container g1")
        await run(client, "vm start g1")
        vm = (await info(client))["g1"]
        pids.append(int(vm["pid"]))
        await cc_active(client, "g1")
        responses = base / "files" / "miniccc_responses"

        def said(word: str) -> list[str]:
            return [
                p.read_text()
                for p in responses.glob(f"*/{vm['uuid']}/stdout")
                if word in p.read_text()
            ]

        async def answered(word: str) -> bool:
            return bool(await asyncio.to_thread(said, word))

        await run(client, "cc exec echo before")
        await wait_for(lambda: answered("before"), "the first answer")

        await run(client, "vm stop g1")
        await run(client, "cc exec echo while-paused")
        await asyncio.sleep(PAUSE)  # the fault itself: a minute without the guest
        assert not await answered("while-paused")
        await run(client, "vm start g1")
        await run(client, "cc exec echo after")
        await wait_for(lambda: answered("after"), "the answer after the resume", ANSWER_WITHIN)
        await wait_for(lambda: answered("while-paused"), "the command sent while paused")
        assert len(said("while-paused")) == 1
        assert alive(pids[0])
        await run(client, "clear all")
    finally:
        if node.returncode is None:
            node.send_signal(signal.SIGKILL)
            await node.wait()
        cleanup(base, pids, "")
