"""``up`` and ``down``: an experiment brought to a node, changing only what changed.

What was applied is recorded on the node itself: every VM carries the
digest of the spec it was launched from in its ``mb-experiment`` tag. ``up``
reads the namespace's VMs, keeps those whose digest still matches, launches
what is new, and kills (then relaunches) what changed or went away, so the
record can never disagree with what runs. A VM of the namespace without the
tag is not the experiment's: it is left alone unless the file needs its name.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import msgspec

from megabus.client._client import Client
from megabus.client._results import CommandFailedError
from megabus.client.experiments import _compile as compile_
from megabus.client.experiments._compile import TAG, Step
from megabus.client.experiments._model import Loaded, start_order
from megabus.handlers.language.ranges import expand

#: Told each command as it starts (``[3/12] vm launch container a[0-2]``).
Progress = Callable[[str], None]

#: States of a VM that is gone for good: its spec is launched again.
_DEAD = {"QUIT", "ERROR"}


class Report(msgspec.Struct, frozen=True):
    """What ``up`` did."""

    launched: list[str]
    killed: list[str]
    kept: list[str]
    steps: int


async def _run(client: Client, loaded: Loaded, steps: list[Step], progress: Progress) -> None:
    view = client.namespace(loaded.experiment.name)
    for i, step in enumerate(steps, 1):
        progress(f"[{i}/{len(steps)}] {step.line}")
        try:
            await (client if step.root else view).run(step.line)
        except CommandFailedError as err:
            raise loaded.error(step.where, f"{step.line}: {err}") from None


async def _applied(client: Client, loaded: Loaded) -> dict[str, tuple[str, str]]:
    """Each VM of the namespace: ``name -> (digest it was launched from, state)``."""
    rows = (await client.namespace(loaded.experiment.name).vm_info()).rows
    out = {}
    for row in rows:
        try:
            tags = json.loads(row.get("tags") or "{}")
        except ValueError:
            tags = {}
        out[row.get("name")] = (str(tags.get(TAG, "")), row.get("state"))
    return out


async def up(client: Client, loaded: Loaded, progress: Progress = lambda _: None) -> Report:
    """Bring the experiment up on ``client``'s node, changing only what changed.

    Raises:
        ExperimentError: a command failed; the text names the file's line and the node.
    """
    exp = loaded.experiment
    applied = await _applied(client, loaded)
    vlans = {r.get("alias"): r.get("vlan") for r in (await client.namespace(exp.name).vlans()).rows}
    for alias, vlan in exp.vlans.items():
        if isinstance(vlan, int) and alias in vlans and vlans[alias] != str(vlan):
            raise loaded.error(
                ("vlans", alias),
                f"VLAN {alias} is {vlans[alias]} on node {client.node}, the file says {vlan}: "
                "take the experiment down first",
            )
    fresh: dict[str, list[str]] = {}
    kept: list[str] = []
    for vm in exp.vm:
        digest = vm.digest(exp)
        for name in vm.names():
            have = applied.get(name)
            if have is not None and have[0] == digest and have[1] not in _DEAD:
                kept.append(name)
            else:
                fresh.setdefault(vm.name, []).append(name)
    wanted = {name for vm in exp.vm for name in vm.names()}
    # ours (tagged) that changed or went, and any other the file needs the name of;
    # a VM someone else launched in the namespace under another name is left alone
    stale = sorted(n for n, (tag, _) in applied.items() if n not in kept and (tag or n in wanted))
    running = [n for n in stale if applied[n][1] not in _DEAD]
    # a VM's start-up cc commands go with it, or a relaunched VM would run them twice
    prefixes = {r.get("prefix") for r in (await client.namespace(exp.name).cc_commands()).rows}
    with_cc = [n for n in stale if compile_.cc_prefix(loaded, n) in prefixes]
    hosts: list[str] = []
    if exp.hosts:
        now = (await client.namespace(exp.name).ns_hosts()).text.strip()
        hosts = expand(now) if now else []
    steps = compile_.setup(loaded, vlans, hosts)
    steps += compile_.remove(loaded, running, with_cc, flush=bool(stale))
    groups = [vm for vm in exp.vm if vm.name in fresh]
    for vm in groups:
        steps += compile_.launch(loaded, vm, fresh[vm.name])
    for vm in groups:
        if vm.router is not None:
            steps += compile_.router(loaded, vm)
    for level in start_order(exp):
        for vm in level:
            if vm.name in fresh:
                steps += compile_.start(loaded, vm, fresh[vm.name])
                steps += compile_.cc(loaded, vm, fresh[vm.name])
    await _run(client, loaded, steps, progress)
    launched = [n for vm in groups for n in fresh[vm.name]]
    return Report(launched, stale, kept, len(steps))


async def down(client: Client, loaded: Loaded, progress: Progress = lambda _: None) -> int:
    """Take the experiment down: its namespace and bridge. Returns the number of commands run.

    An experiment that is not up (no such namespace, no such bridge) is no error.
    """
    there = {r.get("namespace") for r in (await client.run("namespace")).rows}
    there |= {r.get("bridge") for r in (await client.bridge()).rows}
    exp = loaded.experiment
    steps = [
        step
        for step, name in zip(compile_.teardown(loaded), [exp.name, exp.bridge], strict=False)
        if name in there
    ]
    await _run(client, loaded, steps, progress)
    return len(steps)


__all__ = ["Progress", "Report", "down", "up"]
