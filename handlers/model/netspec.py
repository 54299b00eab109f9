"""Netspecs: ``vm config networks`` entries, parsed as minimega 2.8 does.

A netspec is ``<bridge>,<VLAN>,<MAC>,<driver>,<qinq>`` where every field but
the VLAN may be left out; which field is which depends on how many there are
and what they look like (2.8's interpretation order, reference section 4.1).
The VLAN text is kept as typed (``alias``) for printing and resolved to a
number through an injected lookup, which allocates aliases on first use.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Collection, Sequence

import msgspec

from megabus.bus.errors import CommandError

logger = logging.getLogger(__name__)

DEFAULT_BRIDGE = "mega_bridge"
DEFAULT_DRIVER = "e1000"

#: Resolves VLAN text (number or alias) to a VLAN id in some namespace.
VlanLookup = Callable[[str], Awaitable[int]]

_HEX2 = "[0-9a-fA-F]{2}"
_HEX4 = "[0-9a-fA-F]{4}"


class NetConfig(msgspec.Struct, kw_only=True):
    """One interface of a VM's configuration."""

    #: The VLAN as typed (``A``, ``foo//A``, ``101``); what getters print.
    alias: str = ""
    vlan: int = 0
    bridge: str = DEFAULT_BRIDGE
    mac: str = ""
    driver: str = DEFAULT_DRIVER
    qinq: bool = False
    #: The spec as typed; ``vm config clone`` re-parses it.
    raw: str = ""
    # Filled in when a VM runs.
    tap: str = ""
    ip4: str = ""
    ip6: str = ""

    def spec(self) -> str:
        """The canonical spec, which parses back to the same interface."""
        parts: list[str] = []
        if self.bridge and self.bridge != DEFAULT_BRIDGE:
            parts.append(self.bridge)
        parts.append(self.alias)
        if self.mac:
            parts.append(self.mac)
        if self.driver and self.driver != DEFAULT_DRIVER:
            parts.append(self.driver)
        if self.qinq:
            parts.append("qinq")
        return ",".join(parts)


def is_mac(text: str) -> bool:
    """Whether Go's ``net.ParseMAC`` accepts ``text``.

    Go takes 6, 8 or 20 bytes written as hex pairs joined by one consistent
    ``:`` or ``-``, or as dotted groups of four hex digits.
    """
    if len(text) < 14:
        return False
    if text[2] in ":-":
        sep = re.escape(text[2])
        return any(re.fullmatch(f"{_HEX2}(?:{sep}{_HEX2}){{{n - 1}}}", text) for n in (6, 8, 20))
    if text[4] == ".":
        return any(re.fullmatch(rf"{_HEX4}(?:\.{_HEX4}){{{n - 1}}}", text) for n in (3, 4, 10))
    return False


def _is_qinq(text: str) -> bool:
    return text.lower() == "qinq"


def parse_netspec(spec: str, nics: Collection[str]) -> NetConfig:
    """Parse one netspec; ``nics`` is the set of valid NIC drivers.

    The VLAN is not resolved here (``vlan`` stays 0); see :func:`resolve_netspecs`.
    """
    f = spec.split(",")
    mac = [is_mac(x) for x in f]
    drv = [x in nics for x in f]
    q = [_is_qinq(x) for x in f]
    bridge = vlan = m = driver = ""
    qinq = False
    n = len(f)
    if n == 1:
        vlan = f[0]
    elif n == 2:
        if q[1]:
            vlan, qinq = f[0], True
        elif mac[1]:
            vlan, m = f[0], f[1]
        elif drv[1]:
            vlan, driver = f[0], f[1]
        else:
            bridge, vlan = f[0], f[1]
    elif n == 3:
        if q[2] and mac[1]:
            vlan, m, qinq = f[0], f[1], True
        elif q[2] and drv[1]:
            vlan, driver, qinq = f[0], f[1], True
        elif q[2]:
            bridge, vlan, qinq = f[0], f[1], True
        elif mac[2]:
            bridge, vlan, m = f
        elif mac[1] and drv[2]:
            vlan, m, driver = f
        elif drv[2]:
            bridge, vlan, driver = f
        else:
            raise CommandError("malformed netspec")
    elif n == 4:
        if q[3] and mac[1]:
            vlan, m, driver, qinq = f[0], f[1], f[2], True
        elif q[3] and mac[2]:
            bridge, vlan, m, qinq = f[0], f[1], f[2], True
        elif q[3] and drv[2]:
            bridge, vlan, driver, qinq = f[0], f[1], f[2], True
        elif drv[3] and mac[2]:
            bridge, vlan, m, driver = f
        else:
            raise CommandError("malformed netspec")
    elif n == 5 and mac[2] and drv[3] and q[4]:
        bridge, vlan, m, driver, qinq = f[0], f[1], f[2], f[3], True
    else:
        raise CommandError("malformed netspec")
    logger.debug("netspec %r: bridge=%r vlan=%r mac=%r driver=%r", spec, bridge, vlan, m, driver)
    return NetConfig(
        alias=vlan,
        bridge=bridge or DEFAULT_BRIDGE,
        mac=m.lower(),
        driver=driver or DEFAULT_DRIVER,
        qinq=qinq,
        raw=spec,
    )


async def resolve_netspecs(
    specs: Sequence[str], nics: Collection[str], lookup: VlanLookup
) -> list[NetConfig]:
    """Parse every spec and resolve its VLAN; the first bad one raises."""
    out: list[NetConfig] = []
    for spec in specs:
        nic = parse_netspec(spec, nics)
        if nic.alias == "":
            raise CommandError("VLAN must be non-empty string")
        nic.vlan = await lookup(nic.alias)
        out.append(nic)
    return out


def networks_string(nets: Sequence[NetConfig]) -> str:
    """The space-separated specs of ``nets`` (2.8's ``NetConfigs.String``)."""
    return " ".join(n.spec() for n in nets)
