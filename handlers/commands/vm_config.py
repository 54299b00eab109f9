"""The ``vm config`` command family and ``clear vm config``.

Every field getter/setter of minimega 2.8 (its generated ``vmconfiger`` handlers
and the hand-written ones for disks, networks, bonds and qemu overrides), with
2.8's outputs and error texts. The model lives in :mod:`megabus.handlers.model`;
the namespace's config is ``ctx.ns.vm_config``, its saved copies
``ctx.ns.saved_configs``.
``vm config clone`` copies from the node's VM table (``ctx.state.vms``);
``vm config qemu-override`` shows the qemu line the VMs family builds.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from megabus.bus.errors import CommandError
from megabus.handlers.language.command import Command
from megabus.handlers.language.lexer import go_quote
from megabus.handlers.model import qemu_info
from megabus.handlers.model.bondspec import parse_bondspecs
from megabus.handlers.model.config import (
    CLEAR_FIELDS,
    WILDCARD,
    QemuOverride,
    VMConfig,
    go_bool,
    go_list,
)
from megabus.handlers.model.diskspec import check_path, parse_diskspecs
from megabus.handlers.model.netspec import NetConfig, resolve_netspecs
from megabus.handlers.node.context import Context
from megabus.handlers.node.fanout import hosts_of
from megabus.handlers.node.registry import Result, command
from megabus.handlers.vms import qemu_args

logger = logging.getLogger(__name__)

# -- Go number parsing, with strconv's error texts -----------------------------

_UINT64_MAX = 2**64 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def parse_uint(text: str) -> int:
    """``strconv.ParseUint(text, 10, 64)``."""
    if not re.fullmatch(r"[0-9]+", text):
        raise CommandError(f"strconv.ParseUint: parsing {go_quote(text)}: invalid syntax")
    value = int(text)
    if value > _UINT64_MAX:
        raise CommandError(f"strconv.ParseUint: parsing {go_quote(text)}: value out of range")
    return value


def parse_int(text: str) -> int:
    """``strconv.ParseInt(text, 10, 64)``."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise CommandError(f"strconv.ParseInt: parsing {go_quote(text)}: invalid syntax")
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise CommandError(f"strconv.ParseInt: parsing {go_quote(text)}: value out of range")
    return value


# -- validators (2.8's validCPU, validMachine, validSchedule, validColocate) -----


async def _valid_cpu(ctx: Context, cfg: VMConfig, value: str) -> None:
    if value not in await qemu_info.cpus(cfg.qemu, cfg.machine):
        raise CommandError(f"invalid cpu: {value}")


async def _valid_virtio_ports(ctx: Context, cfg: VMConfig, value: str) -> None:
    # a count or a list of names, each port one device (see COUNT_LIMITS)
    most = COUNT_LIMITS["virtio-ports"]
    count = int(value) if value.isdigit() else len(value.split(","))
    if count > most:
        raise CommandError(f"invalid virtio-ports {value[:40]}: at most {most} ports")


async def _valid_machine(ctx: Context, cfg: VMConfig, value: str) -> None:
    if value not in await qemu_info.machines(cfg.qemu):
        raise CommandError(f"invalid machine: {value}")


async def _valid_schedule(ctx: Context, cfg: VMConfig, value: str) -> None:
    if cfg.colocate and value:
        raise CommandError("cannot specify schedule and colocate in the same config")
    host = ctx.host if value == "localhost" else value
    hosts = hosts_of(ctx.state, ctx.namespace)
    if host not in hosts:
        raise CommandError(f"host is not in namespace: {host}")


async def _valid_colocate(ctx: Context, cfg: VMConfig, value: str) -> None:
    if cfg.schedule and value:
        raise CommandError("cannot specify colocate and schedule in the same config")


Validator = Callable[[Context, VMConfig, str], Awaitable[None]]


# -- the generated-style field handlers -----------------------------------------


@dataclass(frozen=True)
class _Field:
    """One simple ``vm config <name>`` field."""

    name: str
    kind: str  # "str", "path", "uint", "int", "bool" or "list"
    short: str
    validator: Validator | None = None

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")

    @property
    def pattern(self) -> str:
        arg = {"bool": "[true,false]", "list": "[value]..."}.get(self.kind, "[value]")
        return f"vm config {self.name} {arg}"


#: Counts that become one device or file each at launch: 2.8 takes any uint64,
#: and ``vm config serial-ports 2147483648`` then builds two billion qemu
#: arguments (found by ops/fuzz.py); far past any guest's need, they stop here.
COUNT_LIMITS = {"serial-ports": 1024, "fifos": 1024, "virtio-ports": 1024}

