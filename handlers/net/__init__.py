"""The node's networking: Open vSwitch, its bridges, and the taps on them.

* :mod:`.ovs`: the async adapter over ``ovs-vsctl`` (finding the switch,
  batching port changes into one transaction); :func:`ensure_switch` starts
  a private userspace switch where none runs (:mod:`.ovsd`);
* :mod:`.bridges`: the node's bridge table (2.8's ``bridges``), with the tap
  API other families call (:meth:`.bridges.Bridges.create_tap`,
  :meth:`.bridges.Bridges.destroy_taps`);
* :mod:`.taps`: the kernel side of taps (pyroute2): names, links, addresses.
* :mod:`.vmnics`, :mod:`.bonds`: KVM guests' taps and bonds;
* :mod:`.capture`, :mod:`.qos`, :mod:`.dnsmasq`, :mod:`.iplearn`: pcap
  captures, tc qdiscs on taps, host dnsmasq servers, IP learning;
* :class:`Replumber`: bridges, taps and flows put back after Open vSwitch restarts;
* :mod:`.vlanstore`: VLAN aliases in a JetStream KV bucket.

Other packages import from here, never from the modules.
"""

from __future__ import annotations

from megabus.handlers.net import bonds, capture, qos, taps, vmnics
from megabus.handlers.net._bridges import DEFAULT_BRIDGE, Bridges, Tap
from megabus.handlers.net._dnsmasq import Dnsmasqs, Server
from megabus.handlers.net._iplearn import IpLearner
from megabus.handlers.net._ovsd import PrivateSwitch, ensure_switch
from megabus.handlers.net._replumb import Replumber
from megabus.handlers.net._vlanstore import VlanStore, parse_number
from megabus.handlers.net.capture import Captures
from megabus.handlers.net.qos import describe

__all__ = [
    "DEFAULT_BRIDGE",
    "Bridges",
    "Captures",
    "Dnsmasqs",
    "IpLearner",
    "PrivateSwitch",
    "Replumber",
    "Server",
    "Tap",
    "VlanStore",
    "bonds",
    "capture",
    "describe",
    "ensure_switch",
    "parse_number",
    "qos",
    "taps",
    "vmnics",
]
