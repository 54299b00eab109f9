"""Bad input to VM launches on a real ``megabus node`` process: a missing disk, a full base.

A disk that does not exist makes ``vm launch`` fail with an error naming
the file, and the VM shows ERROR with that text in its ``error`` tag. A
node whose base directory is a full 1 MiB tmpfs reports launches failing
for lack of disk space (KVM and container), keeps serving, and launches
again once space is freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from noderecovery import NODE, start

from megabus.bus.connection import Bus

pytestmark = pytest.mark.timeout(240)


async def command(bus: Bus, line: str) -> tuple[list[list[str]], list[str]]:
    """A command's rows (header first) and its errors."""
    replies = await bus.command(NODE, ".annotate false " + line)
    responses = [r for rep in replies for r in rep.responses]
    rows: list[list[str]] = []
    for r in responses:
        if r.header:
            rows += [list(r.header), *(r.tabular or [])]
    return rows, [r.error for r in responses if r.error]


async def ok(bus: Bus, line: str) -> list[list[str]]:
    rows, errors = await command(bus, line)
    assert errors == [], line
    return rows


async def states(bus: Bus) -> dict[str, tuple[str, str]]:
    """name -> (state, tags)."""
    rows = await ok(bus, ".columns name,state,tags vm info")
    return {r[0]: (r[1], r[2]) for r in rows[1:]}


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` for the block (lazily unmounted after)."""
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the filesystem is full."""
    chunk = bytes(4096)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                return


async def stop(node: asyncio.subprocess.Process) -> None:
    """SIGTERM: the node takes its VMs down (as 2.8); SIGKILL if it hangs."""
    if node.returncode is None:
        node.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(node.wait(), 60)
        except TimeoutError:
            node.send_signal(signal.SIGKILL)
            await node.wait()


async def test_a_missing_disk_fails_the_launch_and_names_the_file(
    tmp_path: Path, nats_url: str, client: Bus
) -> None:
    node = await start(tmp_path / "base", nats_url, recover=False)
    try:
        missing = tmp_path / "nope.qcow2"
        await ok(client, "vm config memory 128")
        await ok(client, f"vm config disk {missing}")
        for snapshot in ("true", "false"):
            name = f"s{snapshot}"
            await ok(client, f"vm config snapshot {snapshot}")
            _, errors = await command(client, f"vm launch kvm {name}")
            assert len(errors) == 1, errors
            assert str(missing) in errors[0]
            assert "no such file or directory" in errors[0].lower()
            state, tags = (await states(client))[name]
            assert state == "ERROR"
            assert str(missing) in tags
        # the node goes on: a VM without the disk launches
        await ok(client, "clear vm config disk")
        await ok(client, "vm launch kvm good")
        assert (await states(client))["good"][0] == "BUILDING"
        await ok(client, "vm flush")
        assert sorted(await states(client)) == ["good"]
    finally:
        await stop(node)


async def test_a_full_base_fails_launches_clearly_until_space_is_freed(
    tmp_path: Path, nats_url: str, client: Bus, minicccfs: Path
) -> None:
    with tmpfs(tmp_path / "base", "1m") as base:
        node = await start(base, nats_url, recover=False)
        try:
            await ok(client, "vm config memory 128")
            await ok(client, f"vm config filesystem {minicccfs}")
            filler = base / "filler"
            await asyncio.to_thread(fill, filler)
            for kind, name in (("kvm", "k1"), ("container", "c1")):
                _, errors = await command(client, f"vm launch {kind} {name}")
                assert len(errors) == 1, errors
                assert "no space left on device" in errors[0].lower(), errors
                assert str(base) in errors[0]
                state, tags = (await states(client))[name]
                assert state == "ERROR"
                assert "no space left on device" in tags.lower()
            # still serving
            assert (await ok(client, ".columns name vm info"))[1:] == [["k1"], ["c1"]]

            await asyncio.to_thread(os.unlink, filler)
            await ok(client, "vm launch kvm k2")
            await ok(client, "vm launch container c2")
            await ok(client, "vm start k1,c1")
            await ok(client, "vm start k2,c2")
            got = {n: s for n, (s, _) in (await states(client)).items()}
            assert got == {"k1": "RUNNING", "c1": "RUNNING", "k2": "RUNNING", "c2": "RUNNING"}
            await ok(client, "clear all")
            assert await states(client) == {}
        finally:
            await stop(node)
