"""Fault: SIGKILL of a node running 20 guests, then ``-recover``.

A real node process launches 20 real containers (the ``minicccfs`` image: its
init starts the cc agent). Each cc command appends its letter to ``/marks``
inside every container. One command is sent and the node killed at once,
before its agents can have answered; the node restarted with ``-recover``
must have all 20 containers back (same pids), every agent connected again,
and each command run exactly once on every guest: none lost, none twice.

KVM guests under TCG are left out here: 20 of them do not boot in a test's
time on a shared two-core machine; ``test_vm_recover.py`` recovers KVM.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from noderecovery import alive, cc_active, cleanup, info, run, start, until

from megabus.bus.connection import Bus

pytestmark = pytest.mark.timeout(600)

GUESTS = 20
NAMES = [f"c{i}" for i in range(1, GUESTS + 1)]


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[Bus]:
    bus = await Bus.connect([nats_url], name="client")
    try:
        yield bus
    finally:
        await bus.close()


def marks(pid: int) -> str:
    """What the cc commands appended to ``/marks`` in the container whose init is ``pid``."""
    try:
        return Path(f"/proc/{pid}/root/marks").read_text()
    except FileNotFoundError:
        return ""


async def all_marked(pids: dict[str, int], want: str) -> None:
    async def check() -> bool:
        seen = await asyncio.to_thread(lambda: {n: marks(p) for n, p in pids.items()})
        return all(want in s for s in seen.values())

    await until(check, f"{want!r} in every guest's /marks")


async def test_twenty_containers_come_back_and_cc_runs_each_command_once(
    tmp_path: Path, nats_url: str, client: Bus, minicccfs: Path
) -> None:
    base = tmp_path / "base"
    node = await start(base, nats_url, recover=False)
    pids: list[int] = []
    try:
        await run(client, f"vm config filesystem {minicccfs}")
        await run(client, f"vm launch container c[1-{GUESTS}]")
        await run(client, "vm start all")
        before = await info(client)
        live = {n: int(v["pid"]) for n, v in before.items()}
        pids += list(live.values())
        assert sorted(live) == sorted(NAMES)
        await cc_active(client, *NAMES)

        await run(client, "cc exec sh -c 'echo A >> /marks'")
        await all_marked(live, "A\n")
        # B is in the node's command stream, but the node dies before (or
        # while) its agents get it
        await run(client, "cc exec sh -c 'echo B >> /marks'")
        node.send_signal(signal.SIGKILL)
        await node.wait()
        assert [n for n, p in live.items() if not alive(p)] == []

        node = await start(base, nats_url, recover=True)
        after = await info(client)
        assert {n: v["state"] for n, v in after.items()} == dict.fromkeys(NAMES, "RUNNING")
        assert {n: int(v["pid"]) for n, v in after.items()} == live
        await cc_active(client, *NAMES)
        await run(client, "cc exec sh -c 'echo C >> /marks'")
        await all_marked(live, "C\n")
        seen = {n: marks(p) for n, p in live.items()}
        assert seen == dict.fromkeys(NAMES, "A\nB\nC\n")

        # every command's responses are on disk once per guest
        responses = base / "files" / "miniccc_responses"
        uuids = {v["uuid"] for v in after.values()}

        async def answered() -> bool:
            dirs = sorted(p for p in responses.iterdir() if p.is_dir())
            return len(dirs) == 3 and all({u.name for u in d.iterdir()} == uuids for d in dirs)

        try:
            await until(answered, "three commands' responses from every guest")
        except AssertionError:
            got = {d.name: len(list(d.iterdir())) for d in responses.iterdir()}
            raise AssertionError(f"responses per command: {got}") from None
        await run(client, "clear all")
        assert [p for p in pids if alive(p)] == []
    finally:
        if node.returncode is None:
            node.send_signal(signal.SIGKILL)
            await node.wait()
        cleanup(base, pids, "")
