"""megabus for programs: a node's commands as typed methods, its events as typed iterators.

Example::

    from megabus.client import Client

    async with await Client.connect() as mm:          # the local node, as megabus -e finds it
        await mm.vlans_add("lan", 101)
        await mm.vm_config_net("lan")
        await mm.vm_launch("container", "web[0-2]")
        for row in (await mm.vm_info()).rows:
            print(row.name, row.state, row.vlan)
        async with mm.events("vm") as events:
            await mm.vm_start("all")
            print(await events.next())

The methods are made from the node's own command table, named as 2.8's
generated Python API named them; :class:`SyncClient` is the same without
``await``.

Modules:
    _methods: pyapigen's names, variants and arguments, from the table.
    _results: typed replies and rows, cc responses, :class:`CommandFailedError`.
    _client: :class:`Client` and :class:`Subscription`.
    _sync: :class:`SyncClient`.
    _stub: the methods as a typing stub (``megabus schema -pyi``).
"""

from megabus.bus.messages import Event, Heartbeat, LogRecord, StatusUpdate, VlanAliasEvent
from megabus.client._client import Client, Command, Subscription
from megabus.client._methods import ArgumentError, Method, build_methods, quote
from megabus.client._results import CcResponse, CommandFailedError, Reply, Result, Row
from megabus.client._stub import stub
from megabus.client._sync import SyncClient, SyncCommand, SyncSubscription

__all__ = [
    "ArgumentError",
    "CcResponse",
    "Client",
    "Command",
    "CommandFailedError",
    "Event",
    "Heartbeat",
    "LogRecord",
    "Method",
    "Reply",
    "Result",
    "Row",
    "StatusUpdate",
    "Subscription",
    "SyncClient",
    "SyncCommand",
    "SyncSubscription",
    "VlanAliasEvent",
    "build_methods",
    "quote",
    "stub",
]
