"""The ``router`` family and ``clear router`` (2.8's ``router_cli.go``): 57 patterns.

Both are VM-target commands: they run on every host of the namespace and
count where the VM lives, whose namespace keeps the VM's router
(``Namespace.routers``). This module parses arguments with 2.8's checks and
texts and calls :mod:`megabus.handlers.routers`, which owns the config, its
two texts and the delivery through cc.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers import routers
from megabus.handlers.commands import cc as cc_family
from megabus.handlers.commands.namespace import on_destroy
from megabus.handlers.node import fanout
from megabus.handlers.node.registry import Result, command, on_clear_all

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.model.vm import VM
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

LOG_LEVELS = ("fatal", "error", "warn", "info", "debug")

_LONG = """Configure running minirouter VMs running minirouter and miniccc.

Routers are configured by specifying or updating a configuration, and then
applying that configuration with a commit command. For example, to configure a
router on a running VM named 'foo' to serve DHCP on 10.0.0.0/24 with a range of
IPs:

\trouter foo dhcp 10.0.0.0 range 10.0.0.100 10.0.0.200
\trouter foo commit

router takes a number of subcommands:

- 'log': Change the log level of the minirouter tool on the VM.

- 'interface': Set IPv4 or IPv6 addresses, or configure an interface to assign
  using DHCP. The interface field is an integer index of the interface defined
  with 'vm config net'. You could also specify if that interface will be a
  loopback interface For example, to configure the second interface of the
  router with a static IP and a loopback witha  different IP:

\tvm config net 100 200
\t# ...
\trouter foo interface 1 10.0.0.1/24
\trouter foo interface 2 11.0.0.1/32 lo

- 'dhcp': Configure one or more DHCP servers on the router. The API allows you
  to set several options including static IP assignments and the default route
  and DNS server. For example, to serve a range of IPs, with 2 static IPs
  explicitly called out on router with IP 10.0.0.1:

\trouter vm foo dhcp 10.0.0.0 range 10.0.0.2 10.0.0.254
\trouter vm foo dhcp 10.0.0.0 static 00:11:22:33:44:55 10.0.0.10
\trouter vm foo dhcp 10.0.0.0 static 00:11:22:33:44:56 10.0.0.11

- 'dns': Set DNS records for IPv4 or IPv6 hosts.

- 'upstream': Set upstream server for DNS.

- 'gw': Set default gateway which will be used if there is no matching route.

- 'ra': Enable neighbor discovery protocol router advertisements for a given
  subnet.

- 'route': Set static, OSPF, or BGP routes. Static routes include a subnet,
  next-hop, and optionally a name for this router. For example to specify a
  static route(s):

\trouter foo route static 0.0.0.0/0 10.0.0.1 default-route

  OSPF routes include an area and a network index corresponding to the
  interface described in 'vm config net'. You can also specify what networks
  to advertise using the export command.

  For example, to enable OSPF on area 0 for both interfaces of a router:

\tvm config net 100 200
\t# ...
\trouter foo route ospf 0 0
\trouter foo route ospf 0 1

  For example, to advertise specific networks, advertise a static route or
  use a static route as a filter:

\trouter foo route static 11.0.0.0/24 0 bar-route
\trouter foo route static 12.0.0.0/24 0 bar-route
\trouter foo route ospf 0 export 10.0.0.0/24
\trouter foo route ospf 0 export default-route
\trouter foo route ospf 0 export bar-route

  To configure BGP must specify the process name for the specific bgp context,
  local ip address and AS, Neighbor ip address and AS, and what networks need
  to be advertised

  For example, local router is in AS 100 with an ip 10.0.0.1 and bgp peer is
  in AS 200 with an ip of 20.0.0.1 and you want to advterise network
  10.0.0.0/24:

\trouter foo route static 10.0.0.0/24 0 foo_out
\trouter foo bgp bar local 10.0.0.1 100
\trouter foo bgp bar neighbor 20.0.0.1 200
\trouter foo bgp bar export filter foo_out

  You can set up route reflection for BGP by ussing the rrclient command for that process.
  By using the command it indicates that the peer is a bgp client:

\trouter foo bgp bar rrclient

- 'rid': Sets the 32 bit router ID for the router. Typically this ID is unqiue
  across the orginizations network and is used for various routing protocols ie OSPF

\trouter foo rid 1.1.1.1

- 'fw': specify flows to accept/drop/reject via iptables. For example, to
  globally globally drop all forwarded packets and accept HTTP traffic from any
  IP address to host 192.168.0.5 on the interface at index 0 (which is on the
  192.168.0.0/24 network):

