"""Every record megabus keeps in JetStream, with versioned tags.

Messages in flight are in :mod:`megabus.bus.messages`; these are what stays:
the records of a namespace's cc command stream and the values of the VLAN
KV bucket. Each carries a ``type`` tag with a version, so a node of a later
version can tell old records from new ones, and any NATS client can read
them as JSON. The evolution rules are the bus's: a new field has a default;
any other change is a new tag version.
"""

from __future__ import annotations

import json

import msgspec

from megabus.bus.cc_messages import Command


class Filter(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A cc filter (``cc filter``); the empty filter matches every client."""

    uuid: str = ""
    hostname: str = ""
    arch: str = ""
    os: str = ""
    ip: str = ""
    mac: str = ""
    tags: dict[str, str] = {}

    def __str__(self) -> str:
        """2.8's ``Filter.String``: ``uuid=... && hostname=... && k=v``."""
        parts = [
            f"{key}={value}"
            for key, value in (
                ("uuid", self.uuid),
                ("hostname", self.hostname),
                ("arch", self.arch),
                ("os", self.os),
                ("ip", self.ip),
                ("mac", self.mac),
            )
            if value
        ]
        parts.extend(f"{k}={v}" for k, v in sorted(self.tags.items()))
        return " && ".join(parts)

    def row(self) -> list[str]:
        """The ``cc filter`` summary row; tags as Go's JSON (sorted keys, ``{}`` when none)."""
        tags = json.dumps(self.tags, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return [self.uuid, self.hostname, self.arch, self.os, self.ip, self.mac, tags]


class Stored(msgspec.Struct, tag_field="type", kw_only=True):
    """Base of every stored record: the ``type`` tag names it and its version."""


# -- the cc command stream (subjects <root>.cc.<ns>.s.*) ----------------------------------


class CcCommandRecord(Stored, tag="megabus.ccstore.v1.cmd", omit_defaults=True):
    """A cc command as the namespace's stream keeps it (``cmd.<id>``)."""

    id: int
    epoch: str
    spec: Command
    prefix: str = ""
    filter: Filter | None = None
    deleted: bool = False
    #: The node that created it.
    node: str = ""


class CcDoneRecord(Stored, tag="megabus.ccstore.v1.done", omit_defaults=True):
    """Client ``uuid`` got command ``id``; ``responded`` once its response came back."""

    id: int
    epoch: str
    uuid: str
    responded: bool = False


class CcEpochRecord(Stored, tag="megabus.ccstore.v1.epoch"):
    """A new command epoch (``clear cc commands``): everything before it is gone."""

    epoch: str


#: Any record of the cc command stream.
CcRecord = CcCommandRecord | CcDoneRecord | CcEpochRecord


# -- the VLAN KV bucket ---------------------------------------------------------------------


class VlanClaim(Stored, tag="megabus.vlans.v1.claim", omit_defaults=True):
    """Key ``vlan.<n>``: who holds VLAN ``n`` (an alias of a namespace, or the blacklist)."""

    ns: str = ""
    alias: str = ""
    blacklist: bool = False


class VlanAlias(Stored, tag="megabus.vlans.v1.alias"):
    """Key ``alias.<ns>.<alias>``: the VLAN an alias stands for."""

    vlan: int


class VlanRangeValue(Stored, tag="megabus.vlans.v1.range"):
    """Key ``global`` or ``range.<ns>``: the allocation range, half-open ``[min, max)``."""

    min: int
    max: int


__all__ = [
    "CcCommandRecord",
    "CcDoneRecord",
    "CcEpochRecord",
    "CcRecord",
    "Filter",
    "Stored",
    "VlanAlias",
    "VlanClaim",
    "VlanRangeValue",
]
