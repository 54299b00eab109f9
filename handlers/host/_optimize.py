"""``optimize``'s state on one node: KSM for the host, affinity and hugepages per namespace.

The optimizer watches the node's VM table: a VM that leaves BUILDING for
RUNNING gets its CPU when its namespace has affinity on (2.8 pins a VM on its
first start), and a VM that quits or is flushed frees its place. Hugepages
reach KVM guests through :attr:`Optimizer.hugepages`, the mapping the node
hands to its VM runtimes too (namespace -> path).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from megabus.bus.errors import CommandError
from megabus.handlers.host._affinity import Affinity
from megabus.handlers.host._ksm import Ksm
from megabus.handlers.model.table import VMTable
from megabus.handlers.model.vm import VM, VMState

logger = logging.getLogger(__name__)

#: States whose process is alive and may be pinned.
_LIVE = VMState.BUILDING | VMState.RUNNING | VMState.PAUSED


@dataclass(eq=False)
class Optimizer:
    """Every ``optimize`` setting of one node."""

    vms: VMTable
    ksm: Ksm = field(default_factory=Ksm)
    affinity: dict[str, Affinity] = field(default_factory=dict)
    #: Namespace -> hugepages path for new KVM guests (shared with the VM runtimes).
    hugepages: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vms.on_add.append(self._watch)
        self.vms.on_remove.append(self._forget)
        for vm in self.vms.vms.values():
            self._watch(vm)

    def affinity_of(self, namespace: str) -> Affinity:
        found = self.affinity.get(namespace)
        if found is None:
            found = self.affinity[namespace] = Affinity()
        return found

    # -- VM hooks ---------------------------------------------------------------------

    def _watch(self, vm: VM) -> None:
        vm.listeners.append(self._state_changed)

    def _forget(self, vm: VM) -> None:
        aff = self.affinity.get(vm.namespace)
        if aff is not None and vm.pid:
            aff.drop(vm.pid)

    def _state_changed(self, vm: VM, old: VMState) -> None:
        aff = self.affinity.get(vm.namespace)
        if aff is None or not aff.enabled or not vm.pid:
            return
        if old == VMState.BUILDING and vm.state == VMState.RUNNING:
            # a handful of syscalls on /proc: done here, in the state change
            try:
                aff.add(vm.pid)
            except CommandError as err:
                logger.error("vm %d: affinity: %s", vm.id, err)
        elif not vm.state & _LIVE:
            aff.drop(vm.pid)

    # -- affinity --------------------------------------------------------------------------

    def live_pids(self, namespace: str) -> list[int]:
        """The processes of the namespace's VMs that run (or wait to)."""
        return [vm.pid for vm in self.vms.in_namespace(namespace) if vm.pid and vm.state & _LIVE]

    def enable_affinity(self, namespace: str) -> None:
        """Pin every live VM of the namespace afresh (blocking: syscalls)."""
        self.affinity_of(namespace).enable(self.live_pids(namespace))

    def set_filter(self, namespace: str, cpus: list[str]) -> None:
        aff = self.affinity_of(namespace)
        aff.filter = cpus
        aff.enable(self.live_pids(namespace))

    def clear_filter(self, namespace: str) -> None:
        """``clear optimize affinity filter``; re-pins when affinity is on.

        2.8 turned affinity on here even when it was off; this keeps it off.
        """
        aff = self.affinity_of(namespace)
        aff.filter = []
        if aff.enabled:
            aff.enable(self.live_pids(namespace))

    # -- the whole node ---------------------------------------------------------------------

    def clear(self, namespace: str) -> None:
        """``clear optimize``: KSM restored, the namespace's hugepages and affinity off."""
        if self.ksm.enabled:
            self.ksm.disable()
        self.hugepages.pop(namespace, None)
        aff = self.affinity_of(namespace)
        aff.filter = []
        if aff.enabled:
            aff.disable()

    def drop_namespace(self, namespace: str) -> None:
        """The namespace is destroyed (its VMs are gone already)."""
        self.hugepages.pop(namespace, None)
        self.affinity.pop(namespace, None)

    def close(self) -> None:
        """The node stops: the host's KSM values back, as 2.8's teardown."""
        if self.ksm.enabled:
            try:
                self.ksm.disable()
            except CommandError as err:
                logger.error("restoring ksm: %s", err)
