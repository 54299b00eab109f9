"""The node's bridge table (2.8's ``bridges``) and the tap API other families call.

A bridge enters the table on first use (``tap create``, ``bridge trunk``, a
VM's tap) and is created in Open vSwitch unless it already existed there
(``preexisting``: never deleted by us). The table remembers every tap,
trunk, tunnel, mirror, bond and ``bridge config`` setting of its bridges, so
``bridge`` can list them and ``clear all`` can undo exactly what the node did.

The API the VM family uses (``net = ctx.state.bridges``)::

    tap = await net.create_tap("mega_bridge", 101, mac="00:11:22:33:44:55")
    names = await net.create_taps([TapSpec("mega_bridge", 101), ...])  # one OVS transaction
    await net.destroy_taps([tap])
    await net.adopt_tap("mega_tap3", mac=...)  # -recover: back into the table, as OVS has it

Changes are checked and reserved in the table before the first ``await``, so
concurrent commands never race for a name; the OVS work of concurrent calls
is merged by :class:`megabus.handlers.net.ovs.Switch` into few transactions.
Removed taps are deleted at once (one ``ovs-vsctl`` for a whole batch) rather
than marked defunct and reaped later as 2.8 did.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from megabus.bus.errors import CommandError
from megabus.handlers.net import taps as links
from megabus.handlers.net._ovs import OvsError, Switch, get_switch

logger = logging.getLogger(__name__)

DEFAULT_BRIDGE = "mega_bridge"
TUNNEL_TYPES = ("vxlan", "gre")
_MIRROR_REFS = itertools.count()


@dataclass
class Tap:
    """One tap on a bridge."""

    name: str
    bridge: str
    vlan: int
    mac: str = ""
    #: A host tap (an OVS internal port), listed by ``tap``.
    host: bool = False
    qinq: bool = False
    #: The namespace that made a host tap; only it lists and deletes the tap.
    namespace: str = ""
    #: The bond the tap belongs to, if any.
    bond: str = ""
    #: ``qos add`` settings of the tap (see :mod:`.qos`), in the order given.
    qos: list[str] = field(default_factory=list)


@dataclass
class Bridge:
    """One bridge of the table."""

    name: str
    #: It existed in OVS before we used it: we never delete it.
    preexisting: bool = False
    taps: dict[str, Tap] = field(default_factory=dict)
    trunks: set[str] = field(default_factory=set)
    tunnels: set[str] = field(default_factory=set)
    #: Mirrors: destination tap -> the namespace that made the mirror.
    mirrors: dict[str, str] = field(default_factory=dict)
    #: bond name -> {member tap: its VLAN before bonding}.
    bonds: dict[str, dict[str, int]] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)

    def vlans(self) -> list[int]:
        """The VLANs of the bridge's taps, ascending."""
        return sorted({t.vlan for t in self.taps.values()})


@dataclass(frozen=True)
class TapSpec:
    """A VM tap to create (see :meth:`Bridges.create_taps`)."""

    bridge: str
    vlan: int
    name: str | None = None
    qinq: bool = False
    mac: str | None = None


def port_commands(bridge: str, tap: str, vlan: int, *, host: bool, qinq: bool) -> list[list[str]]:
    """The ``ovs-vsctl`` commands that attach ``tap`` as 2.8 does (one transaction).

    A stale port of the same name (a tap whose VM died badly) is dropped first,
    which is 2.8's "already exists: del-port and retry" in one step.
    """
    add = ["add-port", bridge, tap]
    if vlan:
        add.append(f"tag={vlan}")
    cmds = [["--if-exists", "del-port", tap], add]
    if host:
        cmds.append(["set", "Interface", tap, "type=internal"])
    if qinq:
        cmds.append(["set", "port", tap, "vlan_mode=dot1q-tunnel", f"tag={vlan}"])
    return cmds