_FIELDS = (
    _Field("filesystem", "path", "configures filesystem"),
    _Field("hostname", "str", "configures hostname"),
    _Field("init", "list", "configures init"),
    _Field("preinit", "str", "configures preinit"),
    _Field("fifos", "uint", "configures fifos"),
    _Field("qemu", "path", "configures qemu"),
    _Field("kernel", "path", "configures kernel"),
    _Field("initrd", "path", "configures initrd"),
    _Field("cdrom", "path", "configures cdrom"),
    _Field("migrate", "path", "configures migrate"),
    _Field("cpu", "str", "configures cpu", _valid_cpu),
    _Field("sockets", "uint", "configures sockets"),
    _Field("cores", "uint", "configures cores"),
    _Field("threads", "uint", "configures threads"),
    _Field("machine", "str", "configures machine", _valid_machine),
    _Field("serial-ports", "uint", "configures serial-ports"),
    _Field("virtio-ports", "str", "configures virtio-ports", _valid_virtio_ports),
    _Field("vga", "str", "configures vga"),
    _Field("append", "list", "configures append"),
    _Field("usb-use-xhci", "bool", "configures usb-use-xhci"),
    _Field("tpm-socket", "path", "configures tpm-socket"),
    _Field("qemu-append", "list", "configures qemu-append"),
    _Field("uuid", "str", "configures uuid"),
    _Field("vcpus", "uint", "configures vcpus"),
    _Field("memory", "uint", "configures memory"),
    _Field("snapshot", "bool", "configures snapshot"),
    _Field("schedule", "str", "configures schedule", _valid_schedule),
    _Field("colocate", "str", "configures colocate", _valid_colocate),
    _Field("coschedule", "int", "configures coschedule"),
    _Field("backchannel", "bool", "configures backchannel"),
)


def _show(ctx: Context, field: _Field, value: object) -> Result:
    if field.kind == "bool":
        assert isinstance(value, bool)
        return ctx.respond(go_bool(value))
    if field.kind == "list":
        assert isinstance(value, list)
        # an empty list prints nothing, not "[]"
        return ctx.respond(go_list(value) if value else "")
    return ctx.respond(str(value))


def _make_field_handler(field: _Field) -> Callable[[Context, Command], Awaitable[Result]]:
    async def handler(ctx: Context, cmd: Command) -> Result:
        cfg = ctx.ns.vm_config
        if field.kind == "bool":
            if not (cmd.flag("true") or cmd.flag("false")):
                return _show(ctx, field, getattr(cfg, field.attr))
            setattr(cfg, field.attr, cmd.flag("true"))
            return None
        if field.kind == "list":
            items = cmd.items("value")
            if not items:
                return _show(ctx, field, getattr(cfg, field.attr))
            setattr(cfg, field.attr, list(items))
            return None
        if "value" not in cmd.string_args:
            return _show(ctx, field, getattr(cfg, field.attr))
        text = cmd.arg("value")
        value: object
        if field.kind == "uint":
            value = parse_uint(text)
            most = COUNT_LIMITS.get(field.name)
            if most is not None and value > most:
                raise CommandError(f"invalid {field.name} {value}: at most {most}")
        elif field.kind == "int":
            value = parse_int(text)
        elif field.kind == "path":
            value = check_path(text, ctx.state.settings.files_dir)
        else:
            if field.validator is not None:
                await field.validator(ctx, cfg, text)
            value = text
        setattr(cfg, field.attr, value)
        return None

    handler.__name__ = f"vm_config_{field.attr}"
    return handler


for _f in _FIELDS:
    command(_f.pattern, short=_f.short)(_make_field_handler(_f))


# -- maps: tags and volume --------------------------------------------------------


def _list_map(ctx: Context, values: dict[str, str]) -> Result:
    return ctx.respond("".join(f"{k} -> {v}\n" for k, v in sorted(values.items())))


@command("vm config tags", "vm config tags <key> [value]", short="configures tags")
async def vm_config_tags(ctx: Context, cmd: Command) -> Result:
    """List the tags, show one, or set one."""
    tags = ctx.ns.vm_config.tags
    key, value = cmd.arg("key"), cmd.arg("value")
    if not key:
        return _list_map(ctx, tags)
    if not value:
        # 2.8 looks up the empty key here (a bug); the key's value is meant
        return ctx.respond(tags.get(key, ""))
    tags[key] = value
    return None


@command("vm config volume", "vm config volume <key> [value]", short="configures volume")
async def vm_config_volume(ctx: Context, cmd: Command) -> Result:
    """List the volumes, show one, or map a guest path to a host path."""
    volumes = ctx.ns.vm_config.volume
    key, value = cmd.arg("key"), cmd.arg("value")
    if not key:
        return _list_map(ctx, volumes)
    if not value:
        return ctx.respond(volumes.get(key, ""))
    volumes[key] = check_path(value, ctx.state.settings.files_dir)
    return None


@command("clear vm config tag <key>", short="remove tags for newly launched VMs")
async def clear_vm_config_tag(ctx: Context, cmd: Command) -> Result:
    """Remove one tag, or every tag with ``all``."""
    key = cmd.arg("key")
    if key == WILDCARD:
        ctx.ns.vm_config.tags.clear()
    else:
        ctx.ns.vm_config.tags.pop(key, None)
    return None


