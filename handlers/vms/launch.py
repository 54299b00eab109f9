"""Launching VMs on this node: records in the table, then every runtime at once.

As in 2.8, a VM whose launch fails stays in the table in ERROR (with its
``error`` tag); unlike 2.8, the errors are also returned for the user.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid as uuidlib
from collections.abc import Callable

from megabus.bus.errors import CommandError
from megabus.handlers.model.vm import VM, QueuedVMs, VMType
from megabus.handlers.vms._container import ContainerRuntime, check_config
from megabus.handlers.vms._host import VmHost
from megabus.handlers.vms._kvm import KvmRuntime

logger = logging.getLogger(__name__)

#: Told how many of how many VMs have launched so far.
Progress = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    return None


async def launch(
    host: VmHost, namespace: str, queued: list[QueuedVMs], progress: Progress = _no_progress
) -> list[str]:
    """Create and launch ``queued`` in ``namespace`` on this node, all at once; the errors."""
    vms: list[VM] = []
    errors: list[str] = []
    t = host.vms
    for q in queued:
        if q.type is VMType.CONTAINER:
            try:
                check_config(q.config)
            except CommandError as err:
                errors.append(str(err))
                continue
        for name in q.names:
            cfg = q.config.copy()
            vm_id = t.new_id()
            vm = VM(
                id=vm_id,
                name=name or t.unnamed(namespace),
                namespace=namespace,
                type=q.type,
                config=cfg,
                uuid=cfg.uuid or str(uuidlib.uuid4()),
                instance_path=os.path.join(host.settings.base, str(vm_id)),
                tags=dict(cfg.tags),
            )
            if q.type is VMType.CONTAINER:
                vm.runtime = ContainerRuntime(vm, host)
            else:
                vm.runtime = KvmRuntime(vm, host)
            t.add(vm)
            vms.append(vm)
    if not vms:
        return errors
    logger.info("launching %d vms", len(vms))
    done = 0

    async def one(vm: VM) -> None:
        nonlocal done
        try:
            await vm.runtime.launch()
        finally:
            done += 1
            progress(done, len(vms))

    results = await asyncio.gather(*(one(vm) for vm in vms), return_exceptions=True)
    for vm, res in zip(vms, results, strict=True):
        if isinstance(res, CommandError):
            errors.append(f"vm {vm.name}: {res}")
        elif isinstance(res, BaseException):
            logger.error("vm %d: launch failed", vm.id, exc_info=res)
            vm.set_error(f"{type(res).__name__}: {res}")
            errors.append(f"vm {vm.name}: {vm.tags['error']}")
    return errors


async def shutdown(host: VmHost) -> None:
    """Kill every VM process of the node (node shutdown; 2.8 tears its VMs down too)."""
    vms = list(host.vms.vms.values())
    await asyncio.gather(*(vm.runtime.close() for vm in vms if vm.runtime is not None))
