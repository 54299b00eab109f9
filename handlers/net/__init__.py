"""The node's networking: Open vSwitch, its bridges, and the taps on them.

* :mod:`.ovs`: the async adapter over ``ovs-vsctl`` (finding the switch,
  batching port changes into one transaction);
* :mod:`.bridges`: the node's bridge table (2.8's ``bridges``), with the tap
  API other families call (:meth:`.bridges.Bridges.create_tap`,
  :meth:`.bridges.Bridges.destroy_taps`);
* :mod:`.taps`: the kernel side of taps (pyroute2): names, links, addresses.
"""
