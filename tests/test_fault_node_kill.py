"""Fault: SIGKILL of a node running 20 guests, then ``-recover``.

A real node process launches 20 real guests: containers (the ``minicccfs``
image: its init starts the cc agent), and in the second test 3 of them KVM
guests under TCG (``ops/guest_image.py``'s kernel and initrd, cc over
virtio-serial). Each cc command appends its letter to ``/marks`` in every
guest and prints the file. One command is sent and the node killed at once,
before its agents can have answered; the node restarted with ``-recover``
must have all 20 guests back (same pids), every agent connected again, and
each command run exactly once on every guest and answered: none lost, none
twice. (Twenty KVM guests under TCG do not boot in a test's time on a shared
two-core machine; three do.)
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from ccworld import guest_image
from noderecovery import alive, cc_active, cleanup, info, run, start, until

from megabus.bus.connection import Bus

pytestmark = pytest.mark.timeout(600)

GUESTS = 20
#: KVM guests (TCG) of the mixed test: each boots a kernel in software on a
#: shared two-core machine, so a few, beside containers, not twenty.
KVM_GUESTS = 3


@pytest.fixture(scope="module")
def image() -> tuple[Path, Path]:
    """The cc guest's kernel and initrd (``ops/guest_image.py``)."""
    return guest_image()


MARK = "sh -c 'echo {0} >> /marks; cat /marks'"


def stdouts(responses: Path, cmd_id: int) -> dict[str, str]:
    """uuid -> stdout of one command's responses."""
    folder = responses / str(cmd_id)
    if not folder.is_dir():
        return {}
    return {
        d.name: (d / "stdout").read_text() if (d / "stdout").exists() else ""
        for d in folder.iterdir()
    }


async def kill_and_recover(
    base: Path, nats_url: str, client: Bus, config: list[str], containers: int, kvm: int
) -> None:
    """Launch the guests, send A, send B and SIGKILL the node, recover, send C; check."""
    names = [f"c{i}" for i in range(1, containers + 1)] + [f"k{i}" for i in range(1, kvm + 1)]
    env = {"MEGABUS_ACCEL": "tcg"}  # KVM guests under TCG: the same on every machine
    # a kernel booting in software takes its time; containers answer in seconds
    tries = 3000 if kvm else 400
    node = await start(base, nats_url, recover=False, env=env)
    pids: list[int] = []
    try:
        for line in config:
            await run(client, line)
        if containers:
            await run(client, f"vm launch container c[1-{containers}]")
        if kvm:
            await run(client, f"vm launch kvm k[1-{kvm}]")
        await run(client, "vm start all")
        before = await info(client)
        live = {n: int(v["pid"]) for n, v in before.items()}
        pids += list(live.values())
        assert sorted(live) == sorted(names)
        uuids = {v["uuid"] for v in before.values()}
        await cc_active(client, *names, tries=tries)
        responses = base / "files" / "miniccc_responses"

        def said(cmd_id: int, text: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                got = await asyncio.to_thread(stdouts, responses, cmd_id)
                return set(got) == uuids and all(v == text for v in got.values())

            return check

        await run(client, "cc exec " + MARK.format("A"))
        await until(said(1, "A\n"), "A from every guest", tries)
        # B is in the node's command stream, but the node dies before (or
        # while) its agents get it and answer
        await run(client, "cc exec " + MARK.format("B"))
        node.send_signal(signal.SIGKILL)
        await node.wait()
        assert [n for n, p in live.items() if not alive(p)] == []

        node = await start(base, nats_url, recover=True, env=env)
        after = await info(client)
        assert {n: v["state"] for n, v in after.items()} == dict.fromkeys(names, "RUNNING")
        assert {n: int(v["pid"]) for n, v in after.items()} == live
        await cc_active(client, *names, tries=tries)
        await run(client, "cc exec " + MARK.format("C"))
        # every guest ran A, B and C once each, in order, and answered each once
        await until(said(3, "A\nB\nC\n"), "C from every guest, after A and B once each", tries)
        await until(said(2, "A\nB\n"), "B's answer from every guest", tries)
        await run(client, "clear all")
        assert [p for p in pids if alive(p)] == []
    finally:
        if node.returncode is None:
            node.send_signal(signal.SIGKILL)
            await node.wait()
        cleanup(base, pids, "")


async def test_twenty_containers_come_back_and_cc_runs_each_command_once(
    tmp_path: Path, nats_url: str, client: Bus, minicccfs: Path
) -> None:
    config = [f"vm config filesystem {minicccfs}"]
    await kill_and_recover(tmp_path / "base", nats_url, client, config, GUESTS, 0)


async def test_containers_and_kvm_guests_come_back_and_cc_runs_each_command_once(
    tmp_path: Path, nats_url: str, client: Bus, minicccfs: Path, image: tuple[Path, Path]
) -> None:
    kernel, initrd = image
    config = [
        f"vm config filesystem {minicccfs}",
        f"vm config kernel {kernel}",
        f"vm config initrd {initrd}",
        "vm config append console=ttyS0 quiet",
        "vm config memory 512",
    ]
    await kill_and_recover(
        tmp_path / "base", nats_url, client, config, GUESTS - KVM_GUESTS, KVM_GUESTS
    )
