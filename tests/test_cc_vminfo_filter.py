"""``cc filter`` by a ``vm info`` column, on real container VMs running ``minicccfs``.

Each container's init starts the agent on its ``/cc`` socket with the VM's
UUID. A filter key that names a ``vm info`` column (``name``) matches that
column, and wins over a VM tag of the same name; a key that is no column is
a VM tag (``vm tag``), as in 2.8.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ccworld import CcWorld, cc_world, wait_for


@pytest.fixture
async def world(nats_url: str, tmp_path: Path) -> AsyncIterator[CcWorld]:
    async with cc_world(nats_url, tmp_path / "node") as w:
        try:
            yield w
        finally:
            await w.run("vm kill all")
            await w.run("vm flush")


async def test_filter_by_vm_info_name_and_by_vm_tag_on_containers(
    world: CcWorld, minicccfs: Path
) -> None:
    for line in (
        f"vm config filesystem {minicccfs}",
        "vm config hostname ct",
        "vm launch container c[1-3]",
        "vm start all",
        # a tag named like a column: the column wins
        "vm tag c2 name c1",
        "vm tag c3 team red",
    ):
        await world.ok(line)
    uuids = {}
    for name in ("c1", "c2", "c3"):
        vm = world.state.vms.find("minimega", name)
        assert vm is not None
        uuids[name] = vm.uuid

    async def all_in() -> bool:
        return await world.clients() == set(uuids.values())

    await wait_for(all_in, "the three containers' agents", limit=60)
    await world.ok("cc filter name=c1")
    await world.ok("cc exec hostname")
    await world.ok("cc filter team=red")
    await world.ok("cc exec hostname")
    await world.ok("cc filter name=c2 team=red")  # no VM is both
    await world.ok("cc exec hostname")
    await world.ok("clear cc filter")
    await world.ok("cc exec hostname")  # for everyone: once in, the earlier ones are done
    responses = world.files / "miniccc_responses"

    async def done() -> bool:
        return all((responses / "4" / u / "stdout").exists() for u in uuids.values())

    await wait_for(done, "the unfiltered command on every container")
    assert sorted(os.listdir(responses / "1")) == [uuids["c1"]]
    assert sorted(os.listdir(responses / "2")) == [uuids["c3"]]
    assert not (responses / "3").exists()
    assert (responses / "1" / uuids["c1"] / "stdout").read_text() == "ct\n"
    rows = await world.rows("cc commands")
    assert [(r[0], r[3], r[10]) for r in rows] == [
        ("1", "1", "name=c1"),
        ("2", "1", "team=red"),
        ("3", "0", "name=c2 && team=red"),
        ("4", "3", ""),
    ]
