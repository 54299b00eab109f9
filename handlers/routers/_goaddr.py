"""Go's ``net.ParseIP`` and ``net.ParseCIDR``, as 2.8's router checks use them.

2.8 accepts an interface address when ``net.ParseCIDR`` does, a router ID
when ``net.ParseIP`` does, and picks the router ID by comparing the 16-byte
forms that ``ParseIP`` returns (an IPv4 address as ``::ffff:a.b.c.d``). Python's
:mod:`ipaddress` agrees with Go on the addresses themselves (no leading zeros
in IPv4 since Go 1.17 and Python 3.9.5); what differs is handled here: Go
takes no IPv6 zone (``%eth0``) and no netmask after the slash, and reads the
prefix length with ``dtoi`` (decimal digits, leading zeros allowed).
"""

from __future__ import annotations

import ipaddress

#: ``net.ParseIP``'s IPv4-in-IPv6 prefix (``IP.To16`` of an IPv4 address).
_V4_IN_V6 = b"\x00" * 10 + b"\xff\xff"


def parse_ip(text: str) -> bytes:
    """``net.ParseIP(text)`` as 16 bytes; ``b""`` where Go returns nil.

    ``b""`` sorts below every address, as ``bytes.Compare`` puts nil first.
    """
    if "%" in text:
        return b""
    try:
        return _V4_IN_V6 + ipaddress.IPv4Address(text).packed
    except ValueError:
        pass
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError:
        return b""


def is_ipv4(text: str) -> bool:
    """Whether ``text`` is a dotted-quad IPv4 address (Go's ``parseIPv4``)."""
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _dtoi(text: str) -> int | None:
    """Go's ``dtoi`` over the whole of ``text``: decimal digits only, below 0xFFFFFF."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    n = int(text)
    return n if n < 0xFFFFFF else None


def is_cidr(text: str) -> bool:
    """Whether ``net.ParseCIDR(text)`` succeeds."""
    addr, sep, mask = text.partition("/")
    if not sep:
        return False
    if not parse_ip(addr):
        return False
    # Go's parseIPv4 takes only a dotted quad; "::ffff:1.2.3.4" is IPv6 and has 128 bits
    bits = 32 if ":" not in addr else 128
    n = _dtoi(mask)
    return n is not None and n <= bits


def address(text: str) -> str:
    """The address part of ``ip/len`` (2.8's ``strings.Split(ip, "/")[0]``)."""
    return text.split("/")[0]