\trouter foo fw default drop
\trouter foo fw accept out 0 192.168.0.5:80 tcp

  Note that we use 'out' here since we're applying the rule to the interface
  that's on the same network as the destination. The source and destination does
  not have to include a port.

  New iptables chains can also be created, providing a method for grouping rules
  together instead of adding rules at the global level. Chains are then applied
  to one or more interfaces using the interface index. For example, one could
  put the previous rule into a chain named "allow-http" and apply it to the
  interface at index 0 via the following:

\trouter foo fw chain allow-http default action drop
\trouter foo fw chain allow-http action accept 192.168.0.5:80 tcp
\trouter foo fw chain allow-http apply out 0"""


def _action(cmd: Command) -> str:
    return next(a for a in routers.FW_ACTIONS if cmd.flag(a))


def _find_vm(ctx: Context, name: str, missing: str) -> VM:
    """The VM on this host; ``missing`` is 2.8's error when there is none.

    2.8's ``clear router`` says ``no such vm`` on every host without the VM,
    so a namespace of several hosts gave that error even when a host found
    it; there the error is ``vm not found``, which the VM-target merge drops.
    """
    vm = ctx.state.vms.find(ctx.namespace, name)
    if vm is not None:
        return vm
    if ctx.source and len(fanout.hosts_of(ctx.state, ctx.namespace)) > 1:
        missing = f"vm not found: {name}"
    raise CommandError(missing)


@command(
    "router <vm>",
    "router <vm> <commit,>",
    "router <vm> <rid,> <id>",
    "router <vm> <log,> <level,> <fatal,error,warn,info,debug>",
    "router <vm> <interface,> <network> <IPv4/MASK or IPv6/MASK or dhcp> [lo,]",
    "router <vm> <dhcp,> <listen address> <range,> <low address> <high address>",
    "router <vm> <dhcp,> <listen address> <router,> <router address>",
    "router <vm> <dhcp,> <listen address> <dns,> <address>",
    "router <vm> <dhcp,> <listen address> <static,> <mac> <ip>",
    "router <vm> <dns,> <ip> <hostname>",
    "router <vm> <upstream,> <ip>",
    "router <vm> <gw,> <gw>",
    "router <vm> <ra,> <subnet>",
    "router <vm> <route,> <static,> <network> <next-hop> [staticroutename]",
    "router <vm> <route,> <ospf,> <area> <network>",
    "router <vm> <route,> <ospf,> <area> <network> <option> <value>",
    "router <vm> <route,> <ospf,> <area> <export,> <Ipv4/Mask or staticroutename>",
    "router <vm> <route,> <bgp,> <processname> <local,neighbor> <IPv4> <asnumber>",
    "router <vm> <route,> <bgp,> <processname> <rrclient,>",
    "router <vm> <route,> <bgp,> <processname> <export,> <all,filter> <filtername>",
    "router <vm> <fw,> <default,> <accept,drop>",
    "router <vm> <fw,> <accept,drop,reject> <in,out> <index> <dst> <proto>",
    "router <vm> <fw,> <accept,drop,reject> <in,out> <index> <src> <dst> <proto>",
    "router <vm> <fw,> chain <chain> <default,> action <accept,drop,reject>",
    "router <vm> <fw,> chain <chain> action <accept,drop,reject> <dst> <proto>",
    "router <vm> <fw,> chain <chain> action <accept,drop,reject> <src> <dst> <proto>",
    "router <vm> <fw,> chain <chain> apply <in,out> <index>",
    short="configure running minirouter VMs",
    long=_LONG,
    kind="vmtarget",
)
async def router(ctx: Context, cmd: Command) -> Result:
    """2.8's ``cliRouter``."""
    name = cmd.arg("vm")
    vm = ctx.state.vms.find(ctx.namespace, name)
    if vm is None:
        raise CommandError(f"vm not found: {name}")
    table = ctx.ns.routers
    if not cmd.bool_args:
        found = table.get(vm.id)
        if found is None:
            raise CommandError(f"vm {name} not a router")
        return ctx.respond(routers.summary(found))
    rtr = routers.find_or_create(table, vm)
    if cmd.flag("commit"):
        srv = await cc_family.server(ctx)
        path = await routers.commit(rtr, srv)
        logger.info("router %s: committed %s", vm.name, path)
    elif cmd.flag("log"):
        rtr.log_level = next(lvl for lvl in LOG_LEVELS if cmd.flag(lvl))
    elif cmd.flag("interface"):
        text = cmd.arg("network")
        try:
            network = routers.go_atoi(text)
        except CommandError as err:
            raise CommandError(f"invalid network: {text} : {err}") from None
        rtr.interface_add(network, cmd.arg("IPv4/MASK"), cmd.flag("lo"))
    elif cmd.flag("dhcp"):
        d = rtr.dhcp_of(cmd.arg("listen"))
        if cmd.flag("range"):
            d.low, d.high = cmd.arg("low"), cmd.arg("high")
        elif cmd.flag("router"):
            d.router = cmd.arg("router")
        elif cmd.flag("dns"):
            d.dns = cmd.arg("address")
        elif cmd.flag("static"):
            d.static[cmd.arg("mac")] = cmd.arg("ip")
    elif cmd.flag("dns"):
        rtr.dns_add(cmd.arg("ip"), cmd.arg("hostname"))
    elif cmd.flag("upstream"):
        rtr.upstream = cmd.arg("ip")
    elif cmd.flag("gw"):
        rtr.gw = cmd.arg("gw")
    elif cmd.flag("ra"):
        rtr.rad[cmd.arg("subnet")] = True
    elif cmd.flag("route"):
        _route(rtr, cmd)
    elif cmd.flag("rid"):
        rtr.set_router_id(cmd.arg("id"))
    elif cmd.flag("fw"):
        if rtr.container:
            raise CommandError("firewall rules cannot be applied to minirouter containers")
        _fw(rtr, cmd)
    return None


