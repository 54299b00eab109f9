"""Config lines: splitting one into words and checking the values in it.

The node writes minirouter lines the way 2.8's minicli reads them: words
separated by blanks, ``"..."`` (or ``'...'``) around a word that holds blanks
(``bird ospf 0 0 "hello" "5"``), ``#`` starting a comment line. Every value
that ends up in a rendered config file (dnsmasq.conf, bird.conf) or on a
program's command line is checked here first, so a bad value is an error that
names the line, never a broken config or an option smuggled into one.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Union

# Union, not |: these aliases are evaluated at run time, and guests run Python 3.9
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]  # noqa: UP007
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]  # noqa: UP007
IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]  # noqa: UP007

#: Longest line the daemon reads; longer ones are an error, not a huge allocation.
MAX_LINE = 4096


class LineError(Exception):
    """A line the daemon cannot apply; the message says why (the caller names the line)."""


def split(line: str) -> list[str]:
    """The words of ``line``; ``[]`` for a blank or comment line."""
    if len(line) > MAX_LINE:
        raise LineError(f"line longer than {MAX_LINE} characters")
    words: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c.isspace():
            i += 1
            continue
        if c == "#" and not words:
            return []
        if c in "\"'":
            end = line.find(c, i + 1)
            if end < 0:
                raise LineError(f"unterminated {c} quote")
            words.append(line[i + 1 : end])
            i = end + 1
            continue
        start = i
        while i < n and not line[i].isspace() and line[i] not in "\"'":
            i += 1
        words.append(line[start:i])
    for w in words:
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in w):
            raise LineError("control characters in a word")
    return words


def ip_address(word: str, what: str = "address") -> IPAddress:
    try:
        return ipaddress.ip_address(word)
    except ValueError:
        raise LineError(f"bad {what} {word!r}: not an IPv4 or IPv6 address") from None


def ipv4_address(word: str, what: str = "address") -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(word)
    except ValueError:
        raise LineError(f"bad {what} {word!r}: not an IPv4 address") from None


def _why(word: str) -> str:
    """ipaddress's reason, from the family the word looks like (``'33' is not a valid netmask``)."""
    try:
        if ":" in word:
            ipaddress.IPv6Interface(word)
        else:
            ipaddress.IPv4Interface(word)
    except ValueError as err:
        return str(err)
    return "not an address"


def ip_interface(word: str) -> IPInterface:
    """An address with its prefix (``1.2.3.4/24``), as ``ip addr add`` takes it."""
    try:
        return ipaddress.ip_interface(word)
    except ValueError:
        raise LineError(f"bad address {word!r}: {_why(word)}") from None


def ip_network(word: str, what: str = "network") -> IPNetwork:
    """A network; host bits are allowed (``10.0.0.1/24`` is ``10.0.0.0/24``) as in 2.8."""
    try:
        return ipaddress.ip_network(word, strict=False)
    except ValueError:
        raise LineError(f"bad {what} {word!r}: {_why(word)}") from None


def index(word: str) -> int | None:
    """An interface index, or ``None`` for ``lo``."""
    if word == "lo":
        return None
    if not word.isdigit():
        raise LineError(f"bad interface index {word!r}: want a number or lo")
    return int(word)


_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


def mac(word: str) -> str:
    if not _MAC.match(word):
        raise LineError(f"bad MAC address {word!r}")
    return word.lower()


_HOST = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$")


def hostname(word: str) -> str:
    if not _HOST.match(word) or ".." in word:
        raise LineError(f"bad host name {word!r}")
    return word


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def name(word: str, what: str) -> str:
    """A name that becomes a BIRD symbol (static route set, BGP process)."""
    if not _NAME.match(word):
        raise LineError(
            f"bad {what} {word!r}: letters, digits and _ only, not starting with a digit"
        )
    return word


def number(word: str, what: str, low: int, high: int) -> int:
    if not word.isdigit() or not low <= int(word) <= high:
        raise LineError(f"bad {what} {word!r}: want a number from {low} to {high}")
    return int(word)


def want(words: list[str], *counts: int) -> None:
    """Raise unless ``words`` has one of ``counts`` words."""
    if len(words) not in counts:
        raise LineError(f"wrong number of words ({len(words)}) for {' '.join(words[:2])!r}")


def choice(word: str, what: str, options: tuple[str, ...]) -> str:
    if word not in options:
        raise LineError(f"bad {what} {word!r}: want one of {', '.join(options)}")
    return word
