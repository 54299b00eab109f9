"""cc over virtio-serial for real: a KVM guest (TCG) booted from ``ops/guest_image.py``'s image.

The node launches QEMU with its ``<inst>/cc`` chardev and dials it on the
first ``vm start``; the guest's init starts ``megabus agent -serial
/dev/virtio-ports/cc``. Then the guest is paused with ``vm stop`` for 30 s,
longer than the agent's 13 s silence limit and the node's 30 s client expiry,
and resumed: the agent redials over the same port and the next command
reaches it (2.8's #1459). Then the node drops the port's socket and dials
it again, as a restarted node would, and the agent comes back. TCG, since
this host's nested KVM hangs booting Linux (machine notes).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ccworld import CcWorld, cc_world, guest_image, wait_for

#: A TCG boot, a 30 s pause and a redial; building the image first may download a kernel.
pytestmark = pytest.mark.timeout(300)

#: The pause the issue asks for: past the agent's 13 s and the node's 30 s.
PAUSE = 30.0


@pytest.fixture(scope="module")
def image() -> tuple[Path, Path]:
    return guest_image()


@pytest.fixture
async def world(nats_url: str, tmp_path: Path) -> AsyncIterator[CcWorld]:
    async with cc_world(nats_url, tmp_path / "node") as w:
        w.state.settings.accel = "tcg"
        try:
            yield w
        finally:
            await w.run("vm kill all")
            await w.run("vm flush")


async def _uuid(world: CcWorld, name: str) -> str:
    vm = world.state.vms.find("minimega", name)
    assert vm is not None
    return vm.uuid


async def _answer(world: CcWorld, cmd_id: int, uuid: str) -> str:
    out = world.files / "miniccc_responses" / str(cmd_id) / uuid / "stdout"

    async def there() -> bool:
        return out.exists()

    await wait_for(there, f"response {cmd_id} from the guest", limit=60)
    return out.read_text()


async def test_guest_agent_over_virtio_serial_survives_a_long_pause(
    world: CcWorld, image: tuple[Path, Path]
) -> None:
    kernel, initrd = image
    for line in (
        f"vm config kernel {kernel}",
        f"vm config initrd {initrd}",
        "vm config append console=ttyS0 quiet",
        "vm config memory 512",
        "vm launch kvm guest",
        "vm start guest",
    ):
        await world.ok(line)
    uuid = await _uuid(world, "guest")

    async def connected() -> bool:
        return uuid in await world.clients()

    await wait_for(connected, "the guest's agent in cc clients", limit=90)
    rows = await world.rows("cc clients")
    assert [(r[0], r[1], r[3]) for r in rows] == [(uuid, "miniccc", "linux")]
    await world.ok("cc exec hostname")
    assert await _answer(world, 1, uuid) == "miniccc\n"
    assert (await world.rows(".columns name,cc_active vm info")) == [["guest", "true"]]

    await world.ok("vm stop guest")
    await asyncio.sleep(PAUSE)  # the pause under test, not a wait for something
    await world.ok("vm start guest")

    async def back() -> bool:
        srv_clients = await world.clients()

        srv = await world.state.cc.server("minimega")
        # a fresh connection, made after the resume
        return uuid in srv_clients and srv.clients[uuid].via.startswith("serial:")

    await wait_for(back, "the guest's agent back after the pause", limit=90)
    await world.ok("cc exec cat /etc/hostname")
    assert await _answer(world, 2, uuid) == "miniccc\n"

    # the node lets go of the port's socket (as a node that stops does) and dials it again:
    # the agent must not write into the unconnected port meanwhile (QEMU would throttle it)
    vm = world.state.vms.find("minimega", "guest")
    assert vm is not None
    await world.state.cc.detach(vm)

    async def gone() -> bool:
        return uuid not in await world.clients()

    await wait_for(gone, "the guest's agent dropped with the socket")
    await asyncio.sleep(3)  # the agent meets a port with nobody on the host side
    await world.state.cc.attach_serial(vm, os.path.join(vm.instance_path, "cc"))
    await wait_for(connected, "the guest's agent back on the redialled socket", limit=60)
    await world.ok("cc exec hostname")
    assert await _answer(world, 3, uuid) == "miniccc\n"
    rows = await world.rows("cc commands")
    assert [(r[0], r[3]) for r in rows] == [("1", "1"), ("2", "1"), ("3", "1")]
