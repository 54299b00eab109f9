"""IP learning: snoop ARP and IPv6 neighbour discovery on each bridge, fill VM NICs' ip/ip6.

2.8 puts two OpenFlow rules on every bridge it uses, copying ARP and IPv6
Neighbour Solicitations to the bridge's LOCAL port as well as forwarding them
normally, and reads that port with libpcap. The same works on the userspace
datapath: ``ovs-vswitchd`` writes what goes to LOCAL into the bridge's own
tap device, where an ``AF_PACKET`` socket reads it. Here the rules carry a
cookie of ours (so they can be removed again from a bridge that outlives
us), a classic BPF filter on the socket keeps everything but ARP and NS/NA
out of Python, and the socket is read from the event loop (``add_reader``).

What is learnt goes where ``vm info`` already looks: ``NetConfig.ip4`` and
``ip6`` of every NIC with that MAC on that bridge. As in 2.8, link-local
addresses (and the unspecified address of duplicate-address probes) are
ignored.

The node starts one :class:`IpLearner` and stops it with the node:
learning runs while the node runs. Bridges are picked up by a
watcher that compares the node's bridge table every :data:`POLL` seconds
(the table has no creation hook), so the first packets on a brand-new
bridge may go unseen.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from megabus.handlers.net._bridges import Bridge, Bridges
from megabus.handlers.net._ovs import OvsError, get_switch

if TYPE_CHECKING:
    from megabus.handlers.model.table import VMTable

logger = logging.getLogger(__name__)

OFCTL = "ovs-ofctl"
#: Marks our flows (``mbiplearn`` in ASCII, shortened to 64 bits).
COOKIE = "0x6d6269706c"
FLOWS = (
    "dl_type=0x0806,actions=local,normal",
    "dl_type=0x86dd,nw_proto=58,icmp_type=135,actions=local,normal",
)
#: Seconds between looks at the bridge table.
POLL = 1.0
#: Seconds one ``ovs-ofctl`` may take.
TIMEOUT = 30.0
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
#: ARP, or IPv6 carrying ICMPv6 type 135/136 right after its header.
_BPF = (
    (0x28, 0, 0, 12),  # ldh [12]            ethertype
    (0x15, 6, 0, 0x0806),  # jeq ARP     -> accept
    (0x15, 0, 6, 0x86DD),  # jeq IPv6    else drop
    (0x30, 0, 0, 20),  # ldb [20]            next header
    (0x15, 0, 4, 58),  # jeq ICMPv6      else drop
    (0x30, 0, 0, 54),  # ldb [54]            ICMPv6 type
    (0x15, 1, 0, 135),  # jeq NS         -> accept
    (0x15, 0, 1, 136),  # jeq NA         else drop
    (0x06, 0, 0, 0x40000),  # accept
    (0x06, 0, 0, 0),  # drop
)


def parse(frame: bytes) -> tuple[str, str] | None:
    """``(mac, ip)`` a frame tells of: ARP's sender, or an NS/NA's source."""
    if len(frame) < 14:
        return None
    mac = frame[6:12].hex(":")
    kind, off = struct.unpack("!H", frame[12:14])[0], 14
    if kind == 0x8100 and len(frame) >= 18:
        kind, off = struct.unpack("!H", frame[16:18])[0], 18
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address
    if kind == 0x0806 and len(frame) >= off + 28:
        addr = ipaddress.IPv4Address(frame[off + 14 : off + 18])
    elif kind == 0x86DD and len(frame) >= off + 41 and frame[off + 6] == 58:
        if frame[off + 40] not in (135, 136):
            return None
        addr = ipaddress.IPv6Address(frame[off + 8 : off + 24])
    else:
        return None
    if addr.is_link_local or addr.is_unspecified:
        return None
    return mac, str(addr)


@dataclass
class Snooper:
    """The flows and the socket on one bridge."""

    bridge: Bridge
    sock: socket.socket
    #: MAC -> (IPv4, IPv6) seen on the bridge.
    seen: dict[str, list[str]] = field(default_factory=dict)


class IpLearner:
    """Snoops every bridge of one node and writes what it learns into the node's VMs."""

    def __init__(self, bridges: Bridges, vms: VMTable) -> None:
        self.bridges = bridges
        self.vms = vms
        self.snoopers: dict[str, Snooper] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Snoop the bridges there are, then keep watching the table."""
        await self.sync()
        self._task = asyncio.create_task(self._watch(), name="iplearn")

    async def stop(self) -> None:
        """Stop watching and take our flows and sockets off every bridge."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for name in list(self.snoopers):
            await self._detach(name)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL)
            try:
                await self.sync()
            except Exception:  # a bad bridge must not end learning on the others
                logger.exception("ip learning: sync failed")

    async def sync(self) -> None:
        """Attach to new bridges of the table, detach from those that left it."""
        current = {b.name: b for b in self.bridges.info()}
        for name, snooper in list(self.snoopers.items()):
            if current.get(name) is not snooper.bridge:
                await self._detach(name)
        for name, bridge in current.items():
            if name not in self.snoopers:
                await self._attach(bridge)

    async def reattach(self, names: list[str]) -> None:
        """Bridges remade under us (Open vSwitch restarted): new sockets, our flows again."""
        for name in names:
            if name in self.snoopers:
                await self._detach(name)
        await self.sync()

    async def _attach(self, bridge: Bridge) -> None:
        try:
            sock = _open(bridge.name)
        except OSError as err:
            logger.warning("ip learning: cannot listen on %s: %s", bridge.name, err)
            return
        loop = asyncio.get_running_loop()
        snooper = Snooper(bridge, sock)
        self.snoopers[bridge.name] = snooper
        loop.add_reader(sock.fileno(), self._readable, snooper)
        for flow in FLOWS:
            if not await _ofctl("add-flow", bridge.name, f"cookie={COOKIE},{flow}"):
                break
        logger.info("ip learning on %s", bridge.name)

    async def _detach(self, name: str) -> None:
        snooper = self.snoopers.pop(name)
        asyncio.get_running_loop().remove_reader(snooper.sock.fileno())
        snooper.sock.close()
        if self.bridges.lookup(name) is snooper.bridge:
            # still in the table (we are stopping): a preexisting bridge keeps living
            await _ofctl("del-flows", name, f"cookie={COOKIE}/-1")

    def _readable(self, snooper: Snooper) -> None:
        while True:
            try:
                frame = snooper.sock.recv(2048)
            except BlockingIOError:
                return
            except OSError as err:  # the bridge went away under us; sync detaches it
                logger.debug("ip learning on %s: %s", snooper.bridge.name, err)
                asyncio.get_running_loop().remove_reader(snooper.sock.fileno())
                return
            found = parse(frame)
            if found is not None:
                self.learn(snooper, *found)

    def learn(self, snooper: Snooper, mac: str, ip: str) -> None:
        """Record ``ip`` for ``mac`` on the snooper's bridge and in the VMs' NICs."""
        v6 = ":" in ip
        pair = snooper.seen.setdefault(mac, ["", ""])
        if pair[v6] == ip:
            return
        pair[v6] = ip
        logger.debug("got mac/ip pair: %s, %s", mac, ip)
        for vm in self.vms.vms.values():
            for nic in vm.config.networks:
                if nic.mac.lower() == mac and nic.bridge == snooper.bridge.name:
                    if v6:
                        nic.ip6 = ip
                    else:
                        nic.ip4 = ip


def _open(bridge: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        program = b"".join(struct.pack("HBBI", *insn) for insn in _BPF)
        buf = ctypes.create_string_buffer(program)
        fprog = struct.pack("HL", len(_BPF), ctypes.addressof(buf))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        sock.bind((bridge, 0))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def _ofctl(*args: str) -> bool:
    """Run ``ovs-ofctl`` against the node's switch; False (logged) when it fails."""
    try:
        switch = await get_switch()
    except OvsError as err:
        logger.warning("ip learning: %s", err)
        return False
    target = args[1]
    if switch.rundir:
        target = f"unix:{os.path.join(switch.rundir, target)}.mgmt"
    argv = [OFCTL, args[0], target, *args[2:]]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as err:
        logger.warning("ip learning: %s: %s", OFCTL, err)
        return False
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        out = b"timed out"
    if proc.returncode != 0:
        logger.warning("ip learning: %s: %s", " ".join(argv), out.decode(errors="replace"))
        return False
    return True
