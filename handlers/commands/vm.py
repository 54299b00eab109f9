"""The ``vm`` command family (all but ``vm config`` and ``vm net``) and ``clear vm tag``.

Launch follows 2.8: ``vm launch <type> <names>`` queues a copy of the
namespace's ``vm config`` under 2.8's name rules and, unless the namespace
queues, launches at once. One change: launch errors are reported by ``vm
launch`` (2.8 only logs them); the VM still shows in ERROR with tag ``error``.
This node is the namespace's only host for now, so scheduling is local.
The VMs themselves live in :mod:`megabus.handlers.vms`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import uuid as uuidlib
from typing import TYPE_CHECKING, Any

from megabus.bus.errors import CommandError
from megabus.handlers.commands.namespace import on_destroy
from megabus.handlers.language.command import LanguageError
from megabus.handlers.language.gojson import go_json
from megabus.handlers.language.ranges import expand
from megabus.handlers.model.config import VMConfig
from megabus.handlers.model.table import WILDCARD, VMTable, go_atoi
from megabus.handlers.model.vm import FLUSHABLE, KILLABLE, VM, QueuedVMs, VMState, VMType
from megabus.handlers.node import schedule as scheduler
from megabus.handlers.node.registry import Result, command, on_clear_all
from megabus.handlers.vms import KvmRuntime, devices, info, screenshot, snapshot, top

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

_VALID_NAME = re.compile(r"[a-zA-Z0-9_.-]+")
_INVALID_NAME = "invalid name; must only include letters, numbers, hyphens and underscores"
_INT32_MAX = 2**31 - 1


def table(ctx: Context) -> VMTable:
    """The node's VM table."""
    return ctx.state.vms


# -- names and queueing ---------------------------------------------------------------


def expand_launch_names(arg: str) -> list[str]:
    """2.8's ``expandLaunchNames``: a count gives unnamed VMs (``""``), else a range list."""
    count = go_atoi(arg)
    if count is not None and abs(count) <= _INT32_MAX:
        if count <= 0:
            raise CommandError("invalid number of vms (must be > 0)")
        return [""] * count
    try:
        names = expand(arg)
    except LanguageError as err:
        raise CommandError(str(err)) from None
    if not names:
        raise CommandError("no VMs to launch")
    for i, name in enumerate(names):
        if name == WILDCARD:
            raise CommandError(f"invalid vm name, `{name}` is a reserved word")
        if go_atoi(name) is not None:
            raise CommandError(f"invalid vm name, `{name}` is an integer")
        if name == "vince":
            logger.warning("vince is unstoppable")
        if name and names.index(name) != i:
            raise CommandError(f"`{name}` is specified twice in VMs to launch")
    return names


def queue(ctx: Context, arg: str, vm_type: VMType, cfg: VMConfig) -> None:
    """2.8's ``Namespace.Queue``: check names and UUIDs, then queue."""
    names = expand_launch_names(arg)
    if len(names) > 1 and cfg.uuid:
        raise CommandError("cannot launch multiple VMs with a pre-configured UUID")
    existing = table(ctx).in_namespace(ctx.namespace)
    taken_names = {vm.name for vm in existing}
    taken_uuids = {vm.uuid for vm in existing}
    for name in names:
        if name in taken_names:
            raise CommandError(f"vm already exists with name `{name}`")
        if name and not _VALID_NAME.fullmatch(name):
            raise CommandError(f"{_INVALID_NAME}: `{name}`")
    if cfg.uuid and cfg.uuid in taken_uuids:
        raise CommandError(f"vm already exists with UUID `{cfg.uuid}`")
    for q in ctx.ns.vm_queue:
        for name in q.names:
            if name and name in names:
                raise CommandError(f"vm already queued with name `{name}`")
        if cfg.uuid and q.config.uuid == cfg.uuid:
            raise CommandError(f"vm already queued with UUID `{cfg.uuid}`")
    ctx.ns.vm_queue.append(QueuedVMs(names=names, type=vm_type, config=cfg))


