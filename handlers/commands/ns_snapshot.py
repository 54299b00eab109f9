"""``ns snapshot [name]``: save every VM of the namespace and a script that relaunches them.

2.8 (reference 8.3): the directory is ``<files>/snapshots/<name>`` (or the
name itself when absolute) and must not exist yet. Every KVM VM of the
namespace, on whichever host it lives, is paused (``vm stop all``) and saved
with ``vm snapshot "<vm>" <dir>/<vm>.migrate <dir>/<vm>.hdd``; containers are
only described. ``<dir>/launch.mm`` then holds, per VM, ``clear vm config``,
the VM's own ``vm config`` lines, the migrate and disk files (as ``file:``
paths when under the files directory) and ``vm launch``, and ends with
``vm start all`` and a stop/start, since the saved guests come back paused.
Without a name, it counts the namespace's migrations: ``completed | total``.

The VMs and their configs come from ``vm info`` (its JSON data carries each
VM's config), and the stop and snapshot commands go through the dispatcher,
so both reach every host of the namespace the way any command does.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

import msgspec

from megabus.bus.errors import CommandError
from megabus.bus.messages import Response
from megabus.handlers.language.lexer import go_quote
from megabus.handlers.model.config import VMConfig
from megabus.handlers.node.registry import Result, command

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

_LONG = """With a name, "ns snapshot" saves every VM of the active namespace (state
and disk, see "vm snapshot") under <filepath>/snapshots/<name> (or the name
itself when it is an absolute path) and writes launch.mm there, a script that
relaunches them. Without a name it reports how many migrations completed."""


async def _run(ctx: Context, line: str) -> list[Response]:
    """Run ``line`` in the namespace (not recorded) and return its responses."""
    from megabus.handlers.node.dispatch import load_grammar

    cmd = load_grammar().compile(line)
    if cmd is None:
        return []
    batches = await ctx.run_command(cmd, ctx.namespace)
    return [r for batch in batches for r in batch]


def _raise_errors(responses: list[Response]) -> None:
    errors = [r.error for r in responses if r.error]
    if errors:
        raise CommandError("\n".join(errors))


def _config(data: dict[str, Any]) -> VMConfig:
    cfg = data.get("Config")
    if isinstance(cfg, VMConfig):
        return cfg
    return msgspec.convert(cfg or {}, VMConfig)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _script_path(files: str, path: str, in_files: bool) -> str:
    return f"file:{os.path.relpath(path, files)}" if in_files else path


@command("ns <snapshot,> [name]", short="tinker with active namespace", long=_LONG)
async def ns_snapshot(ctx: Context, cmd: Command) -> Result:
    """Snapshot the namespace, or report how far its migrations are."""
    if "name" not in cmd.string_args:
        responses = await _run(ctx, ".columns status vm migrate")
        _raise_errors(responses)
        statuses = [row[0] for r in responses for row in r.tabular or [] if len(row) == 1]
        done = sum(1 for s in statuses if s == "completed")
        return ctx.table(["completed", "total"], [[str(done), str(len(statuses))]])

    name = cmd.arg("name")
    files = ctx.state.settings.files_dir
    in_files = not os.path.isabs(name)
    folder = os.path.join(files, "snapshots", name) if in_files else name
    if await asyncio.to_thread(os.path.lexists, folder):
        raise CommandError("snapshot with this name already exists")
    try:
        await asyncio.to_thread(os.makedirs, folder, 0o755)
    except OSError as err:
        raise CommandError(f"mkdir {folder}: {(err.strerror or str(err)).lower()}") from None

    info = await _run(ctx, "vm info")
    _raise_errors(info)
    vms = [d for r in info for d in (r.data or []) if isinstance(d, dict)]
    vms.sort(key=lambda d: (str(d.get("Host", "")), int(d.get("ID", 0))))
    lines = [f"namespace {go_quote(ctx.namespace)}", ""]
    for vm in vms:
        vm_name, vm_type = str(vm["Name"]), str(vm["Type"])
        cfg = _config(vm)
        if vm_type == "kvm":
            state = os.path.join(folder, vm_name) + ".migrate"
            disk = os.path.join(folder, vm_name) + ".hdd"
            _raise_errors(await _run(ctx, "vm stop all"))
            _raise_errors(await _run(ctx, f"vm snapshot {go_quote(vm_name)} {state} {disk}"))
            lines += ["clear vm config", *cfg.write_config()]
            lines.append(f"vm config migrate {_script_path(files, state, in_files)}")
            if cfg.disks:
                lines.append(f"vm config disk {_script_path(files, disk, in_files)}")
        else:
            logger.warning("skipping snapshot for container: %s", vm_name)
            lines += ["clear vm config", *cfg.write_config()]
        lines += [f"vm launch {vm_type} {go_quote(vm_name)}", ""]
    lines += [
        "vm start all",
        "# the snapshot process saves the VMs in a paused state, so do a stop/start",
        "shell sleep 10",
        "vm stop all",
        "vm start all",
    ]
    try:
        await asyncio.to_thread(_write, os.path.join(folder, "launch.mm"), "\n".join(lines) + "\n")
    except OSError as err:
        raise CommandError(f"launch.mm: {(err.strerror or str(err)).lower()}") from None
    return None