def _route(rtr: routers.Router, cmd: Command) -> None:
    if cmd.flag("static"):
        rtr.route_static_add(cmd.arg("network"), cmd.arg("next-hop"), cmd.arg("staticroutename"))
    elif cmd.flag("ospf"):
        area = cmd.arg("area")
        if cmd.arg("network"):
            iface = cmd.arg("network")
            rtr.ospf_add(area, iface, "")
            if cmd.arg("option"):
                rtr.ospf_option(area, iface, cmd.arg("option"), cmd.arg("value"))
        elif cmd.flag("export"):
            rtr.ospf_add(area, "", cmd.arg("Ipv4/Mask"))
    elif cmd.flag("bgp"):
        process = cmd.arg("processname")
        if cmd.flag("export"):
            rtr.bgp_export(process, "all" if cmd.flag("all") else cmd.arg("filtername"))
        elif cmd.flag("local") or cmd.flag("neighbor"):
            # 2.8 ignores the conversion error: a bad AS number is 0
            try:
                asn = routers.go_atoi(cmd.arg("asnumber"))
            except CommandError:
                asn = 0
            rtr.bgp_peer(process, cmd.flag("local"), cmd.arg("IPv4"), asn)
        elif cmd.flag("rrclient"):
            rtr.bgp_of(process).route_reflector = True


def _fw_index(text: str, chain: bool) -> int:
    try:
        return routers.go_atoi(text)
    except CommandError as err:
        what = "fw chain interface index" if chain else "fw interface index"
        raise CommandError(f"converting {what}: {err}") from None


def _endpoints(cmd: Command) -> tuple[str, str]:
    src, dst = cmd.arg("src"), cmd.arg("dst")
    if src:
        routers.check_endpoint(src, "source")
    if dst:
        routers.check_endpoint(dst, "destination")
    return src, dst


def _fw(rtr: routers.Router, cmd: Command) -> None:
    """2.8's fw branch of ``cliRouter`` (the container check is done)."""
    chain = cmd.arg("chain")
    if chain:
        if cmd.flag("default"):
            rtr.fw_chain_default(chain, _action(cmd))
        elif any(cmd.flag(a) for a in routers.FW_ACTIONS):
            src, dst = _endpoints(cmd)
            rtr.fw_chain_add(chain, src, dst, cmd.arg("proto"), _action(cmd))
        else:
            index = _fw_index(cmd.arg("index"), chain=True)
            rtr.fw_chain_apply(index, cmd.flag("in"), chain)
        return
    if cmd.flag("default"):
        rtr.fw.default_action = _action(cmd)
        return
    index = _fw_index(cmd.arg("index"), chain=False)
    src, dst = _endpoints(cmd)
    rtr.fw_add(index, cmd.flag("in"), src, dst, cmd.arg("proto"), _action(cmd))


