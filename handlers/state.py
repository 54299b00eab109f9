"""Node-local state: namespaces, output defaults, aliases, history.

minimega keeps this state per daemon, not per client: ``namespace foo`` typed
in one shell switches the node's active namespace for every client, and
scripts rely on that. One :class:`NodeState` lives in each node process.
Cluster state (VLAN aliases, later cc commands and files) lives in JetStream
and is reached through the stores hung on this object.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from megabus.bus.messages import Flags
from megabus.config.settings import Settings
from megabus.handlers.vmconf.config import VMConfig
from megabus.handlers.vms.model import QueuedVMs
from megabus.handlers.vms.table import VMTable

if TYPE_CHECKING:
    from megabus.bus.membership import Membership
    from megabus.handlers.vlanstore import VlanStore

DEFAULT_NAMESPACE = "minimega"
#: minicli keeps at most this many history entries.
HISTORY_LEN = 10000


@dataclass
class Namespace:
    """One namespace's node-local part."""

    name: str
    #: The ``vm config`` that the next ``vm launch`` copies.
    vm_config: VMConfig = field(default_factory=VMConfig)
    #: ``vm config save <name>`` snapshots.
    saved_configs: dict[str, VMConfig] = field(default_factory=dict)
    #: Hosts of the namespace; empty means this node only.
    hosts: list[str] = field(default_factory=list)
    #: ``vm launch`` batches waiting for the scheduler.
    vm_queue: list[QueuedVMs] = field(default_factory=list)
    #: ``ns queueing``: ``vm launch <names>`` only queues; ``vm launch`` launches.
    queueing: bool = False
    #: ``hosts`` holds the namespace's own choice (set on first use from the
    #: live nodes, 2.8's rule); until then an empty ``hosts`` means this node.
    hosts_set: bool = False
    #: ``ns load``: how the scheduler ranks hosts (cpucommit, memcommit, netcommit).
    host_sort_by: str = "cpucommit"
    #: ``ns schedule dry-run``'s placement, host -> queued VMs; the next schedule uses it.
    assignment: dict[str, list[QueuedVMs]] | None = None
    #: ``ns schedule status`` rows, one per scheduler run (scheduler's own records).
    schedule_stats: list[Any] = field(default_factory=list)


@dataclass
class NodeState:
    """Everything one node remembers between commands."""

    settings: Settings
    #: VLAN aliases, ranges and blacklist (JetStream KV, cached locally).
    vlans: VlanStore
    name: str = ""
    started: float = field(default_factory=time.time)
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    #: The active namespace; ``minimega`` is the default one.
    active: str = DEFAULT_NAMESPACE
    #: Global output defaults (``.annotate false`` etc.).
    flags: Flags = field(default_factory=Flags)
    #: ``.alias name=expansion``.
    aliases: dict[str, str] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    #: Seconds between status updates; 0 turns them off (``status updates``).
    status_frequency: float = 3.0
    #: Per-family state that does not deserve a field of its own.
    extra: dict[str, Any] = field(default_factory=dict)
    #: The node's VMs across namespaces (IDs, ``vm-<n>`` counters).
    vms: VMTable = field(default_factory=VMTable)
    #: Who is alive in the cluster (heartbeats); set while the node runs.
    membership: Membership | None = None
    #: ``mesh timeout``: seconds a fan-out waits in all; 0 means no overall deadline.
    mesh_timeout: float = 0.0

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.settings.name
        self.namespace(DEFAULT_NAMESPACE)

    def namespace(self, name: str) -> Namespace:
        """The namespace ``name``, created on first use as minimega does."""
        ns = self.namespaces.get(name)
        if ns is None:
            ns = self.namespaces[name] = Namespace(name)
        return ns

    def record(self, line: str) -> None:
        """Append ``line`` to the history, keeping the newest entries."""
        self.history.append(line)
        if len(self.history) > HISTORY_LEN:
            del self.history[: len(self.history) - HISTORY_LEN]
