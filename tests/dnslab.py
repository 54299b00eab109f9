"""Guests, a tiny DNS client and server, a node in a mount namespace (dnsmasq, iplearn, qos).

Everything traffic touches lives in network namespaces the tests make (or
on the test bridge): guests hang off the bridge by veth pairs, and the
"resolvers" are the small DNS server below, run inside such a namespace,
which logs every query it gets. Run as a script, this file is that server
(``serve``), the DNS client (``query``), or a node whose ``/etc/resolv.conf``
is a file of the test's (``node``, inside ``unshare --mount``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import random
import socket
import struct
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from ovsfix import unique
from procs import CALL_TIMEOUT, must, run

from megabus.handlers.net._bridges import Bridges

#: Linux's SO_NO_CHECK: send UDP without a checksum (0 means "none" in IPv4).
SO_NO_CHECK = 11
PYTHON = sys.executable
HERE = Path(__file__).resolve()


# -- guests -----------------------------------------------------------------------------


@dataclass
class Guest:
    """A network namespace with one veth (``eth0`` inside) into the bridge."""

    netns: str
    link: str
    mac: str

    def ns(self, *argv: str) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.netns, *argv)


@dataclass
class Lab:
    """Guests made by a test, removed again by :meth:`close`."""

    net: Bridges
    bridge: str
    guests: list[Guest] = field(default_factory=list)

    async def guest(self, vlan: int, ip: str = "", mac: str = "") -> Guest:
        """A new guest on ``vlan`` (with address ``ip``/24 when given)."""
        mac = mac or "02:00:" + ":".join(f"{random.randrange(256):02x}" for _ in range(4))
        guest = Guest(unique("mdn"), unique("mdv"), mac)
        self.guests.append(guest)
        await must("ip", "netns", "add", guest.netns)
        await must(
            "ip", "link", "add", guest.link, "type", "veth",
            "peer", "name", "eth0", "netns", guest.netns,
        )  # fmt: skip
        await must("ip", "link", "set", guest.link, "up")
        await must(*guest.ns("ip", "link", "set", "eth0", "address", mac))
        if ip:
            await must(*guest.ns("ip", "addr", "add", f"{ip}/24", "dev", "eth0"))
        await must(*guest.ns("ip", "link", "set", "eth0", "up"))
        await must(*guest.ns("ip", "link", "set", "lo", "up"))
        await self.net.attach_link(self.bridge, guest.link, vlan)
        return guest

    async def close(self) -> None:
        for guest in self.guests:
            await run("ip", "link", "del", guest.link)
            for pid in (await run("ip", "netns", "pids", guest.netns))[1].split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            await run("ip", "netns", "del", guest.netns)


async def udhcpc(guest: Guest, script: Path) -> str:
    """Ask for a lease with busybox's DHCP client; the address offered and taken."""
    out = await must(
        *guest.ns("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "8", "-T", "1"),
        "-s", str(script),
    )  # fmt: skip
    for line in out.splitlines():
        words = line.split()
        if "lease" in words and "obtained" in words:
            return words[words.index("of") + 1]
    raise AssertionError(f"udhcpc got no lease: {out}")


# -- a DNS server and client --------------------------------------------------------------


def dns_query(name: str, qid: int) -> bytes:
    """A DNS query for the A record of ``name``, recursion desired."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return (
        struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", 1, 1)
    )


def _qname(packet: bytes) -> tuple[str, int]:
    pos, parts = 12, []
    while packet[pos]:
        n = packet[pos]
        parts.append(packet[pos + 1 : pos + 1 + n].decode(errors="replace"))
        pos += 1 + n
    return ".".join(parts), pos + 5


def dns_answer(query: bytes, ip: str | None) -> bytes:
    """The answer to ``query``: one A record, or NXDOMAIN when ``ip`` is None."""
    (qid,) = struct.unpack("!H", query[:2])
    _, end = _qname(query)
    question = query[12:end]
    flags = 0x8180 if ip else 0x8183
    head = struct.pack("!HHHHHH", qid, flags, 1, 1 if ip else 0, 0, 0)
    if not ip:
        return head + question
    record = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(ip)
    return head + question + record


def parse_answer(packet: bytes) -> tuple[int, list[str]]:
    """(rcode, A records) of a DNS response."""
    _, flags, qd, an, _, _ = struct.unpack("!HHHHHH", packet[:12])
    pos = 12
    for _ in range(qd):
        while packet[pos]:
            pos += 1 + packet[pos]
        pos += 5
    addrs: list[str] = []
    for _ in range(an):
        if packet[pos] & 0xC0 == 0xC0:
            pos += 2
        else:
            while packet[pos]:
                pos += 1 + packet[pos]
            pos += 1
        rtype, _, _, size = struct.unpack("!HHIH", packet[pos : pos + 10])
        pos += 10
        if rtype == 1 and size == 4:
            addrs.append(socket.inet_ntoa(packet[pos : pos + 4]))
        pos += size
    return flags & 0xF, addrs


def udp_socket() -> socket.socket:
    """A UDP socket whose datagrams survive the userspace datapath.

    A veth leaves the UDP checksum to "hardware" (only the pseudo-header sum
    is filled in); Open vSwitch's userspace datapath forwards such frames as
    they are, and the receiver drops them. No checksum at all is valid IPv4.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    return sock


def serve(log: str, records: list[str]) -> None:
    """A DNS server on port 53 that logs each query name and answers from ``name=ip``."""
    table = dict(r.split("=", 1) for r in records)
    sock = udp_socket()
    sock.bind(("0.0.0.0", 53))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        name, _ = _qname(data)
        with open(log, "a") as f:
            f.write(f"{name} {peer[0]}\n")
        sock.sendto(dns_answer(data, table.get(name)), peer)


def query(server: str, name: str, port: int = 53) -> None:
    """Ask ``server`` for ``name`` (up to 5 tries); print ``rcode addr,addr``."""
    sock = udp_socket()
    sock.settimeout(1.0)
    for attempt in range(5):
        qid = random.randrange(65536)
        sock.sendto(dns_query(name, qid), (server, port))
        try:
            while True:
                data, _ = sock.recvfrom(4096)
                if struct.unpack("!H", data[:2])[0] == qid:
                    break
        except TimeoutError:
            continue
        rcode, addrs = parse_answer(data)
        # REFUSED/SERVFAIL while dnsmasq has not yet read a new upstream: ask again
        if rcode in (2, 5) and attempt < 4:
            continue
        print(rcode, ",".join(addrs))
        return
    print("timeout")


@dataclass
class Resolver:
    """A test DNS server in a guest; :meth:`names` are the queries it got."""

    guest: Guest
    log: Path
    proc: asyncio.subprocess.Process

    def names(self) -> list[str]:
        if not self.log.exists():
            return []
        return [ln.split()[0] for ln in self.log.read_text().splitlines()]


@contextlib.asynccontextmanager
async def resolver(guest: Guest, log: Path, *records: str) -> AsyncIterator[Resolver]:
    """Run :func:`serve` inside ``guest`` until the block ends."""
    proc = await asyncio.create_subprocess_exec(
        *guest.ns(PYTHON, str(HERE), "serve", str(log), *records),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), CALL_TIMEOUT)
        assert line.strip() == b"ready", line
        yield Resolver(guest, log, proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def ask(guest: Guest, server: str, name: str, port: int = 53) -> tuple[int, list[str]]:
    """Ask ``server`` for ``name`` from ``guest``: (rcode, addresses); rcode -1: no answer."""
    out = (await must(*guest.ns(PYTHON, str(HERE), "query", server, name, str(port)))).strip()
    if out == "timeout":
        return -1, []
    code, _, addrs = out.partition(" ")
    return int(code), [a for a in addrs.split(",") if a]


# -- a node whose /etc/resolv.conf is the test's ---------------------------------------------


def node_in_mount_ns(resolv: str, url: str, name: str, base: str) -> None:
    """Bind ``resolv`` over ``/etc/resolv.conf`` (this mount namespace only) and run a node."""
    libc = ctypes.CDLL(None, use_errno=True)
    ms_bind = 4096
    if libc.mount(resolv.encode(), b"/etc/resolv.conf", None, ms_bind, None) != 0:
        raise OSError(ctypes.get_errno(), "bind mount of resolv.conf failed")
    from megabus.config.settings import Settings
    from megabus.handlers.main import run_node

    asyncio.run(run_node(Settings(name=name, nats=[url], base=base, level="error")))


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "serve":
        serve(sys.argv[2], sys.argv[3:])
    elif what == "query":
        query(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif what == "node":
        node_in_mount_ns(*sys.argv[2:6])