@command(
    "clear router",
    "clear router <vm>",
    "clear router <vm> <rid,>",
    "clear router <vm> <interface,>",
    "clear router <vm> <interface,> <network>",
    "clear router <vm> <interface,> <network> <IPv4/MASK or IPv6/MASK or dhcp or all> [lo,]",
    "clear router <vm> <dhcp,>",
    "clear router <vm> <dhcp,> <listen address>",
    "clear router <vm> <dhcp,> <listen address> <range,>",
    "clear router <vm> <dhcp,> <listen address> <router,>",
    "clear router <vm> <dhcp,> <listen address> <dns,>",
    "clear router <vm> <dhcp,> <listen address> <static,>",
    "clear router <vm> <dhcp,> <listen address> <static,> <mac>",
    "clear router <vm> <dns,>",
    "clear router <vm> <dns,> <ip>",
    "clear router <vm> <upstream,>",
    "clear router <vm> <gw,>",
    "clear router <vm> <ra,>",
    "clear router <vm> <ra,> <subnet>",
    "clear router <vm> <route,>",
    "clear router <vm> <route,> <static,namedstatic>",
    "clear router <vm> <route,> <static,> <network or all> [staticroutename]",
    "clear router <vm> <route,> <ospf,>",
    "clear router <vm> <route,> <ospf,> <area>",
    "clear router <vm> <route,> <ospf,> <area> <network>",
    "clear router <vm> <route,> <ospf,> <area> <export,> <Ipv4/Mask or staticroutename>",
    "clear router <vm> <route,> <bgp,> <processname>",
    "clear router <vm> <route,> <bgp,> <processname> <rrclient,>",
    "clear router <vm> <route,> <bgp,> <processname> <local,neighbor>",
    "clear router <vm> <fw,>",
    short="",
    kind="vmtarget",
)
async def clear_router(ctx: Context, cmd: Command) -> Result:
    """2.8's ``cliClearRouter``."""
    name = cmd.arg("vm")
    if not name:
        ctx.ns.routers.clear()
        return None
    vm = _find_vm(ctx, name, f"no such vm {name}")
    rtr = ctx.ns.routers.get(vm.id)
    if rtr is None:
        raise CommandError(f"no such router {name}")
    if cmd.flag("interface"):
        rtr.interface_del(cmd.arg("network"), cmd.arg("IPv4/MASK"), cmd.flag("lo"))
    elif cmd.flag("dhcp"):
        part = next((p for p in ("range", "router", "dns", "static") if cmd.flag(p)), "")
        rtr.dhcp_del(cmd.arg("listen"), part, cmd.arg("mac"))
    elif cmd.flag("dns"):
        rtr.dns_del(cmd.arg("ip"))
    elif cmd.flag("upstream"):
        rtr.upstream = ""
    elif cmd.flag("gw"):
        rtr.gw = ""
    elif cmd.flag("ra"):
        rtr.ra_del(cmd.arg("subnet"))
    elif cmd.flag("route"):
        _clear_route(rtr, cmd)
    elif cmd.flag("rid"):
        rtr.router_id = routers.NO_ROUTER_ID
    elif cmd.flag("fw"):
        rtr.fw_flush()
    else:
        rtr.clear()
    return None


def _clear_route(rtr: routers.Router, cmd: Command) -> None:
    if cmd.flag("static"):
        name = cmd.arg("staticroutename")
        if name:
            rtr.named_route_del(cmd.arg("network"), name)
        else:
            rtr.route_static_del(cmd.arg("network"))
    elif cmd.flag("namedstatic"):
        rtr.named_route_del("", "")
    elif cmd.flag("ospf"):
        area = cmd.arg("area")
        if cmd.arg("network"):
            rtr.ospf_del(area, cmd.arg("network"))
        elif cmd.flag("export"):
            rtr.ospf_del_export(area, cmd.arg("Ipv4/Mask"))
        else:
            rtr.ospf_del(area, "")
            rtr.ospf_del_export(area, "")
    elif cmd.flag("bgp"):
        process = cmd.arg("processname")
        if cmd.flag("rrclient"):
            rtr.bgp_rr_del(process)
        elif cmd.flag("local") or cmd.flag("neighbor"):
            rtr.bgp_del(process, cmd.flag("local"), everything=False)
        else:
            rtr.bgp_del(process, False, everything=True)
    else:
        rtr.routes_del()


# -- lifecycle -------------------------------------------------------------------------------


@on_destroy(40)
async def _destroy(ctx: Context, namespace: str) -> None:
    ns = ctx.state.namespaces.get(namespace)
    if ns is not None:
        ns.routers.clear()


@on_clear_all(35)
async def _clear_all(ctx: Context) -> None:
    for ns in ctx.state.namespaces.values():
        ns.routers.clear()