# -- launch, start, stop, kill, flush, info ----------------------------------------------


@command(
    "vm launch",
    "vm launch <kvm,> <name or count> [config]",
    "vm launch <container,> <name or count> [config]",
    short="launch virtual machines in a paused state",
)
async def vm_launch(ctx: Context, cmd: Command) -> Result:
    """Queue VMs (and launch them unless the namespace queues), or launch the queue."""
    if ctx.source == "meshage":
        raise CommandError(f"cannot run `{cmd.original}` via meshage")
    if cmd.string_args:
        name = cmd.arg("config")
        if name:
            saved = ctx.ns.saved_configs.get(name)
            if saved is None:
                raise CommandError(f"config {name} does not exist")
            cfg = saved.copy()
        else:
            cfg = ctx.ns.vm_config.copy()
        vm_type = VMType.CONTAINER if cmd.flag("container") else VMType.KVM
        queue(ctx, cmd.arg("name"), vm_type, cfg)
        if ctx.ns.queueing:
            return None
    # the namespace's scheduler places the queue on its hosts (least loaded
    # first) and launches each host's share there
    stat = await scheduler.schedule(ctx)
    if stat is not None and stat.errors:
        raise CommandError("\n".join(stat.errors))
    return None


@command(
    "vm <start,> <vm target>",
    "vm <stop,> <vm target>",
    "vm <kill,> <vm target>",
    "vm <flush,>",
    "vm <flush,> <vm target>",
    short="start, pause, kill or flush virtual machines",
    kind="vmtarget",
)
async def vm_apply(ctx: Context, cmd: Command) -> Result:
    """2.8's ``cliVMApply``."""
    t = table(ctx)
    target = cmd.arg("vm")
    if cmd.flag("start"):
        await t.apply(ctx.namespace, target, _start)
    elif cmd.flag("stop"):
        await t.apply(ctx.namespace, target, _stop)
    elif cmd.flag("kill"):
        await t.apply(ctx.namespace, target, _kill)
    elif not target:
        await flush_all(ctx, ctx.namespace)
    else:

        async def flush(vm: VM, wild: bool) -> bool:
            if not vm.state & FLUSHABLE:
                return False
            await _flush(t, vm)
            return True

        await t.apply(ctx.namespace, target, flush)
    return None


async def _start(vm: VM, wild: bool) -> bool:
    if wild and not vm.state & (VMState.BUILDING | VMState.PAUSED):
        return False
    if vm.state & VMState.RUNNING:
        raise CommandError("vm is already running")
    await vm.runtime.start()
    return True


async def _stop(vm: VM, wild: bool) -> bool:
    if not vm.state & VMState.RUNNING:
        return False
    if vm.name == "vince":
        raise CommandError("vince is unstoppable")
    await vm.runtime.stop()
    return True


async def _kill(vm: VM, wild: bool) -> bool:
    if not vm.state & KILLABLE:
        return False
    await vm.runtime.kill()
    return True


async def _flush(t: VMTable, vm: VM) -> None:
    logger.info("deleting VM: %d", vm.id)
    try:
        await vm.runtime.flush()
    finally:
        t.remove(vm)


async def flush_all(ctx: Context, namespace: str) -> None:
    """2.8's ``FlushAll``: every QUIT/ERROR VM of ``namespace``; errors are only logged."""
    t = table(ctx)
    doomed = [vm for vm in t.in_namespace(namespace) if vm.state & FLUSHABLE]
    results = await asyncio.gather(*(_flush(t, vm) for vm in doomed), return_exceptions=True)
    for vm, res in zip(doomed, results, strict=True):
        if isinstance(res, BaseException):
            logger.error("clogged vm %d: %s", vm.id, res)


async def kill_and_flush(ctx: Context, namespace: str) -> None:
    """Kill every VM of ``namespace`` and flush them all (clear namespace, clear all)."""
    t = table(ctx)
    errors = await t.apply_errors(namespace, WILDCARD, _kill)
    for err in errors:
        logger.error("kill during cleanup: %s", err)
    await flush_all(ctx, namespace)


