"""The router daemon (2.8's minirouter): runs in a router container or KVM guest.

``python3 -m megabus.router`` (``minirouter`` in the router images) listens on
``<-path>/minirouter`` and applies the config lines that the node's ``router
<vm> commit`` delivers (``minirouter -u FILE``): interface addresses, dnsmasq
(DHCP, DNS, router advertisements), the default route, BIRD 2 (static, OSPF,
BGP) and the iptables firewall. Each module owns one thing:

========================  =====================================================
:mod:`.lines`             tokenizing a config line, checking its values
:mod:`.ifaces`            interface index -> name (2.8's ``findEth``)
:mod:`.programs`          running external programs and supervising daemons
:mod:`.ip`                ``ip add`` / ``ip flush`` (addresses, dhclient)
:mod:`.dnsmasq`           ``dnsmasq ...`` lines, dnsmasq.conf, the dnsmasq process
:mod:`.bird`              ``bird ...`` lines, bird.conf (BIRD 2), the bird process
:mod:`.fw`                ``fw ...`` lines, the iptables filter table
:mod:`.routes`            ``route add default gw`` / ``route del default``
:mod:`.router`            one config: dispatching its lines, collecting failures
:mod:`.server`            the unix socket the daemon listens on
:mod:`.daemon`            the daemon's life: the socket claimed, signals, shutdown
:mod:`.client`            ``-u FILE``: send a config, wait, print the failures
:mod:`.tags`              interface counters and the log as VM tags via the agent
:mod:`.options`           the daemon's settings (paths tests point elsewhere)
:mod:`.__main__`          the command line (2.8's flags)
========================  =====================================================

Runs on the guest's Python (3.9 or later) with the standard library only.
"""
