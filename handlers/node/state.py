"""Node-local state: namespaces, output defaults, aliases, history.

minimega keeps this state per daemon, not per client: ``namespace foo`` typed
in one shell switches the node's active namespace for every client, and
scripts rely on that. One :class:`NodeState` lives in each node process.
Cluster state (VLAN aliases, cc commands) lives in JetStream and is reached
through the stores hung on this object.

The node's engines hang here too, as typed fields built from the settings:
the bridge table, the cc servers, what VM runtimes and ``vm info`` need of
the node, IP learning, dnsmasq. What exists only while the node serves
(events, the mesh log, membership) is set by the
node's lifecycle (:mod:`megabus.handlers.node.lifecycle`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from megabus.bus.messages import Flags
from megabus.bus.subjects import bounded_token
from megabus.bus.tasks import TaskSet
from megabus.config.settings import Settings
from megabus.handlers.cc import CcNode
from megabus.handlers.files import Files
from megabus.handlers.host import Optimizer, Profiler
from megabus.handlers.model.config import VMConfig
from megabus.handlers.model.table import VMTable
from megabus.handlers.model.vm import DEFAULT_NAMESPACE, VM, QueuedVMs
from megabus.handlers.net import Bridges, Captures, Dnsmasqs, IpLearner, Replumber
from megabus.handlers.node.logs import LogControl, setup_logging
from megabus.handlers.pipes import Plumber
from megabus.handlers.routers import Router
from megabus.handlers.vms import VmHost, info
from megabus.handlers.vnc import Screens

if TYPE_CHECKING:
    from megabus.bus.membership import Membership
    from megabus.handlers.net import VlanStore
    from megabus.handlers.node.events import EventPublisher
    from megabus.handlers.node.meshlog import MeshLogHandler
    from megabus.handlers.node.whereabouts import Whereabouts

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
    #: ``router``: the pending config of each router VM this node runs, by VM ID (2.8
    #: keeps them in the namespace on the VM's host).
    routers: dict[int, Router] = field(default_factory=dict)
    #: ``ns bridge``: the bridges this node spread over the namespace's hosts, with their key.
    bridges: dict[str, int] = field(default_factory=dict)


@dataclass
class DeployState:
    """``deploy flags``/``stdout``/``stderr`` of one node (2.8 keeps them per process)."""

    flags: list[str] | None = None
    stdout: str = ""
    stderr: str = ""
    #: The exact commands of the last ``deploy launch``, per host (for ``deploy`` tests and logs).
    last: dict[str, list[str]] = field(default_factory=dict)


@dataclass(eq=False)
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
    #: The node's VMs across namespaces (IDs, ``vm-<n>`` counters).
    vms: VMTable = field(default_factory=VMTable)
    #: Who is alive in the cluster (heartbeats); set while the node runs.
    membership: Membership | None = None
    #: ``mesh timeout``: seconds a fan-out waits in all; 0 means no overall deadline.
    mesh_timeout: float = 0.0

    # -- engines, built from the settings ---------------------------------------------
    #: The node's bridge table (its files go under ``-base``).
    bridges: Bridges = field(init=False)
    #: The node's cc servers, one per namespace.
    cc: CcNode = field(init=False)
    #: What VM runtimes need of the node.
    vm_host: VmHost = field(init=False)
    #: What ``vm info`` reads of the node besides the VMs.
    info_view: info.InfoView = field(init=False)
    #: Snoops the bridges for the VMs' addresses (started with the node).
    iplearn: IpLearner = field(init=False)
    #: Puts bridges, taps and flows back when Open vSwitch restarts (started with the node).
    replumb: Replumber = field(init=False)
    #: The host dnsmasq servers (``dnsmasq``).
    dnsmasq: Dnsmasqs = field(init=False)
    #: ``background`` processes' reapers: killed when this node stops.
    background: TaskSet = field(init=False)
    #: ``capture`` state per namespace.
    captures: dict[str, Captures] = field(default_factory=dict)
    #: ``deploy`` state.
    deploy: DeployState = field(default_factory=DeployState)
    #: ``host``'s last bandwidth sample: (time, rx bytes, tx bytes).
    host_bandwidth: tuple[float, int, int] | None = None
    #: ``optimize``: KSM, and affinity and hugepages per namespace.
    optimize: Optimizer = field(init=False)
    #: ``debug cpu start``'s profile.
    profiler: Profiler = field(default_factory=Profiler)
    #: Set by ``quit`` and ``nuke``: the node process stops (``run_node`` waits on it).
    quit_requested: asyncio.Event = field(default_factory=asyncio.Event)
    #: ``plumb``/``pipe``: the node's pipes and pipelines (on the bus once the node serves);
    #: cc agents read and write them too (``cc exec stdin=<pipe>``).
    pipes: Plumber = field(init=False)
    #: ``file``: the files directory across the cluster (2.8's iomeshage).
    files: Files = field(init=False)
    #: ``vnc``: kb/fb recordings and kb playbacks, per namespace.
    vnc: Screens = field(default_factory=Screens)

    # -- set while the node serves (node.lifecycle) -------------------------------------
    #: The log destinations; made from the settings on first use.
    logs: LogControl | None = None
    #: Lifecycle events to the bus.
    events: EventPublisher | None = None
    #: Which host runs which VM, from the cluster's events (set while serving).
    whereabouts: Whereabouts | None = None
    #: Log records to the bus for a log node.
    meshlog: MeshLogHandler | None = None

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.settings.name
        self.namespace(DEFAULT_NAMESPACE)
        self.bridges = Bridges()
        self.bridges.base = Path(self.settings.base)
        self.cc = CcNode(
            name=self.name,
            settings=self.settings,
            vms=self.vms,
            describe=self.describe,
            columns=frozenset(info.COLUMNS),
            on_event=self._cc_event,
        )
        self.optimize = Optimizer(self.vms)
        self.vm_host = VmHost(
            self.settings, self.vms, self.bridges, self.cc, self.vnc,
            hugepages=self.optimize.hugepages,
        )  # fmt: skip
        self.info_view = info.InfoView(
            print_vlan=self.vlans.print_vlan, cc_active=self.cc.active, bridges=self.bridges
        )
        self.iplearn = IpLearner(self.bridges, self.vms)
        self.replumb = Replumber(self.bridges, self.iplearn.reattach)
        self.dnsmasq = Dnsmasqs(Path(self.settings.base))
        self.background = TaskSet(f"background:{self.name}")
        self.pipes = Plumber(self.name)
        self.cc.pipes = self.pipes
        self.files = Files(
            self.name,
            self.settings.files_dir,
            headnode=self.settings.log_node,
            hash_files=self.settings.hash_files,
        )

    def describe(self, vm: VM, column: str) -> str:
        """The text of ``vm info``'s ``column`` for ``vm``."""
        return info.value(vm, column, self.info_view)

    def _cc_event(self, namespace: str, uuid: str, detail: dict[str, str]) -> None:
        if self.events is not None:
            self.events.emit(namespace, "cc", uuid, detail)

    def log_control(self) -> LogControl:
        """The node's log destinations, made from its settings on first use."""
        if self.logs is None:
            self.logs = setup_logging(self.settings)
        return self.logs

    def captures_of(self, namespace: str) -> Captures:
        """The ``capture`` state of ``namespace`` on this node."""
        found = self.captures.get(namespace)
        if found is None:
            found = self.captures[namespace] = Captures()
        return found

    def namespace(self, name: str) -> Namespace:
        """The namespace ``name``, created on first use as minimega does.

        Raises:
            NameTooLongError: a new name too long for the subjects it goes into.
        """
        ns = self.namespaces.get(name)
        if ns is None:
            bounded_token(name, "namespace name")
            ns = self.namespaces[name] = Namespace(name)
        return ns

    def record(self, line: str) -> None:
        """Append ``line`` to the history, keeping the newest entries."""
        self.history.append(line)
        if len(self.history) > HISTORY_LEN:
            del self.history[: len(self.history) - HISTORY_LEN]