@command("vm info [summary,]", short="print information about VMs", kind="broadcast")
async def vm_info(ctx: Context, cmd: Command) -> Result:
    """The ``vm info`` table (or its summary) of the namespace's VMs on this node."""
    columns = info.asked(info.SUMMARY if cmd.flag("summary") else info.COLUMNS, cmd.columns)
    vms = table(ctx).in_namespace(ctx.namespace)
    resp = ctx.table(list(columns), info.rows(vms, columns, ctx.state.info_view))
    resp.data = [info.data(vm) for vm in vms]
    return resp


# -- tags ---------------------------------------------------------------------------------


@command(
    "vm tag <vm target> [key or all]",
    "vm tag <vm target> <key> <value>",
    short="display or set a tag for the specified VM",
    kind="vmtarget",
)
async def vm_tag(ctx: Context, cmd: Command) -> Result:
    """Set a tag, or list one tag (``name|value``) or all (``name|tag|value``)."""
    target = cmd.arg("vm")
    key = cmd.arg("key") or WILDCARD
    t = table(ctx)
    if "value" in cmd.string_args:
        if key == WILDCARD:
            raise CommandError("cannot assign to wildcard")
        value = cmd.arg("value")

        async def set_tag(vm: VM, wild: bool) -> bool:
            vm.tags[key] = value
            return True

        await t.apply(ctx.namespace, target, set_tag)
        return None
    rows: list[list[str]] = []

    async def get_tag(vm: VM, wild: bool) -> bool:
        if key == WILDCARD:
            rows.extend([vm.name, k, v] for k, v in vm.tags.items())
        else:
            rows.append([vm.name, vm.tags.get(key, "")])
        return True

    await t.apply(ctx.namespace, target, get_tag)
    header = ["name", "tag", "value"] if key == WILDCARD else ["name", "value"]
    return ctx.table(header, rows)


@command(
    "clear vm tag",
    "clear vm tag <vm target> [tag]",
    short="remove tags from a VM",
    kind="vmtarget",
)
async def clear_vm_tag(ctx: Context, cmd: Command) -> Result:
    """Remove one tag or all of them, from one VM or all."""
    key = cmd.arg("tag") or WILDCARD
    target = cmd.arg("vm") or WILDCARD

    async def clear(vm: VM, wild: bool) -> bool:
        if key == WILDCARD:
            vm.tags.clear()
        else:
            vm.tags.pop(key, None)
        return True

    await table(ctx).apply(ctx.namespace, target, clear)
    return None


# -- QMP ----------------------------------------------------------------------------------


def find_kvm(ctx: Context, name: str) -> VM:
    """A KVM VM of the namespace, or 2.8's not-found / not-KVM error."""
    vm = table(ctx).must_find(ctx.namespace, name)
    if vm.type is not VMType.KVM:
        raise CommandError(f"vm not KVM: {name}")
    return vm


