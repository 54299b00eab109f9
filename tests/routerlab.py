"""Helpers for the router tests: network namespaces joined by veth links, router daemons in them.

A :class:`Lab` names its namespaces ``mbr<random><name>`` so that parallel or
left-over runs never clash, and removes them at the end: it stops its
daemons, kills every process still in its namespaces (dhclient, dnsmasq,
bird, listeners: all started by the test) and deletes them. Addresses are
used only inside these namespaces. Interfaces inside a namespace are named
freely (``veth0``...), as in a router container.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from procs import run

#: The daemons' PATH: the venv first (``python``), then the system's sbin and bin folders.
PATH = os.pathsep.join(
    [
        str(Path(sys.executable).parent),
        "/usr/local/sbin",
        "/usr/sbin",
        "/sbin",
        "/usr/local/bin",
        "/usr/bin",
        "/bin",
    ]
)
#: Debian package of each program the router tests run (for the failure message).
PACKAGES = {
    "ip": "iproute2",
    "iptables": "iptables",
    "iptables-restore": "iptables",
    "dnsmasq": "dnsmasq-base",
    "bird": "bird2",
    "birdc": "bird2",
    "dhclient": "isc-dhcp-client",
    "nslookup": "dnsutils",
    "dig": "dnsutils",
    "route": "net-tools",
    "ping": "iputils-ping",
    "sysctl": "procps",
    "debootstrap": "debootstrap",
    "cpio": "cpio",
    "dpkg-deb": "dpkg",
    "depmod": "kmod",
    "unshare": "util-linux",
    "qemu-system-x86_64": "qemu-system-x86",
}


def require(*programs: str) -> None:
    """Fail (not skip) with the package to install when a program is missing."""
    missing = [p for p in programs if shutil.which(p, path=PATH) is None]
    if missing:
        pkgs = sorted({PACKAGES.get(p, p) for p in missing})
        raise AssertionError(
            f"missing {', '.join(missing)}: apt-get install {' '.join(pkgs)} (ops/setup.sh)"
        )


async def wait_for(
    check: Callable[[], Awaitable[bool]], seconds: float, what: str, step: float = 0.25
) -> None:
    """Poll the coroutine function ``check`` until it returns true."""
    deadline = time.monotonic() + seconds
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")
        await asyncio.sleep(step)


@dataclass
class Daemon:
    """A router daemon running in a namespace."""

    ns: str
    path: Path
    proc: asyncio.subprocess.Process
    env: dict[str, str]

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def log(self) -> str:
        try:
            return (self.path / "minirouter.log").read_text(errors="replace")
        except OSError:
            return ""

    async def apply(self, text: str, name: str = "config") -> tuple[int, str]:
        """``minirouter -u`` a config (as the node's cc command does); exit status and output."""
        file = self.path / f"{name}.txt"
        file.write_text(text)
        return await run(
            sys.executable, "-m", "megabus.router", "-u", str(file), "-path", str(self.path),
            timeout=120,
        )  # fmt: skip

    async def must_apply(self, text: str) -> None:
        code, out = await self.apply(text)
        assert code == 0, f"config failed:\n{out}\n--- daemon log:\n{self.log()[-3000:]}"
        assert out == "", out


class Lab:
    """Namespaces, links and daemons of one test."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        # unix socket paths must stay under 108 bytes: a short folder, not tmp_path
        self.tmp = Path(tempfile.mkdtemp(prefix="mbr", dir="/tmp"))
        self.namespaces: list[str] = []
        self.daemons: list[Daemon] = []

    async def netns(self, name: str) -> str:
        ns = f"mbr{self.tag}{name}"
        code, out = await run("ip", "netns", "add", ns)
        assert code == 0, f"ip netns add {ns}: {out}"
        self.namespaces.append(ns)
        # dhclient-script writes /etc/resolv.conf: `ip netns exec` binds this file over it
        etc = Path("/etc/netns") / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("")
        await self.must(ns, "ip", "link", "set", "lo", "up")
        return ns

    async def link(self, a: str, a_if: str, b: str, b_if: str, b_mac: str = "") -> None:
        """A veth pair: ``a_if`` in namespace ``a``, ``b_if`` in ``b``."""
        argv = ["ip", "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if]
        if b_mac:
            argv += ["address", b_mac]
        code, out = await run(*argv, "netns", b)
        assert code == 0, f"{' '.join(argv)}: {out}"
        await self.must(a, "ip", "link", "set", a_if, "up")
        await self.must(b, "ip", "link", "set", b_if, "up")

    async def sh(self, ns: str, *argv: str, limit: float = 30.0) -> tuple[int, str]:
        """Run a program inside namespace ``ns`` (no shell), for at most ``limit`` seconds."""
        return await run("ip", "netns", "exec", ns, *argv, timeout=limit)

    async def must(self, ns: str, *argv: str, limit: float = 30.0) -> str:
        code, out = await self.sh(ns, *argv, limit=limit)
        assert code == 0, f"{ns}: {' '.join(argv)}: {out}"
        return out

    async def spawn(self, ns: str, *argv: str) -> asyncio.subprocess.Process:
        """Start a program in ``ns`` in the background (killed with the namespace)."""
        return await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", ns, *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    async def daemon(self, ns: str, name: str, path_env: str = PATH, *extra: str) -> Daemon:
        """Start ``python -m megabus.router`` in ``ns`` with every file under the lab's folder."""
        folder = self.tmp / name
        folder.mkdir()
        env = {**os.environ, "PATH": path_env}
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", ns, sys.executable, "-m", "megabus.router",
            "-path", str(folder),
            "-dnsmasq-conf", str(folder / "dnsmasq.conf"),
            "-dnsmasq-leases", str(folder / "dnsmasq.leases"),
            "-bird-conf", str(folder / "bird.conf"),
            "-bird-socket", str(folder / "bird.ctl"),
            "-agent", "",
            "-dhcp-wait", "20",
            "-level", "debug",
            "-logfile", str(folder / "minirouter.log"),
            *extra,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )  # fmt: skip
        d = Daemon(ns, folder, proc, env)
        self.daemons.append(d)

        async def listening() -> bool:
            assert d.alive, f"router daemon {name} exited: {d.log()[-2000:]}"
            return (folder / "minirouter").exists()

        await wait_for(listening, 15, f"router daemon {name}'s socket")
        return d

    async def close(self) -> None:
        for d in self.daemons:
            if d.alive:
                d.proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(d.proc.wait(), 15)
                except TimeoutError:
                    d.proc.kill()
                    await d.proc.wait()
        for ns in self.namespaces:
            # everything still in the namespace was started by this test
            _, pids = await run("ip", "netns", "pids", ns)
            for pid in pids.split():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            await run("ip", "netns", "del", ns)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
