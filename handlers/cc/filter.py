"""``cc filter``: which clients a command is for (2.8's ``ron.Filter``).

Parsing keeps 2.8's key forms (``uuid=``, ``hostname=``, ``arch=``, ``os=``,
``ip=``, ``mac=``, ``tag=k=v``, ``tag=k:v`` and bare ``k=v``, which names a
tag or a ``vm info`` column); matching keeps its rules: every non-empty field
must match, ``ip`` may be a CIDR, every tag must be equal, and a ``vm info``
column wins over a tag of the same name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from megabus.bus.cc_messages import ClientInfo
from megabus.bus.errors import CommandError
from megabus.bus.stored import Filter

HEADER = ["uuid", "hostname", "arch", "os", "ip", "mac", "tags"]
#: Longest filter (its ``k=v`` words together) and longest ``cc prefix``, in bytes.
#: Each new command carries both in its JetStream record and every ``cc commands``
#: row shows them: unbounded, one command line could fill the stream's messages.
MAX_FILTER_BYTES = 4096
MAX_PREFIX_BYTES = 1000


def check_prefix(prefix: str) -> str:
    """``prefix`` when it is short enough for a ``cc prefix``.

    Raises:
        CommandError: ``cc prefix too long: ...``.
    """
    size = len(prefix.encode(errors="surrogateescape"))
    if size > MAX_PREFIX_BYTES:
        raise CommandError(f"cc prefix too long: {size} bytes (at most {MAX_PREFIX_BYTES})")
    return prefix


def parse(pairs: Sequence[str]) -> Filter:
    """2.8's ``cliCCFilter`` parsing of ``k=v`` words.

    Raises:
        CommandError: ``malformed id=value pair: X``.
    """
    size = sum(len(p.encode(errors="surrogateescape")) + 1 for p in pairs) - 1
    if size > MAX_FILTER_BYTES:
        raise CommandError(f"cc filter too long: {size} bytes (at most {MAX_FILTER_BYTES})")
    f = Filter()
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CommandError(f"malformed id=value pair: {pair}")
        match key.lower():
            case "uuid":
                f.uuid = value.lower()
            case "hostname":
                f.hostname = value
            case "arch":
                f.arch = value
            case "os":
                f.os = value
            case "ip":
                f.ip = value
            case "mac":
                f.mac = value
            case "tag":
                # `=` wins over `:`, as in 2.8
                for sep2 in ("=", ":"):
                    if sep2 in value:
                        k, _, v = value.partition(sep2)
                        tags[k] = v
                        break
                else:
                    tags[value] = ""
            case _:
                tags[key] = value
    f.tags = tags
    return f


def _ip_matches(want: str, ips: Sequence[str]) -> bool:
    if "/" in want:
        try:
            net = ipaddress.ip_network(want, strict=False)
        except ValueError:
            return False
        for ip in ips:
            try:
                if ipaddress.ip_address(ip.split("/")[0]) in net:
                    return True
            except ValueError:
                continue
        return False
    return any(ip.split("/")[0] == want for ip in ips)


#: Looks up a ``vm info`` column of the client's VM (empty when there is none).
InfoLookup = Callable[[str], str]


def matches(
    f: Filter | None, client: ClientInfo, vm_tags: dict[str, str], info: InfoLookup
) -> bool:
    """Whether ``client`` passes ``f`` (2.8's ``Client.Matches``).

    The client's tags are its VM's tags (``vm_tags``) overlaid, for every key
    the filter names, by that ``vm info`` column when it is not empty.
    """
    if f is None:
        return True
    if f.uuid and f.uuid != client.uuid.lower():
        return False
    if f.hostname and f.hostname != client.hostname:
        return False
    if f.arch and f.arch != client.arch:
        return False
    if f.os and f.os != client.os:
        return False
    if f.ip and not _ip_matches(f.ip, client.ips):
        return False
    if f.mac and f.mac not in client.macs:
        return False
    if f.tags:
        tags = {**client.tags, **vm_tags}
        for key in f.tags:
            value = info(key)
            if value:
                tags[key] = value
        for key, want in f.tags.items():
            if key not in tags or tags[key] != want:
                return False
    return True