class Bridges:
    """The bridge table of one node."""

    def __init__(
        self,
        switch: Callable[[], Awaitable[Switch]] = get_switch,
        default: str = DEFAULT_BRIDGE,
    ) -> None:
        self.default = default
        #: Where 2.8's ``bridges`` and ``taps`` files go; the node sets it (``-base``).
        self.base: Path | None = None
        self._switch = switch
        self._bridges: dict[str, Bridge] = {}
        self._making: dict[str, asyncio.Future[Bridge]] = {}
        self.names = links.TapNames()
        #: VM taps taken off their bridge (``vm net disconnect``): the link is
        #: still ours and QEMU still holds it, so it waits here for a reconnect.
        self.detached: dict[str, Tap] = {}

    async def switch(self) -> Switch:
        """The switch, or a clear error when Open vSwitch is not running."""
        try:
            return await self._switch()
        except OvsError as err:
            raise CommandError(str(err)) from None

    # -- the table ----------------------------------------------------------------

    def lookup(self, name: str = "") -> Bridge | None:
        """A bridge of the table, without creating it."""
        return self._bridges.get(name or self.default)

    def info(self) -> list[Bridge]:
        """Every bridge, by name."""
        return [self._bridges[k] for k in sorted(self._bridges)]

    def find_tap(self, name: str) -> Tap:
        """The tap ``name`` on any bridge.

        Raises:
            CommandError: ``unknown tap``.
        """
        for br in self._bridges.values():
            tap = br.taps.get(name)
            if tap is not None:
                return tap
        raise CommandError("unknown tap")

    def any_tap(self, name: str) -> Tap | None:
        """The VM or host tap ``name``, on a bridge or detached, or None."""
        for br in self._bridges.values():
            tap = br.taps.get(name)
            if tap is not None:
                return tap
        return self.detached.get(name)

    def host_taps(self, namespace: str | None = None) -> list[Tap]:
        """Host taps (of ``namespace`` when given), by bridge and name."""
        return [
            t
            for br in self.info()
            for _, t in sorted(br.taps.items())
            if t.host and (namespace is None or t.namespace == namespace)
        ]

    async def get(self, name: str = "") -> Bridge:
        """The bridge ``name`` (default ``mega_bridge``), created on first use.

        Raises:
            CommandError: a bad name, or OVS refused (``add bridge failed: ...``).
        """
        name = name or self.default
        br = self._bridges.get(name)
        if br is not None:
            return br
        making = self._making.get(name)
        if making is not None:
            return await asyncio.shield(making)
        links.check_name(name, "bridge")
        future: asyncio.Future[Bridge] = asyncio.get_running_loop().create_future()
        self._making[name] = future
        try:
            br = await self._new_bridge(name)
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # retrieved: a lone caller must not leave it "never retrieved"
            raise
        finally:
            del self._making[name]
        self._bridges[name] = br
        future.set_result(br)
        self.write_files()
        return br

    async def _new_bridge(self, name: str) -> Bridge:
        switch = await self.switch()
        logger.info("creating new bridge: %s", name)
        try:
            created = await switch.add_bridge(name)
        except OvsError as err:
            raise CommandError(f"add bridge failed: {err}") from None
        try:
            await _bridge_up(name)
        except CommandError:
            if created:
                with contextlib.suppress(OvsError):
                    await switch.del_bridge(name)
            raise
        return Bridge(name, preexisting=not created)

    # -- taps -----------------------------------------------------------------------

    def _check_free(self, name: str) -> None:
        for br in self._bridges.values():
            if name in br.taps:
                raise CommandError("tap already on bridge")
        if name in self.detached:
            raise CommandError("tap already on bridge")

    async def create_tap(
        self,
        bridge: str,
        vlan: int,
        *,
        name: str | None = None,
        qinq: bool = False,
        mac: str | None = None,
    ) -> str:
        """Create a VM tap on ``bridge`` in ``vlan`` and return its name.

        ``name`` defaults to the next ``mega_tapN``; ``qinq`` makes ``vlan`` the
        outer tag (``vlan_mode=dot1q-tunnel``); ``mac`` is set on the link.

        Raises:
            CommandError: bad names, ``tap already on bridge``, link or OVS failures.
        """
        return (await self.create_taps([TapSpec(bridge, vlan, name, qinq, mac)]))[0]

    async def create_taps(self, specs: Sequence[TapSpec]) -> list[str]:
        """Create many VM taps: one netlink batch, one OVS transaction per bridge.

        All or nothing: on failure every tap made here is removed again.
        """
        bridges = {s.bridge or self.default for s in specs}
        for b in sorted(bridges):
            await self.get(b)
        chosen: list[str] = []
        generated: list[str] = []
        try:
            for spec in specs:
                if spec.name is None:
                    tap = self.names.take()
                    generated.append(tap)
                else:
                    tap = spec.name
                    links.check_name(tap, "tap")
                    self._check_free(tap)
                    if tap in chosen:
                        raise CommandError("tap already on bridge")
                chosen.append(tap)
            # reserve in the table before the first await, so nobody else takes them
            made: list[Tap] = []
            for spec, tap in zip(specs, chosen, strict=True):
                br = self._bridges[spec.bridge or self.default]
                t = Tap(tap, br.name, spec.vlan, (spec.mac or "").lower(), qinq=spec.qinq)
                br.taps[tap] = t
                made.append(t)
        finally:
            self.names.release(generated)
        try:
            await links.create_links(
                [links.LinkSpec(t.name, s.mac) for t, s in zip(made, specs, strict=True)]
            )
        except CommandError:
            self._forget(made)
            raise
        try:
            switch = await self.switch()
            cmds = [
                c
                for t in made
                for c in port_commands(t.bridge, t.name, t.vlan, host=False, qinq=t.qinq)
            ]
            await switch.transact(cmds)
        except (OvsError, CommandError) as err:
            self._forget(made)
            await links.delete_links([t.name for t in made])
            raise CommandError(f"add port failed: {err}") from None
        logger.info("created %d tap(s): %s", len(made), " ".join(chosen))
        return chosen

    async def attach_link(self, bridge: str, name: str, vlan: int, *, qinq: bool = False) -> None:
        """Put an existing link (a container's veth end) on ``bridge`` as a tap in ``vlan``.

        From then on it is the table's: :meth:`destroy_taps` deletes the link
        (and with a veth, its peer).

        Raises:
            CommandError: ``tap already on bridge``, or OVS refused.
        """
        links.check_name(name, "tap")
        br = await self.get(bridge)
        self._check_free(name)
        tap = Tap(name, br.name, vlan, qinq=qinq)
        br.taps[name] = tap
        try:
            switch = await self.switch()
            await switch.transact(port_commands(br.name, name, vlan, host=False, qinq=qinq))
        except (OvsError, CommandError) as err:
            self._forget([tap])
            raise CommandError(f"add port failed: {err}") from None

    async def adopt_tap(self, name: str, *, mac: str = "") -> Tap | None:
        """Take a VM tap a killed node left behind back into the table (``-recover``).

        Where the tap is comes from Open vSwitch (its bridge, tag and QinQ
        mode), not from the VM's config: OVS is what packets follow. A tap OVS
        has no port for, but whose link exists, is detached (``vm net
        disconnect``). A bridge enters the table as ``<base>/bridges`` recorded
        it, so ``clear all`` deletes only what the node made. Returns None when
        neither OVS nor the kernel has the tap.

        Raises:
            CommandError: Open vSwitch is not running.
        """
        known = self.any_tap(name)
        if known is not None:
            return known
        switch = await self.switch()
        try:
            out = await switch.vsctl(
                *Switch.join(
                    [
                        ["port-to-br", name],
                        ["get", "port", name, "tag"],
                        ["get", "port", name, "vlan_mode"],
                    ]
                )
            )
            bridge, tag, mode = (line.strip() for line in out.splitlines()[:3])
        except (OvsError, ValueError):
            if not await links.netlink(_link_exists, name):
                return None
            tap = Tap(name, "", -1, mac.lower())
            self.detached[name] = tap
            return tap
        br = self._bridges.get(bridge)
        if br is None:
            recorded = await asyncio.to_thread(self._recorded_bridges)
            br = self._bridges[bridge] = Bridge(bridge, preexisting=recorded.get(bridge, True))
        vlan = int(tag) if tag.isdigit() else 0
        tap = Tap(name, bridge, vlan, mac.lower(), qinq=mode == "dot1q-tunnel")
        br.taps[name] = tap
        self.write_files()
        return tap

    async def adopt_recorded_bridges(self) -> None:
        """After a crash: take back every bridge ``<base>/bridges`` lists that OVS still has.

        With its recorded "existed before" flag, so a bridge this node made is
        still deleted by ``clear all`` and one that was there before never is.
        """
        recorded = await asyncio.to_thread(self._recorded_bridges)
        if not recorded:
            return
        switch = await self.switch()
        existing = set((await switch.vsctl("list-br")).split())
        for name, existed in sorted(recorded.items()):
            if name in existing and name not in self._bridges:
                self._bridges[name] = Bridge(name, preexisting=existed)
        self.write_files()

    def _recorded_bridges(self) -> dict[str, bool]:
        """``<base>/bridges`` as written before a crash: name -> existed before us."""
        if self.base is None:
            return {}
        try:
            lines = (self.base / "bridges").read_text().splitlines()[1:]
        except OSError:
            return {}
        return {f[0]: f[1] == "true" for f in (line.split() for line in lines) if len(f) >= 2}

    async def connect_tap(self, name: str, bridge: str, vlan: int, *, qinq: bool = False) -> None:
        """Move a VM tap (on a bridge or detached) to ``bridge`` in ``vlan`` (``vm net connect``).

        One OVS transaction: the old port goes and the new one comes, so a
        failure leaves the tap where it was.

        Raises:
            CommandError: a bad bridge name, ``unknown tap``, a bonded tap, or OVS refused.
        """
        links.check_name(bridge or self.default, "bridge")
        br = await self.get(bridge)
        old = self.any_tap(name)
        if old is None:
            raise CommandError("unknown tap")
        if old.bond:
            raise CommandError(f"tap {name} is part of bond {old.bond}: clear the bond first")
        new = Tap(
            name, br.name, vlan, old.mac, host=old.host, qinq=qinq,
            namespace=old.namespace, qos=old.qos,
        )  # fmt: skip
        self._unplace(old)
        br.taps[name] = new
        try:
            switch = await self.switch()
            await switch.transact(port_commands(br.name, name, vlan, host=old.host, qinq=qinq))
        except (OvsError, CommandError) as err:
            self._unplace(new)
            self._place(old)
            raise CommandError(f"add port failed: {err}") from None
        self.write_files()

    async def disconnect_tap(self, name: str) -> None:
        """Take a VM tap off its bridge, keeping the link (``vm net disconnect``).

        Raises:
            CommandError: ``unknown tap``, a bonded tap, or OVS refused.
        """
        tap = self.find_tap(name)
        if tap.bond:
            raise CommandError(f"tap {name} is part of bond {tap.bond}: clear the bond first")
        self._unplace(tap)
        self.detached[name] = tap
        try:
            switch = await self.switch()
            await switch.transact([["--if-exists", "del-port", tap.bridge, name]])
        except (OvsError, CommandError) as err:
            self._unplace(tap)
            self._place(tap)
            raise CommandError(f"remove port failed: {err}") from None
        self.write_files()

    def _place(self, tap: Tap) -> None:
        br = self._bridges.get(tap.bridge)
        if br is not None:
            br.taps[tap.name] = tap

    def _unplace(self, tap: Tap) -> None:
        if self.detached.get(tap.name) is tap:
            del self.detached[tap.name]
        self._forget([tap])

    def _forget(self, taps: Iterable[Tap]) -> None:
        for t in taps:
            br = self._bridges.get(t.bridge)
            if br is not None and br.taps.get(t.name) is t:
                del br.taps[t.name]

    async def create_host_tap(
        self, bridge: str, vlan: int, name: str | None, namespace: str
    ) -> str:
        """Create a host tap (an OVS internal port), up and promiscuous, owned by ``namespace``.

        Raises:
            CommandError: 2.8's texts (``tap already on bridge``, reserved words...).
        """
        bridge = bridge or self.default
        links.check_name(bridge, "bridge")
        if name:
            links.check_name(name, "tap")
        br = await self.get(bridge)
        if name:
            self._check_free(name)
            if links.link_exists(name):
                raise CommandError(f"tap name already in use by a network interface: {name}")
            tap_name = name
        else:
            tap_name = self.names.take()
        tap = Tap(tap_name, br.name, vlan, host=True, namespace=namespace)
        br.taps[tap_name] = tap
        self.names.release([tap_name])
        try:
            switch = await self.switch()
            await switch.transact(port_commands(br.name, tap_name, vlan, host=True, qinq=False))
        except (OvsError, CommandError) as err:
            self._forget([tap])
            raise CommandError(f"add port failed: {err}") from None
        try:
            await links.host_tap_up(tap_name)
        except CommandError:
            await self.destroy_taps([tap_name])
            raise
        self.write_files()
        return tap_name

    async def destroy_taps(self, names: Iterable[str]) -> None:
        """Remove taps (VM or host) from their bridges and the kernel, in one batch.

        Mirrors whose destination is one of them go too. Unknown names are
        ignored (the tap is already gone).

        Raises:
            CommandError: OVS refused (``remove port failed: ...``).
        """
        doomed: list[Tap] = []
        loose: list[str] = []
        for name in dict.fromkeys(names):
            if name in self.detached:
                del self.detached[name]
                loose.append(name)
                continue
            with contextlib.suppress(CommandError):
                doomed.append(self.find_tap(name))
        failed = await links.delete_links(loose)
        if failed:
            raise CommandError(f"destroy tap failed: zombie taps: {' '.join(failed)}")
        if not doomed:
            return
        # leave the table first: a concurrent create may reuse the name at once
        self._forget(doomed)
        mirrors: list[tuple[str, str]] = []
        for t in doomed:
            br = self._bridges.get(t.bridge)
            if br is not None and t.name in br.mirrors:
                del br.mirrors[t.name]
                mirrors.append((t.bridge, t.name))
        cmds: list[list[str]] = []
        for bridge, dst in mirrors:
            cmds += mirror_delete_commands(bridge, dst)
        cmds += [["--if-exists", "del-port", t.bridge, t.name] for t in doomed if not t.bond]
        switch = await self.switch()
        # The kernel needs ~20 ms per link deleted (an RCU grace period each) and
        # ovs-vswitchd about as long per port removed: do both at once.
        # Host taps go with their port; VM taps are ours to delete.
        ports, kernel = await asyncio.gather(
            switch.transact(cmds),
            links.delete_links([t.name for t in doomed if not t.host]),
            return_exceptions=True,
        )
        # ovs-vswitchd removes a host tap's device after ovs-vsctl returns; make sure
        if not isinstance(ports, BaseException):
            await links.delete_links([t.name for t in doomed if t.host])
        self.write_files()
        if isinstance(ports, OvsError):
            raise CommandError(f"remove port failed: {ports}")
        if isinstance(ports, BaseException):
            raise ports
        if isinstance(kernel, BaseException):
            raise CommandError(f"destroy tap failed: {kernel}")
        if kernel:
            raise CommandError(f"destroy tap failed: zombie taps: {' '.join(kernel)}")

    # -- mirrors ----------------------------------------------------------------------

    async def create_mirror(self, bridge: str, src: str, dst: str, namespace: str = "") -> None:
        """Mirror traffic of tap ``src`` (the whole bridge when empty) to tap ``dst``.

        Raises:
            CommandError: 2.8's texts (``cannot mirror tap to itself``, ...).
        """
        br = await self.get(bridge)
        if src == dst:
            raise CommandError("cannot mirror tap to itself")
        if src and src not in br.taps:
            raise CommandError("source tap is not on bridge")
        if dst not in br.taps:
            raise CommandError("destination tap is not on bridge")
        if dst in br.mirrors:
            raise CommandError("destination tap is already a mirror")
        br.mirrors[dst] = namespace
        args = ["--", "--id=@dst", "get", "port", dst]
        if src:
            args += ["--", "--id=@src", "get", "port", src]
        args += ["--", "--id=@m", "create", "mirror", f"name=mirror-{dst}", "output-port=@dst"]
        args += ["select-src-port=@src", "select-dst-port=@src"] if src else ["select-all=true"]
        args += ["--", "add", "bridge", br.name, "mirrors", "@m"]
        try:
            switch = await self.switch()
            await switch.vsctl(*args)
        except (OvsError, CommandError) as err:
            br.mirrors.pop(dst, None)
            raise CommandError(f"add mirror failed: {err}") from None

    async def destroy_mirror(self, bridge: str, dst: str) -> None:
        """Remove the mirror into ``dst``.

        Raises:
            CommandError: ``tap is not a mirror on bridge <br>: <tap>``.
        """
        br = await self.get(bridge)
        if dst not in br.mirrors:
            raise CommandError(f"tap is not a mirror on bridge {br.name}: {dst}")
        switch = await self.switch()
        try:
            await switch.transact(mirror_delete_commands(br.name, dst))
        except OvsError as err:
            raise CommandError(f"delete mirror failed: {err}") from None
        br.mirrors.pop(dst, None)

    # -- trunks, tunnels, config ------------------------------------------------------

    def mirrors(self, namespace: str) -> list[tuple[str, str]]:
        """``(bridge, destination tap)`` of every mirror ``namespace`` made."""
        return [
            (br.name, dst)
            for br in self.info()
            for dst, ns in sorted(br.mirrors.items())
            if ns == namespace
        ]

    async def add_trunk(self, bridge: str, iface: str) -> None:
        """Add ``iface`` as an untagged (trunk) port; it need not exist yet, as in 2.8."""
        br = await self.get(bridge)
        if iface in br.trunks:
            raise CommandError(f"bridge already trunking to {iface}")
        br.trunks.add(iface)
        try:
            switch = await self.switch()
            await switch.transact([["add-port", br.name, iface]])
        except (OvsError, CommandError) as err:
            br.trunks.discard(iface)
            raise CommandError(f"add port failed: {err}") from None

    async def remove_trunk(self, bridge: str, iface: str) -> None:
        """Remove a trunk port (``unknown trunk: <iface>`` if it is none)."""
        br = await self.get(bridge)
        if iface not in br.trunks:
            raise CommandError(f"unknown trunk: {iface}")
        switch = await self.switch()
        try:
            await switch.transact([["del-port", br.name, iface]])
        except OvsError as err:
            raise CommandError(f"remove port failed: {err}") from None
        br.trunks.discard(iface)

    async def add_tunnel(self, bridge: str, kind: str, remote: str, key: str = "") -> str:
        """Add a vxlan or GRE tunnel port ``mega_tapN`` to ``remote``; returns its name.

        Raises:
            CommandError: the switch's datapath has no such tunnel type, or OVS
                could not set the tunnel up (``add tunnel failed: ...``).
        """
        if kind not in TUNNEL_TYPES:
            raise CommandError(f"invalid tunnel type: {kind}")
        br = await self.get(bridge)
        switch = await self.switch()
        try:
            supported = await switch.iface_types()
        except OvsError as err:
            raise CommandError(f"add tunnel failed: {err}") from None
        if kind not in supported:
            raise CommandError(
                f"add tunnel failed: the {switch.datapath} datapath of this switch has no "
                f"{kind} tunnels (it supports: {', '.join(sorted(supported))})"
            )
        tap = self.names.take()
        br.tunnels.add(tap)
        self.names.release([tap])
        opts = [f"type={kind}", f"options:remote_ip={remote}"]
        if key:
            opts.append(f"options:key={key}")
        try:
            await switch.vsctl(
                *Switch.join([["add-port", br.name, tap], ["set", "interface", tap, *opts]])
            )
            error = (await switch.get("interface", tap, "error")).strip('"')
        except OvsError as err:
            br.tunnels.discard(tap)
            raise CommandError(f"add tunnel failed: {err}") from None
        if error and error != "[]":
            br.tunnels.discard(tap)
            with contextlib.suppress(OvsError):
                await switch.transact([["--if-exists", "del-port", br.name, tap]])
            raise CommandError(f"add tunnel failed: {error}")
        return tap

    async def remove_tunnel(self, bridge: str, iface: str) -> None:
        """Remove a tunnel port (``unknown tunnel: <iface>`` if it is none)."""
        br = await self.get(bridge)
        if iface not in br.tunnels:
            raise CommandError(f"unknown tunnel: {iface}")
        switch = await self.switch()
        try:
            await switch.transact([["del-port", br.name, iface]])
        except OvsError as err:
            raise CommandError(f"remove port failed: {err}") from None
        br.tunnels.discard(iface)

    async def set_config(self, bridge: str, setting: str) -> None:
        """``ovs-vsctl set bridge <br> key=value``, remembered for ``bridge``.

        Raises:
            CommandError: ``expected key=value`` or ``set config failed: ...``.
        """
        key, sep, value = setting.partition("=")
        if not sep:
            raise CommandError("expected key=value")
        br = await self.get(bridge)
        switch = await self.switch()
        try:
            await switch.vsctl("set", "bridge", br.name, setting)
        except OvsError as err:
            raise CommandError(f"set config failed: {err}") from None
        br.config[key] = value

    # -- teardown -------------------------------------------------------------------

    async def destroy_bridge(self, name: str) -> None:
        """Undo everything the node did on bridge ``name`` and forget it.

        The bridge itself is deleted unless it was preexisting.

        Raises:
            CommandError: ``bridge not found: <name>``, or OVS refused.
        """
        br = self._bridges.get(name)
        if br is None:
            raise CommandError(f"bridge not found: {name}")
        switch = await self.switch()
        del self._bridges[name]
        vm_taps = [t.name for t in br.taps.values() if not t.host]
        # devices ovs-vswitchd removes itself, perhaps after ovs-vsctl returns
        ovs_devices = [t.name for t in br.taps.values() if t.host]
        if not br.preexisting:
            ovs_devices.append(name)
        try:
            if br.preexisting:
                cmds: list[list[str]] = []
                for dst in sorted(br.mirrors):
                    cmds += mirror_delete_commands(name, dst)
                ports = [*br.taps, *br.trunks, *br.tunnels, *br.bonds]
                cmds += [["--if-exists", "del-port", name, p] for p in sorted(ports)]
                await switch.transact(cmds)
            else:
                await switch.del_bridge(name)
        except OvsError as err:
            self._bridges[name] = br
            raise CommandError(f"delete bridge failed: {err}") from None
        finally:
            await links.delete_links(vm_taps)
            self.write_files()
        await links.delete_links(ovs_devices)

    async def destroy_all(self) -> None:
        """Destroy every bridge of the table (``clear all``); the first error is raised."""
        first: CommandError | None = None
        loose, self.detached = list(self.detached), {}
        await links.delete_links(loose)
        for name in sorted(self._bridges):
            try:
                await self.destroy_bridge(name)
            except CommandError as err:
                logger.error("cannot destroy bridge %s: %s", name, err)
                first = first or err
        if self.base is not None:
            for fname in ("bridges", "taps"):
                with contextlib.suppress(FileNotFoundError):
                    (self.base / fname).unlink()
        if first is not None:
            raise first

    # -- 2.8's state files ------------------------------------------------------------

    def write_files(self) -> None:
        """Rewrite ``<base>/bridges`` and ``<base>/taps`` (2.8's human-readable tables)."""
        if self.base is None:
            return
        try:
            self.base.mkdir(parents=True, exist_ok=True)
            rows = [[b.name, str(b.preexisting).lower(), _go_list(b.vlans())] for b in self.info()]
            _write_table(
                self.base / "bridges", ["Bridge", "Existed before minimega", "Active VLANS"], rows
            )
            hosts = [[t.bridge, t.name, str(t.vlan)] for t in self.host_taps()]
            _write_table(self.base / "taps", ["Bridge", "Tap", "VLAN"], hosts)
        except OSError as err:
            logger.warning("cannot write bridge files in %s: %s", self.base, err)