# -- disks, networks, bonds --------------------------------------------------------


async def _nics(cfg: VMConfig) -> frozenset[str]:
    return await qemu_info.nics(cfg.qemu, cfg.machine)


async def _resolve_networks(ctx: Context, cfg: VMConfig, specs: list[str]) -> list[NetConfig]:
    async def lookup(text: str) -> int:
        return await ctx.state.vlans.lookup(ctx.namespace, text)

    return await resolve_netspecs(specs, await _nics(cfg), lookup)


@command("vm config disks [diskspec]...", short="specify disks for VM")
async def vm_config_disks(ctx: Context, cmd: Command) -> Result:
    """Show or replace the disks; a bad spec leaves none."""
    cfg = ctx.ns.vm_config
    specs = cmd.items("diskspec")
    if not specs:
        return ctx.respond(cfg.disks_string())
    cfg.disks = []
    cfg.disks = parse_diskspecs(specs, ctx.state.settings.files_dir)
    return None


@command("vm config networks [netspec]...", short="specify network interfaces for VM")
async def vm_config_networks(ctx: Context, cmd: Command) -> Result:
    """Show or replace the interfaces; a bad spec leaves none."""
    cfg = ctx.ns.vm_config
    specs = cmd.items("netspec")
    if not specs:
        return ctx.respond(cfg.networks_string())
    cfg.networks = []
    cfg.networks = await _resolve_networks(ctx, cfg, specs)
    return None


@command("vm config bonds [bondspec]...", short="specify network bonds for VM")
async def vm_config_bonds(ctx: Context, cmd: Command) -> Result:
    """Show or replace the bonds; a bad spec leaves none."""
    cfg = ctx.ns.vm_config
    specs = cmd.items("bondspec")
    if not specs:
        return ctx.respond(cfg.bonds_string())
    cfg.bonds = []
    cfg.bonds = parse_bondspecs(specs)
    return None


# -- qemu-override -----------------------------------------------------------------


@command(
    "vm config qemu-override",
    "vm config qemu-override <match> <replacement>",
    short="override parts of the QEMU launch string",
)
async def vm_config_qemu_override(ctx: Context, cmd: Command) -> Result:
    """List the overrides (with the qemu line before and after), or add one."""
    cfg = ctx.ns.vm_config
    if not cmd.string_args:
        args = qemu_args(cfg, 0, "", cfg.uuid)  # 2.8 shows VM ID 0 and no instance path
        return ctx.respond(cfg.qemu_override_string(args))
    cfg.qemu_override.append(QemuOverride(match=cmd.arg("match"), repl=cmd.arg("replacement")))
    return None


# -- dump, save, restore, clone ----------------------------------------------------


@command(
    "vm config",
    "vm config <save,> <name>",
    "vm config <restore,> [name]",
    "vm config <clone,> <vm name>",
    short="display, save, or restore the current VM configuration",
)
async def vm_config(ctx: Context, cmd: Command) -> Result:
    """Print the config, or save, restore or clone one."""
    ns = ctx.ns
    if cmd.flag("save"):
        ns.saved_configs[cmd.arg("name")] = ns.vm_config.copy()
        return None
    if cmd.flag("restore"):
        if "name" in cmd.string_args:
            name = cmd.arg("name")
            saved = ns.saved_configs.get(name)
            if saved is None:
                raise CommandError(f"config {name} does not exist")
            ns.vm_config = saved.copy()
            return None
        if not ns.saved_configs:
            raise CommandError("no vm configs saved")
        return ctx.respond("".join(f"{name}\n" for name in sorted(ns.saved_configs)))
    if cmd.flag("clone"):
        return await _clone(ctx, cmd.arg("vm"))
    return ctx.respond(ns.vm_config.dump())


async def _clone(ctx: Context, name: str) -> Result:
    vm = ctx.state.vms.find(ctx.namespace, name)
    if vm is None:
        raise CommandError(f"vm not found: {name}")
    cfg = vm.config.copy()
    # a new VM cannot share the UUID or the disk overlays
    cfg.uuid = ""
    for disk in cfg.disks:
        disk.snapshot_path = ""
    ctx.ns.vm_config = cfg
    nets = [nic.raw for nic in cfg.networks]
    cfg.networks = []
    cfg.networks = await _resolve_networks(ctx, cfg, nets)
    bonds = [bond.raw for bond in cfg.bonds]
    cfg.bonds = []
    cfg.bonds = parse_bondspecs(bonds)
    return None


# -- clear vm config -----------------------------------------------------------------


@command(
    "clear vm config",
    *(f"clear vm config <{name},>" for name in CLEAR_FIELDS),
    short="reset one or more configurations to default value",
)
async def clear_vm_config(ctx: Context, cmd: Command) -> Result:
    """Reset one field, or the whole config (saved configs stay)."""
    field = next((k for k, v in cmd.bool_args.items() if v and k in CLEAR_FIELDS), None)
    ctx.ns.vm_config.clear(field)
    return None
