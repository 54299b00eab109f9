"""The kernel side of taps: names, tap links, host tap addresses (pyroute2).

Open vSwitch only attaches ports; the links themselves are made here. VM taps
are persistent ``tuntap`` links that QEMU opens later; host taps are OVS
internal ports (``ovs-vswitchd`` makes the device) that we bring up in
promiscuous mode and give an address or a DHCP lease, as 2.8 does.

pyroute2's synchronous ``IPRoute`` cannot run on the event loop's thread (it
drives an event loop of its own), so every netlink job runs on one dedicated
worker thread, in order, one socket per job: many concurrent callers then
queue instead of opening hundreds of netlink sockets at once. One job
handles a whole batch of links, so 250 taps cost one hop, not 250.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from megabus.bus.errors import CommandError

logger = logging.getLogger(__name__)

#: Linux's IFNAMSIZ is 16 bytes with the terminating NUL.
MAX_NAME = 15
TAP_FORMAT = "mega_tap{}"
SYS_NET = Path("/sys/class/net")
#: Seconds to wait for ``dhclient`` to get a lease (it gives up after 60 s itself).
DHCP_TIMEOUT = 90.0
#: Words no bridge or tap may be called (2.8's ``isReserved``: the wildcard).
RESERVED = frozenset({"all"})

_T = TypeVar("_T")
_NETLINK = ThreadPoolExecutor(max_workers=1, thread_name_prefix="megabus-netlink")


def ip_route() -> Any:
    """A pyroute2 ``IPRoute`` (a context manager).

    pyroute2 is imported on first use, on the netlink thread: it is about
    10 MB of an idle node's memory (163 modules), and a node that never
    makes a link never needs it.
    """
    from pyroute2 import IPRoute

    return IPRoute()


def netlink_error() -> Any:
    """pyroute2's ``NetlinkError`` class, for ``except netlink_error() as err``
    (evaluated only when an exception is being matched)."""
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError


async def netlink(func: Callable[..., _T], *args: object) -> _T:
    """Run a synchronous pyroute2 job on the netlink thread."""
    return await asyncio.get_running_loop().run_in_executor(_NETLINK, func, *args)


def check_name(name: str, what: str) -> None:
    """Refuse a name Linux cannot give a link, or a reserved word.

    Raises:
        CommandError: 2.8's ```x` is a reserved word -- cannot use for tap name``,
            or a name that is empty, too long or has ``/`` or white space.
    """
    if name in RESERVED:
        raise CommandError(f"`{name}` is a reserved word -- cannot use for {what} name")
    if not name or name in (".", "..") or any(c in name for c in "/ \t\n:"):
        raise CommandError(f"invalid {what} name: `{name}`")
    if len(name.encode()) > MAX_NAME:
        raise CommandError(f"{what} name is longer than {MAX_NAME} characters: `{name}`")


def link_exists(name: str) -> bool:
    """Whether a network link called ``name`` exists in this network namespace."""
    return (SYS_NET / name).exists()


class TapNames:
    """Hands out ``mega_tapN`` names, as 2.8's name generator.

    The counter only grows (a name freed a moment ago is not reused while OVS
    may still be forgetting it) and skips names that exist in
    ``/sys/class/net`` or that another caller holds but has not created yet.
    """

    def __init__(self, fmt: str = TAP_FORMAT) -> None:
        self.fmt = fmt
        self._next = 0
        self._held: set[str] = set()

    def take(self) -> str:
        """A fresh name, held until :meth:`release`."""
        while True:
            name = self.fmt.format(self._next)
            self._next += 1
            if name not in self._held and not link_exists(name):
                self._held.add(name)
                return name

    def release(self, names: Iterable[str]) -> None:
        """The names exist now (or never will): stop holding them."""
        self._held.difference_update(names)


@dataclass(frozen=True)
class LinkSpec:
    """A VM tap link to create: its name and, optionally, its MAC."""

    name: str
    mac: str | None = None


def _create_links(specs: Sequence[LinkSpec]) -> None:
    made: list[int] = []
    with ip_route() as ipr:
        try:
            for spec in specs:
                ipr.link("add", ifname=spec.name, kind="tuntap", mode="tap")
                index = ipr.link_lookup(ifname=spec.name)[0]
                made.append(index)
                attrs: dict[str, object] = {"state": "up"}
                if spec.mac:
                    attrs["address"] = spec.mac
                ipr.link("set", index=index, **attrs)
        except netlink_error():
            for index in made:
                with contextlib.suppress(netlink_error()):
                    ipr.link("del", index=index)
            raise


async def create_links(specs: Sequence[LinkSpec]) -> None:
    """Create and bring up persistent tap links (all, or none on failure).

    Raises:
        CommandError: a link could not be made (``create tap failed: ...``).
    """
    if not specs:
        return
    try:
        await netlink(_create_links, specs)
    except netlink_error() as err:
        raise CommandError(f"create tap failed: {os.strerror(err.code)}") from None
    except ValueError as err:  # pyroute2's answer to a malformed MAC
        raise CommandError(f"create tap failed: {err}") from None


def _delete_links(names: Sequence[str]) -> list[str]:
    failed: list[str] = []
    with ip_route() as ipr:
        for name in names:
            found = ipr.link_lookup(ifname=name)
            if not found:
                continue  # already gone: what we wanted
            try:
                ipr.link("del", index=found[0])
            except netlink_error() as err:
                if err.code == errno.ENODEV:
                    continue  # gone meanwhile (ovs-vswitchd removing its own port)
                logger.error("cannot delete link %s: %s", name, err)
                failed.append(name)
    return failed


async def delete_links(names: Sequence[str]) -> list[str]:
    """Delete links that exist (missing ones are fine); returns the names that failed."""
    if not names:
        return []
    return await netlink(_delete_links, list(names))


def _host_up(name: str, address: str | None) -> None:
    with ip_route() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise CommandError(f"host tap {name} did not appear")
        # IFF_UP | IFF_PROMISC: "ip link set <tap> up promisc on"
        ipr.link("set", index=found[0], flags=0x101, mask=0x101)
        if address is not None:
            iface = ipaddress.ip_interface(address)
            ipr.addr(
                "add", index=found[0], address=str(iface.ip), prefixlen=iface.network.prefixlen
            )


async def host_tap_up(name: str) -> None:
    """``ip link set <tap> up promisc on``."""
    try:
        await netlink(_host_up, name, None)
    except netlink_error() as err:
        raise CommandError(f"up interface failed: {os.strerror(err.code)}") from None


async def add_address(name: str, address: str) -> None:
    """``ip addr add dev <tap> <address>`` (a bare IP is a /32 or /128, as ``ip``'s).

    Raises:
        CommandError: 2.8's ``ip error ...`` for a bad or clashing address.
    """
    try:
        ipaddress.ip_interface(address)
    except ValueError:
        raise CommandError(f'ip error: invalid address "{address}"') from None
    try:
        await netlink(_host_up, name, address)
    except netlink_error() as err:
        raise CommandError(f"ip error: {os.strerror(err.code)}") from None


async def dhcp(name: str) -> None:
    """``dhclient <tap>``: wait (bounded) for a lease, as 2.8.

    Raises:
        CommandError: ``dhcp error ...`` when the client is missing or fails.
    """
    client = shutil.which("dhclient")
    if client is None:
        raise CommandError('dhcp error exec: "dhclient": executable file not found in $PATH: ``')
    proc = await asyncio.create_subprocess_exec(
        client,
        "-1",
        name,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), DHCP_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise CommandError(f"dhcp error: no lease within {DHCP_TIMEOUT:g}s: ``") from None
    if proc.returncode != 0:
        text = out.decode(errors="replace").strip()
        raise CommandError(f"dhcp error exit status {proc.returncode}: `{text}`")
