"""A container's network: its netns under ``/var/run/netns`` and one veth pair per NIC.

As in 2.8 the network namespace is exposed as ``/var/run/netns/meganet_<id>``
(a symlink to ``/proc/<pid>/ns/net``, so ``ip netns exec`` works), and each
NIC is a veth pair: the host end ``mega_tapN`` goes on the NIC's bridge in its
VLAN through the node's bridge table, the guest end ``veth<i>`` is made
directly in the container's namespace with the NIC's MAC (a random
``00:..`` one when none is configured, as 2.8's ``randomMac``). The driver
field means nothing to a container. The bridge table owns the host ends
afterwards; destroying them there takes the guest ends along.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Sequence

from megabus.bus.errors import CommandError
from megabus.handlers.model.netspec import NetConfig
from megabus.handlers.net import Bridges
from megabus.handlers.net import taps as links

logger = logging.getLogger(__name__)

NETNS_DIR = "/var/run/netns"


def netns_name(vm_id: int) -> str:
    """``meganet_<id>``."""
    return f"meganet_{vm_id}"


def random_mac() -> str:
    """2.8's ``randomMac``: ``00:`` and five random bytes."""
    return "00:" + ":".join(f"{random.randrange(256):02x}" for _ in range(5))


def _live_target(path: str) -> bool:
    try:
        os.stat(path)  # follows the link: fails once the process is gone
    except OSError:
        return False
    return True


def link_netns(vm_id: int, pid: int, node_key: str) -> str:
    """Expose the netns of ``pid``; returns its name (a dead leftover link is replaced).

    The name is 2.8's ``meganet_<id>`` unless another node on this host has a
    living VM with that ID (2.8 assumed one daemon per host); then it is
    ``meganet_<node key>_<id>``.
    """
    os.makedirs(NETNS_DIR, 0o755, exist_ok=True)
    target = f"/proc/{pid}/ns/net"
    for name in (netns_name(vm_id), f"meganet_{node_key}_{vm_id}"):
        path = os.path.join(NETNS_DIR, name)
        if os.path.lexists(path):
            if os.path.islink(path) and os.readlink(path) == target:
                return name
            if not os.path.islink(path) or _live_target(path):
                logger.info("netns %s is in use by another node", name)
                continue
            os.unlink(path)
        os.symlink(target, path)
        return name
    raise CommandError(f"symlinkNetns: meganet_{vm_id} and meganet_{node_key}_{vm_id} are in use")


def unlink_netns(name: str) -> None:
    """Remove ``/var/run/netns/<name>`` (gone already is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(NETNS_DIR, name))


#: Offloads that leave a checksum for hardware to fill in; nothing fills it in
#: on Open vSwitch's userspace datapath, which drops such UDP and TCP.
_TX_CSUM = ("tx-checksum-ip-generic", "tx-checksum-ipv4", "tx-checksum-ipv6", "tx-checksum-sctp")


def _no_tx_checksum_offload(ifname: str) -> None:
    from pyroute2.ethtool import Ethtool  # on first use: see links.ip_route

    ethtool = Ethtool()
    try:
        features = ethtool.get_features(ifname)
        for name in _TX_CSUM:
            feature = features.features.get(name)
            if feature is not None and feature.enable:
                feature.enable = False
        ethtool.set_features(ifname, features)
    finally:
        ethtool.close()


def _create_veth(host: str, guest: str, mac: str, pid: int) -> None:
    # The guest end starts in this namespace under a temporary name, so its
    # checksum offload can be turned off; one request then moves it into the
    # container and gives it its name.
    temp = f"{host}g"[-15:]
    with links.ip_route() as ipr:
        ipr.link("add", ifname=host, kind="veth", peer={"ifname": temp, "address": mac})
        try:
            _no_tx_checksum_offload(temp)
            peer = ipr.link_lookup(ifname=temp)[0]
            ipr.link("set", index=peer, net_ns_pid=pid, ifname=guest)
        except BaseException:
            ipr.link("del", ifname=host)
            raise
        index = ipr.link_lookup(ifname=host)[0]
        ipr.link("set", index=index, state="up")


async def create_nics(net: Bridges, nics: Sequence[NetConfig], pid: int) -> list[str]:
    """Make every NIC of a container whose pid 1 is ``pid``; returns the host ends.

    ``nic.mac`` and ``nic.tap`` are filled in. All or nothing.

    Raises:
        CommandError: ``create tap: ...`` (link or bridge failures).
    """
    made: list[str] = []
    try:
        for i, nic in enumerate(nics):
            nic.mac = nic.mac or random_mac()
            generated = not nic.tap
            tap = nic.tap or net.names.take()
            try:
                links.check_name(tap, "tap")
                await links.netlink(_create_veth, tap, f"veth{i}", nic.mac.lower(), pid)
            except links.netlink_error() as err:
                raise CommandError(f"create tap: {os.strerror(err.code)}") from None
            except ValueError as err:  # pyroute2's answer to a malformed MAC
                raise CommandError(f"create tap: {err}") from None
            finally:
                if generated:
                    net.names.release([tap])
            try:
                await net.attach_link(nic.bridge, tap, nic.vlan, qinq=nic.qinq)
            except CommandError as err:
                await links.delete_links([tap])
                raise CommandError(f"create tap: {err}") from None
            nic.tap = tap
            made.append(tap)
    except BaseException:
        if made:
            await destroy_nics(net, made)
        raise
    return made


async def destroy_nics(net: Bridges, taps: Sequence[str]) -> None:
    """Take the host ends off their bridges and delete them (errors are logged)."""
    try:
        await net.destroy_taps(taps)
    except CommandError as err:
        logger.error("destroy container taps %s: %s", " ".join(taps), err)
