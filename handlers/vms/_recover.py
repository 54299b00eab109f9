"""``-recover``: rebuild the VM table of a node that was killed while its VMs ran.

The node calls :func:`recover` once at start when ``settings.recover`` is set.
It scans the base directory and ``/proc`` (:mod:`.recovery`), takes the
bridges back as the node recorded them, rebuilds every VM's config through
the node's own ``vm config`` handlers (``read_config``), and hands each VM to
its type's adopter: containers (:mod:`.container_recovery`) claim the
instance directories they wrote, every other one is KVM (:mod:`.recovery`).
"""

from __future__ import annotations

import asyncio
import logging

from megabus.handlers.model.vm import VM, VMType
from megabus.handlers.vms import _container_recovery as container_recovery
from megabus.handlers.vms import _recovery as recovery
from megabus.handlers.vms._host import VmHost
from megabus.handlers.vms._recovery import ReadConfig

logger = logging.getLogger(__name__)


async def recover(host: VmHost, read_config: ReadConfig) -> list[VM]:
    """Rebuild the node's VMs from its base directory and its running processes."""
    base = host.settings.base
    logger.info("attempting to recover any vms from previous instances in %s", base)
    procs = await asyncio.to_thread(recovery.qemu_processes, base)
    found = await asyncio.to_thread(recovery.scan_base, base)
    if found:
        # the bridges first, with what the node knew of them before the crash
        await host.bridges.adopt_recorded_bridges()
    table = host.vms
    vms: list[VM] = []
    for f in found:
        if f.vm_id in table.vms:
            logger.warning("recover: vm %d already exists, skipping", f.vm_id)
            continue
        vm = recovery.recovered_vm(f, await read_config(f))
        if await asyncio.to_thread(container_recovery.claims, f.path):
            vm.type = VMType.CONTAINER
            await container_recovery.adopt(host, vm, f)
        else:
            await recovery.adopt_kvm(host, vm, f, procs)
        table.add(vm)
        vms.append(vm)
        table.next_id = max(table.next_id, vm.id + 1)
        m = recovery.UNNAMED.fullmatch(vm.name)
        if m:
            counters = table.name_counters
            counters[vm.namespace] = max(counters.get(vm.namespace, 0), int(m.group(1)) + 1)
    return vms


__all__ = ["recover"]