@command(
    "vm qmp <vm name> <qmp command>",
    short="issue a JSON-encoded QMP command",
    kind="vmtarget",
)
async def vm_qmp(ctx: Context, cmd: Command) -> Result:
    """Send raw QMP; the answer is QMP's JSON, compact with sorted keys as 2.8 prints it."""
    vm = find_kvm(ctx, cmd.arg("vm"))
    try:
        msg: Any = json.loads(cmd.arg("qmp"))
    except json.JSONDecodeError as err:
        raise CommandError(f"invalid JSON: {err}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("execute"), str):
        raise CommandError('invalid JSON: want an object with an "execute" string')
    args = msg.get("arguments")
    runtime: KvmRuntime = vm.runtime
    try:
        result = await runtime.execute(msg["execute"], args if isinstance(args, dict) else None)
    except CommandError as err:
        raise CommandError(f"qmp: {err}") from None
    return ctx.respond(go_json({"return": result}))


# -- KVM commands: top, screenshot, cdrom, hotplug, migrate, snapshot -------------------------


def go_atoi_arg(text: str) -> int:
    """``strconv.Atoi`` with Go's error text."""
    n = go_atoi(text)
    if n is None:
        raise CommandError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    return n


def _stat(path: str) -> None:
    """2.8 checks that a file exists before handing it to QEMU."""
    try:
        os.stat(path)
    except OSError as err:
        raise CommandError(f"stat {path}: {(err.strerror or str(err)).lower()}") from None


def kvm_runtimes(ctx: Context) -> list[KvmRuntime]:
    """The runtimes of the namespace's KVM VMs on this node, by ID."""
    return [
        vm.runtime
        for vm in table(ctx).in_namespace(ctx.namespace)
        if vm.type is VMType.KVM and isinstance(vm.runtime, KvmRuntime)
    ]


@command("vm top [duration]", short="view vm resource utilization", kind="broadcast")
async def vm_top(ctx: Context, cmd: Command) -> Result:
    """Host resources used by each VM over a window (1 s by default)."""
    seconds = go_atoi_arg(cmd.arg("duration")) if cmd.arg("duration") else 1
    if seconds < 0:
        raise CommandError(f"invalid duration: {seconds}")
    rows = await top.top(table(ctx).in_namespace(ctx.namespace), float(seconds))
    return ctx.table(list(top.HEADER), rows)


@command(
    "vm screenshot <vm name> [maximum dimension]",
    "vm screenshot <vm name> file <filename> [maximum dimension]",
    short="take a screenshot of a running vm",
    kind="vmtarget",
)
async def vm_screenshot(ctx: Context, cmd: Command) -> Result:
    """QMP ``screendump`` as a PNG in ``<base>/<id>/screenshot.png`` or the file given."""
    maximum = go_atoi_arg(cmd.arg("maximum")) if cmd.arg("maximum") else 0
    vm = find_kvm(ctx, cmd.arg("vm"))
    if not vm.state & VMState.RUNNING:
        raise CommandError(f"vm not running: {vm.id}")
    runtime: KvmRuntime = vm.runtime
    ppm = runtime.file(f"screenshot-{uuidlib.uuid4().hex}.ppm")
    await runtime.execute("screendump", {"filename": ppm})

    def convert() -> bytes:
        try:
            with open(ppm, "rb") as f:
                return screenshot.ppm_to_png(f.read(), maximum)
        finally:
            os.unlink(ppm)

    try:
        png = await asyncio.to_thread(convert)
    except (OSError, screenshot.PPMError) as err:
        raise CommandError(f"screenshot: {err}") from None
    dst = cmd.arg("filename") or runtime.file("screenshot.png")

    def write() -> None:
        with open(dst, "wb") as f:
            f.write(png)

    try:
        await asyncio.to_thread(write)
    except OSError as err:
        raise CommandError(f"open {dst}: {(err.strerror or str(err)).lower()}") from None
    resp = ctx.respond()
    resp.data = base64.b64encode(png).decode()
    return resp


@command(
    "vm cdrom <eject,> <vm target> [force,]",
    "vm cdrom <change,> <vm target> <path> [force,]",
    short="eject or change an active VM's cdrom",
    kind="vmtarget",
)
async def vm_cdrom(ctx: Context, cmd: Command) -> Result:
    """Eject the cdrom or put another image in it (drive ``ide0-cd0``)."""
    force = cmd.flag("force")
    path = cmd.arg("path")
    if cmd.flag("change"):
        await asyncio.to_thread(_stat, path)

    async def apply(vm: VM, wild: bool) -> bool:
        if vm.type is not VMType.KVM:
            return False
        if path:
            await devices.change_cd(vm.runtime, path, force)
            return True
        try:
            await devices.eject_cd(vm.runtime, force)
        except CommandError as err:
            # with several targets, an empty drive is not an error
            if not (wild and str(err) == devices.NO_CDROM):
                raise
        return True

    await table(ctx).apply(ctx.namespace, cmd.arg("vm"), apply)
    return None


@command(
    "vm hotplug",
    "vm hotplug <add,> <vm target> <filename> [version]",
    "vm hotplug <add,> <vm target> <filename> serial <serial> [version]",
    "vm hotplug <remove,> <vm target> <disk id or all>",
    short="add and remove USB drives",
    kind="vmtarget",
)
async def vm_hotplug(ctx: Context, cmd: Command) -> Result:
    """List, add or remove USB drives of KVM VMs."""
    target = cmd.arg("vm")
    if cmd.flag("add"):
        path = cmd.arg("filename")
        await asyncio.to_thread(_stat, path)
        version, serial = cmd.arg("version"), cmd.arg("serial")

        async def add(vm: VM, wild: bool) -> bool:
            if vm.type is not VMType.KVM:
                return False
            await devices.hotplug_add(vm.runtime, path, version, serial)
            return True

        await table(ctx).apply(ctx.namespace, target, add)
        return None
    if cmd.flag("remove"):
        disk = cmd.arg("disk")
        n = go_atoi(disk)
        if n is None and disk != WILDCARD:
            raise CommandError(f"invalid disk: `{disk}`")
        quiet = devices.NO_HOTPLUG if n is None else devices.NO_SUCH_HOTPLUG

        async def remove(vm: VM, wild: bool) -> bool:
            if vm.type is not VMType.KVM:
                return False
            try:
                await devices.hotplug_remove(vm.runtime, n)
            except CommandError as err:
                if not (wild and str(err) == quiet):
                    raise
            return True

        await table(ctx).apply(ctx.namespace, target, remove)
        return None
    rows = [[r.vm.name, str(k), f, v] for r in kvm_runtimes(ctx) for k, (f, v) in r.hotplug.items()]
    return ctx.table(["name", "id", "file", "version"], rows)


@command(
    "vm migrate",
    "vm migrate <vm name> <filename>",
    short="write VM state to disk",
    kind="vmtarget",
)
async def vm_migrate(ctx: Context, cmd: Command) -> Result:
    """Save a VM's state to a file (files directory), or list migrations."""
    if "vm" not in cmd.string_args:
        return ctx.table(snapshot.STATUS_HEADER, await snapshot.status_rows(kvm_runtimes(ctx)))
    vm = find_kvm(ctx, cmd.arg("vm"))
    dst = snapshot.resolve(ctx.state.settings.files_dir, cmd.arg("filename"))
    runtime: KvmRuntime = vm.runtime
    async with runtime.lock:
        await snapshot.migrate(runtime, dst)
    return None


@command(
    "vm snapshot",
    "vm snapshot <vm name> <state filename> <disk filename>",
    short="write VM state and disk to files",
    kind="vmtarget",
)
async def vm_snapshot(ctx: Context, cmd: Command) -> Result:
    """Save a VM's disks and state (files directory), or list snapshots in flight."""
    if "vm" not in cmd.string_args:
        return ctx.table(snapshot.STATUS_HEADER, await snapshot.status_rows(kvm_runtimes(ctx)))
    vm = find_kvm(ctx, cmd.arg("vm"))
    files = ctx.state.settings.files_dir
    await snapshot.snapshot(
        vm.runtime,
        snapshot.resolve(files, cmd.arg("state")),
        snapshot.resolve(files, cmd.arg("disk")),
    )
    return None


# -- namespace and node cleanup --------------------------------------------------------------


@on_destroy(40)
async def _destroy_namespace(ctx: Context, namespace: str) -> None:
    await kill_and_flush(ctx, namespace)
    ns = ctx.state.namespaces.get(namespace)
    if ns is not None:
        ns.vm_queue.clear()
    table(ctx).forget_namespace(namespace)


@on_clear_all(20)
async def _clear_all(ctx: Context) -> None:
    namespaces = sorted({vm.namespace for vm in table(ctx).vms.values()})
    for namespace in namespaces:
        await kill_and_flush(ctx, namespace)
    for ns in ctx.state.namespaces.values():
        ns.vm_queue.clear()
