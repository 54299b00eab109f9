"""``nuke`` after a node was killed with SIGKILL: a new node on the same base removes what the
dead one left (QEMU, dnsmasq, a container with its monitor, cgroups and netns link, taps, the
bridge, the overlay and a ``cc mount``, the base directory), and nothing else on the host: a
foreign process whose pid sits in a planted ``qemu.pid``, a link named like 2.8's taps, a
foreign mount and netns link all survive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostfix import alive, mounted, wait_until
from noderecovery import NODE, start
from ovsfix import ovs, unique

from megabus.bus.connection import Bus
from megabus.handlers.vms._container_net import NETNS_DIR

__all__ = ["ovs"]

pytestmark = [pytest.mark.usefixtures("ovs"), pytest.mark.timeout(300)]


async def run(bus: Bus, line: str) -> list[list[str]]:
    """A command's table rows (no header); fails on any error."""
    replies = await bus.command(NODE, ".annotate false " + line, idle_timeout=60.0)
    responses = [r for rep in replies for r in rep.responses]
    assert [r.error for r in responses if r.error] == [], line
    return [row for r in responses for row in (r.tabular or [])]


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


@contextlib.contextmanager
def _foreign(tmp: Path) -> Iterator[dict[str, object]]:
    """Things of the host that merely look like megabus's, removed afterwards."""
    sleeper = subprocess.Popen(["sleep", "600"])
    link = f"mega_tap9{os.getpid() % 100}"
    mnt = tmp / "foreign-mnt"
    netns = Path(NETNS_DIR) / f"meganet_{unique('f')}"
    try:
        subprocess.run(["ip", "tuntap", "add", "dev", link, "mode", "tap"], check=True)
        mnt.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "none", str(mnt)], check=True)
        netns.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f"/proc/{sleeper.pid}/ns/net", netns)
        yield {"pid": sleeper.pid, "link": link, "mnt": mnt, "netns": netns}
    finally:
        sleeper.kill()
        sleeper.wait()
        subprocess.run(["ip", "link", "del", link], check=False)
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        with contextlib.suppress(FileNotFoundError):
            netns.unlink()


def _netns_to(pid: int) -> list[str]:
    """The /var/run/netns links to ``pid``'s network namespace."""
    return [
        n
        for n in os.listdir(NETNS_DIR)
        if os.path.islink(Path(NETNS_DIR) / n)
        and os.readlink(Path(NETNS_DIR) / n) == f"/proc/{pid}/ns/net"
    ]


def _is_link(path: Path) -> bool:
    return path.is_symlink()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


async def test_nuke_after_sigkill_removes_only_what_megabus_left(
    client: Bus, nats_url: str, tmp_path: Path, minicccfs: Path
) -> None:
    base = tmp_path / "base"
    bridge = unique("nk")
    ccmnt = tmp_path / "ccmnt"
    ccmnt.mkdir()
    proc = await start(base, nats_url, recover=False)
    with _foreign(tmp_path) as foreign:
        try:
            for line in (
                "vm config memory 64",
                f"vm config net {bridge},100",
                "vm launch kvm kvm0",
                f"vm config filesystem {minicccfs}",
                "vm launch container ct0",
                f"tap create 100 bridge {bridge} ip 10.254.77.1/24",
                "dnsmasq start 10.254.77.1 10.254.77.10 10.254.77.20",
                f"cc mount ct0 {ccmnt}",
            ):
                await run(client, line)
            pids = {r[0]: int(r[1]) for r in await run(client, ".columns name,pid vm info")}
            taps = {
                t
                for r in await run(client, ".columns tap vm info")
                for t in r[0].strip("[]").split()
            }
            taps |= {r[1] for r in await run(client, "tap")}
            dnsmasq = int((await run(client, "dnsmasq"))[0][5])
            inst = {r[0]: base / r[1] for r in await run(client, ".columns name,id vm info")}
            monitor = int((inst["ct0"] / "shim.pid").read_text())
            netns = _netns_to(pids["ct0"])
            ours = [pids["kvm0"], pids["ct0"], monitor, dnsmasq]
            assert all(alive(p) for p in ours)
            assert taps
            assert taps <= _links()
            assert bridge in _links()
            assert netns
            assert mounted(ccmnt)
            assert mounted(inst["ct0"] / "fs")

            # plant the foreign process where a killed node's pid files would be
            (base / "77").mkdir()
            (base / "77" / "qemu.pid").write_text(str(foreign["pid"]))
            (base / "77" / "dnsmasq.pid").write_text(str(foreign["pid"]))

            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            assert all(alive(p) for p in ours)  # a killed node leaves them running

            proc = await start(base, nats_url, recover=False)
            assert await run(client, "nuke") == []
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

        await wait_until(lambda: not any(alive(p) for p in ours), "megabus's processes to end")
        assert not (taps | {bridge}) & _links()
        assert not mounted(ccmnt)
        assert not mounted(inst["ct0"] / "fs")
        assert not any(
            (Path(NETNS_DIR) / n).exists() or (Path(NETNS_DIR) / n).is_symlink() for n in netns
        )
        assert not base.exists()
        assert "qemu-system" not in " ".join(_cmdline(p) for p in ours)
        # ... and nothing of the host's
        assert alive(int(str(foreign["pid"])))
        assert foreign["link"] in _links()
        assert mounted(Path(str(foreign["mnt"])))
        assert _is_link(Path(str(foreign["netns"])))
        # the container's image is untouched
        assert (minicccfs / "init").is_file()
