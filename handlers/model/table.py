"""The node's VMs across namespaces, and 2.8's ways of picking them.

IDs come from one counter per node process shared by every namespace (2.8:
unique per host only); unnamed VMs get ``vm-<n>`` from a counter per namespace.
:meth:`VMTable.apply` is 2.8's ``VMs.apply``: a target is a name, an ID, a
range list or ``all``, the function runs on every match concurrently, and one
named VM that is missing or not applicable gives 2.8's error text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from megabus.bus.errors import CommandError
from megabus.handlers.language.ranges import expand
from megabus.handlers.model.vm import VM

logger = logging.getLogger(__name__)

#: minimega's wildcard target.
WILDCARD = "all"

#: Applied to one VM: returns whether the VM was a valid target; raises
#: :class:`CommandError` for a failure.
ApplyFunc = Callable[[VM, bool], Awaitable[bool]]


def vm_not_found(target: str) -> CommandError:
    """2.8's ``vmNotFound``."""
    return CommandError(f"vm not found: {target}")


def go_atoi(text: str) -> int | None:
    """``strconv.Atoi`` or None."""
    digits = text[1:] if text[:1] in "+-" else text
    if digits and digits.isascii() and digits.isdigit():
        return int(text)
    return None


@dataclass
class VMTable:
    """Every VM of this node, keyed by ID."""

    vms: dict[int, VM] = field(default_factory=dict)
    #: The next VM ID (2.8: one counter per process, from 0).
    next_id: int = 0
    #: Per namespace, the last ``vm-<n>`` handed out.
    name_counters: dict[str, int] = field(default_factory=dict)
    #: Called with every VM put in the table, and with every VM taken out
    #: (lifecycle events for subscribers).
    on_add: list[Callable[[VM], None]] = field(default_factory=list)
    on_remove: list[Callable[[VM], None]] = field(default_factory=list)

    def new_id(self) -> int:
        """Take the next VM ID."""
        vm_id = self.next_id
        self.next_id += 1
        return vm_id

    def unnamed(self, namespace: str) -> str:
        """The next ``vm-<n>`` name of ``namespace``."""
        n = self.name_counters.get(namespace, 0)
        self.name_counters[namespace] = n + 1
        return f"vm-{n}"

    def add(self, vm: VM) -> None:
        """Put ``vm`` in the table."""
        self.vms[vm.id] = vm
        for watcher in self.on_add:
            watcher(vm)

    def remove(self, vm: VM) -> None:
        """Take ``vm`` out of the table."""
        if self.vms.get(vm.id) is vm:
            del self.vms[vm.id]
            for watcher in self.on_remove:
                watcher(vm)

    def in_namespace(self, namespace: str) -> list[VM]:
        """The VMs of ``namespace``, by ID."""
        return sorted(
            (v for v in self.vms.values() if v.namespace == namespace), key=lambda v: v.id
        )

    def find(self, namespace: str, text: str) -> VM | None:
        """2.8's ``FindVM``: by ID when ``text`` is an integer, else by name or UUID."""
        vm_id = go_atoi(text)
        if vm_id is not None:
            vm = self.vms.get(vm_id)
            return vm if vm is not None and vm.namespace == namespace else None
        for vm in self.in_namespace(namespace):
            if text in (vm.name, vm.uuid):
                return vm
        return None

    def must_find(self, namespace: str, text: str) -> VM:
        """:meth:`find` or 2.8's ``vm not found: <x>``."""
        vm = self.find(namespace, text)
        if vm is None:
            raise vm_not_found(text)
        return vm

    def forget_namespace(self, namespace: str) -> None:
        """Drop the namespace's name counter (it is being destroyed)."""
        self.name_counters.pop(namespace, None)

    async def apply(self, namespace: str, target: str, fn: ApplyFunc) -> None:
        """Run ``fn`` on the VMs ``target`` picks; raise the joined errors, 2.8-style."""
        errors = await self.apply_errors(namespace, target, fn)
        if errors:
            raise CommandError("\n".join(errors))

    async def apply_errors(self, namespace: str, target: str, fn: ApplyFunc) -> list[str]:
        """2.8's ``VMs.apply``: the error texts, in the order the VMs finished."""
        try:
            vals = expand(target)
        except ValueError as err:
            return [str(err)]
        names: set[str] = set()
        ids: set[int] = set()
        for v in vals:
            vm_id = go_atoi(v)
            if vm_id is not None:
                ids.add(vm_id)
            else:
                names.add(v)
        wild = WILDCARD in names
        names.discard(WILDCARD)

        matched: list[VM] = []
        for vm in self.in_namespace(namespace):
            if wild or vm.name in names or vm.id in ids:
                names.discard(vm.name)
                ids.discard(vm.id)
                matched.append(vm)

        results: dict[str, bool] = {}
        errors: list[str] = []

        async def one(vm: VM) -> None:
            ok = True
            try:
                ok = await fn(vm, wild)
            except CommandError as err:
                errors.append(str(err))
            except Exception as err:
                # one VM's bug must not cost the others their answer (nor hide its traceback)
                logger.exception("vm %s: failed", vm.name)
                errors.append(f"vm {vm.name}: internal error: {type(err).__name__}: {err}")
                ok = False
            results[vm.name] = ok
            results[str(vm.id)] = ok

        async with asyncio.TaskGroup() as tg:
            for vm in matched:
                tg.create_task(one(vm))

        if len(vals) == 1 and not wild:
            if len(names) + len(ids) == 1:
                errors.append(str(vm_not_found(vals[0])))
            elif not results.get(vals[0], False):
                errors.append(f"VM state error: {vals[0]}")
        if names or ids:
            logger.info("VMs not found: %s", sorted(names) + sorted(map(str, ids)))
        return errors
