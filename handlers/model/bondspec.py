"""Bondspecs: ``vm config bonds`` entries.

A bondspec is ``<i>,<j>[,...],<mode>[,<lacp>][,no-lacp-fallback][,qinq][,<name>]``.
minimega 2.8 reads the optional fields at fixed positions of the whole list,
which is only right for exactly two interfaces; here they are read after the
bond mode, so any number of interfaces (at least two) works, and a spec that
2.8 parsed correctly parses the same way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import msgspec

from megabus.bus.errors import CommandError

logger = logging.getLogger(__name__)

BOND_MODES = ("active-backup", "balance-slb", "balance-tcp")
LACP_MODES = ("active", "passive", "off")
DEFAULT_LACP = "active"
#: Automatic bond names start with this and are not printed back.
AUTO_NAME_PREFIX = "mega_bond"

_MALFORMED = "malformed bondspec"


class BondConfig(msgspec.Struct, kw_only=True):
    """One bond of a VM's configuration."""

    name: str = ""
    mode: str = ""
    lacp: str = DEFAULT_LACP
    fallback: bool = True
    qinq: bool = False
    interfaces: list[int] = msgspec.field(default_factory=list)
    #: Resolved from the member interfaces at launch.
    bridge: str = ""
    vlan: int = -1
    #: The spec as typed; ``vm config clone`` re-parses it.
    raw: str = ""

    def spec(self) -> str:
        """The canonical spec, which parses back to the same bond."""
        parts = [str(i) for i in self.interfaces]
        parts.append(self.mode)
        if not self.fallback:
            parts += [self.lacp, "no-lacp-fallback"]
        elif self.lacp != DEFAULT_LACP:
            parts.append(self.lacp)
        if self.qinq:
            parts.append("qinq")
        if self.name and not self.name.startswith(AUTO_NAME_PREFIX):
            parts.append(self.name)
        return ",".join(parts)

    def copy(self) -> BondConfig:
        """A deep copy."""
        return msgspec.structs.replace(self, interfaces=list(self.interfaces))


def _one_of(text: str, choices: Sequence[str]) -> bool:
    return text.lower() in choices


def parse_bondspec(spec: str) -> BondConfig:
    """Parse one bondspec, raising 2.8's errors."""
    f = spec.split(",")
    if len(f) < 3:
        raise CommandError(_MALFORMED)
    at = next((i for i, x in enumerate(f) if _one_of(x, BOND_MODES)), None)
    if at is None or at < 2:
        raise CommandError(_MALFORMED)
    ifaces, mode, opts = f[:at], f[at], f[at + 1 :]

    lacp = name = ""
    no_fallback = qinq = False
    is_lacp = [_one_of(x, LACP_MODES) for x in opts]
    is_nf = [x.lower() == "no-lacp-fallback" for x in opts]
    is_q = [x.lower() == "qinq" for x in opts]
    n = len(opts)
    if n == 1:
        if is_lacp[0]:
            lacp = opts[0]
        elif is_q[0]:
            qinq = True
        else:
            name = opts[0]
    elif n == 2:
        if is_q[0]:
            qinq, name = True, opts[1]
        elif is_lacp[0] and is_nf[1]:
            lacp, no_fallback = opts[0], True
        elif is_lacp[0] and is_q[1]:
            lacp, qinq = opts[0], True
        elif is_lacp[0]:
            lacp, name = opts
        else:
            raise CommandError(_MALFORMED)
    elif n == 3:
        if is_lacp[0] and is_nf[1] and is_q[2]:
            lacp, no_fallback, qinq = opts[0], True, True
        elif is_lacp[0] and is_nf[1]:
            lacp, no_fallback, name = opts[0], True, opts[2]
        elif is_lacp[0] and is_q[1]:
            lacp, qinq, name = opts[0], True, opts[2]
        else:
            raise CommandError(_MALFORMED)
    elif n == 4:
        if is_lacp[0] and is_nf[1] and is_q[2]:
            lacp, no_fallback, qinq, name = opts[0], True, True, opts[3]
        else:
            raise CommandError(_MALFORMED)
    elif n > 4:
        raise CommandError(_MALFORMED)

    indexes: list[int] = []
    for iface in ifaces:
        # Go's Atoi: optional sign, ASCII digits; a negative index names no NIC
        if not re.fullmatch(r"\+?[0-9]+", iface):
            raise CommandError(f"invalid interface index {iface} provided in bondspec")
        indexes.append(int(iface))
    logger.debug(
        "bondspec %r: interfaces=%s mode=%s lacp=%s fallback=%s qinq=%s name=%s",
        spec,
        indexes,
        mode,
        lacp,
        not no_fallback,
        qinq,
        name,
    )
    return BondConfig(
        name=name,
        mode=mode,
        lacp=lacp or DEFAULT_LACP,
        fallback=not no_fallback,
        qinq=qinq,
        interfaces=indexes,
        raw=spec,
    )


def parse_bondspecs(specs: Sequence[str]) -> list[BondConfig]:
    """Parse every spec; the first bad one raises."""
    return [parse_bondspec(s) for s in specs]


def bonds_string(bonds: Sequence[BondConfig]) -> str:
    """The space-separated specs of ``bonds`` (2.8's ``BondConfigs.String``)."""
    return " ".join(b.spec() for b in bonds)
