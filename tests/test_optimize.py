"""``optimize``: KSM read back from /sys, CPU affinity read back from the QEMU processes,
hugepages refused where none are reserved and used (``-mem-path``) where they are.

KSM is a setting of the whole host: every test gives the host its values back.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hostfix import alive, error, ok, rows, thread_cpus, vm_node
from nodes import MiniNode

from megabus.handlers.host import Ksm, reserved_pages

pytestmark = pytest.mark.timeout(180)

KSM = Path("/sys/kernel/mm/ksm")
needs_ksm = pytest.mark.skipif(not KSM.is_dir(), reason="this kernel has no KSM")


@pytest.fixture
async def vmnode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with vm_node(tmp_path) as n:
        yield n


def _ksm() -> dict[str, int]:
    return {k: int((KSM / k).read_text()) for k in ("run", "pages_to_scan", "sleep_millisecs")}


@needs_ksm
async def test_ksm_is_tuned_and_given_back(vmnode: MiniNode) -> None:
    before = _ksm()
    try:
        assert await vmnode.text("optimize ksm") == "false"
        await ok(vmnode, "optimize ksm true")
        assert _ksm() == {"run": 1, "pages_to_scan": 100000, "sleep_millisecs": 10}
        assert await vmnode.text("optimize ksm") == "true"
        table = await rows(vmnode, "optimize")
        assert table == [["enabled", "disabled", "disabled"]]
        assert await error(vmnode, "optimize ksm true") == "ksm is already enabled"
        await ok(vmnode, "clear optimize ksm")
        assert _ksm() == before
        assert await error(vmnode, "clear optimize ksm") == "ksm is not enabled"
        assert await error(vmnode, "optimize ksm false") == "ksm is not enabled"
        # plain `clear optimize` restores too
        await ok(vmnode, "optimize ksm true")
        await ok(vmnode, "clear optimize")
        assert _ksm() == before
    finally:
        vmnode.state.optimize.close()
        assert _ksm() == before


async def test_ksm_missing_from_the_kernel_is_a_clear_error(
    vmnode: MiniNode, tmp_path: Path
) -> None:
    vmnode.state.optimize.ksm = Ksm(root=str(tmp_path / "no-ksm"))
    text = await error(vmnode, "optimize ksm true")
    assert text.startswith("ksm: this host's kernel has no KSM")
    assert await vmnode.text("optimize ksm") == "false"


async def _pids(node: MiniNode) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in await rows(node, ".columns name,pid vm info")}


async def test_affinity_pins_every_qemu_thread_and_clears(vmnode: MiniNode) -> None:
    cpus = len(os.sched_getaffinity(0))
    await ok(vmnode, "vm config memory 64")
    await ok(vmnode, "vm launch kvm a,b,c")
    pids = await _pids(vmnode)
    assert all(alive(p) for p in pids.values())

    await ok(vmnode, "optimize affinity true")
    table = await rows(vmnode, "optimize affinity")
    assert [r[0] for r in table] == sorted(str(c) for c in os.sched_getaffinity(0))
    listed = {int(p) for r in table for p in r[1].strip("[]").split()}
    assert listed == set(pids.values())
    for row in table:
        for pid in (int(p) for p in row[1].strip("[]").split()):
            assert all(s == {int(row[0])} for s in thread_cpus(pid)), (pid, row[0])
    assert (await rows(vmnode, "optimize"))[0][2] == "enabled"

    # a filter re-pins everything to the filter's CPUs
    last = str(max(os.sched_getaffinity(0)))
    await ok(vmnode, f"optimize affinity filter [{last}]")
    table = await rows(vmnode, "optimize affinity")
    assert [r[0] for r in table] == [last]
    assert sorted(int(p) for p in table[0][1].strip("[]").split()) == sorted(pids.values())
    for pid in pids.values():
        assert all(s == {int(last)} for s in thread_cpus(pid))

    # a VM started later is pinned on its first start (2.8 does it then)
    await ok(vmnode, "vm launch kvm d")
    d = (await _pids(vmnode))["d"]
    await ok(vmnode, "vm start d")
    assert all(s == {int(last)} for s in thread_cpus(d))

    await ok(vmnode, "clear optimize affinity")
    assert await rows(vmnode, "optimize affinity") == []
    everything = set(range(os.cpu_count() or cpus))
    for pid in [*pids.values(), d]:
        assert all(
            s == everything & os.sched_getaffinity(0) or s == everything for s in thread_cpus(pid)
        )
    assert await error(vmnode, "optimize affinity false") == (
        "affinity is not enabled for this namespace"
    )


async def test_affinity_bad_filters_are_clear_errors(vmnode: MiniNode) -> None:
    top = os.cpu_count() or 1
    assert await error(vmnode, f"optimize affinity filter [0-{top}]") == (
        f"cannot expand CPU range: value of out range: {top}"
    )
    assert await error(vmnode, "optimize affinity filter x") == (
        'cannot expand CPU range: strconv.Atoi: parsing "x": invalid syntax'
    )
    assert await error(vmnode, "optimize affinity filter [0") == (
        "cannot expand CPU range: invalid range specification"
    )
    assert (await rows(vmnode, "optimize"))[0] == ["disabled", "disabled", "disabled"]


async def test_hugepages_none_reserved_is_a_clear_error(vmnode: MiniNode, tmp_path: Path) -> None:
    if reserved_pages():
        pytest.skip("this host has hugepages reserved")
    text = await error(vmnode, f"optimize hugepages {tmp_path}")
    assert text.startswith("hugepages: none reserved on this host")
    assert await vmnode.text("optimize hugepages") == ""


@contextlib.contextmanager
def _hugepages(mnt: Path, pages: int) -> Iterator[None]:
    """Reserve ``pages`` and mount hugetlbfs on ``mnt``; everything back afterwards."""
    knob = Path("/proc/sys/vm/nr_hugepages")
    before = int(knob.read_text())
    try:
        knob.write_text(str(before + pages))
    except OSError as err:
        pytest.skip(f"cannot reserve hugepages here: {err}")
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "hugetlbfs", "none", str(mnt)], check=True)
        try:
            yield
        finally:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
    finally:
        knob.write_text(str(before))


def _argv(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")


async def test_hugepages_back_new_kvm_guests(vmnode: MiniNode, tmp_path: Path) -> None:
    mnt = tmp_path / "huge"
    with _hugepages(mnt, 32):
        if reserved_pages() < 16:
            pytest.skip("the kernel reserved too few hugepages")
        assert await error(vmnode, f"optimize hugepages {tmp_path}") == (
            f"hugepages: {tmp_path} is not a hugetlbfs mount (mount -t hugetlbfs none {tmp_path})"
        )
        assert await error(vmnode, f"optimize hugepages {tmp_path}/nope") == (
            f"hugepages: {tmp_path}/nope does not exist"
        )
        await ok(vmnode, f"optimize hugepages {mnt}")
        assert await vmnode.text("optimize hugepages") == str(mnt)
        assert (await rows(vmnode, "optimize"))[0][1] == str(mnt)
        await ok(vmnode, "vm config memory 32")
        await ok(vmnode, "vm launch kvm huge")
        pid = (await _pids(vmnode))["huge"]
        args = _argv(pid)
        assert args[args.index(b"-mem-path") + 1] == str(mnt).encode()
        await ok(vmnode, "vm kill all")
        await ok(vmnode, "vm flush")
        await ok(vmnode, "clear optimize hugepages")
        assert await vmnode.text("optimize hugepages") == ""