async def _bridge_up(name: str) -> None:
    # a new bridge's local port is down; 2.8 brings it up (without promisc)
    try:
        await links.netlink(_link_up, name)
    except links.netlink_error() as err:
        raise CommandError(f"up interface failed: {os.strerror(err.code)}") from None


def _link_exists(name: str) -> bool:
    with links.ip_route() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def _link_up(name: str) -> None:
    with links.ip_route() as ipr:
        found = ipr.link_lookup(ifname=name)
        if found:
            ipr.link("set", index=found[0], state="up")


def mirror_delete_commands(bridge: str, dst: str) -> list[list[str]]:
    """The commands that drop the mirror into ``dst`` (2.8's ``ovsDelMirror``)."""
    # a row id of its own, so several of these can share one merged transaction
    ref = f"@m{next(_MIRROR_REFS)}"
    return [
        [f"--id={ref}", "get", "mirror", f"mirror-{dst}"],
        ["remove", "bridge", bridge, "mirrors", ref],
    ]


def _go_list(items: Iterable[object]) -> str:
    """Go's ``%v`` of a slice: ``[a b c]``."""
    return "[" + " ".join(str(i) for i in items) + "]"


def _write_table(path: Path, header: list[str], rows: list[list[str]]) -> None:
    if not rows:
        path.write_text("")
        return
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for row in table:
        cells = [c.ljust(max(widths[i] + 1, 5)) for i, c in enumerate(row[:-1])]
        lines.append("".join(cells) + row[-1])
    path.write_text("\n".join(lines) + "\n")
