"""``megabus plan|up|down FILE``: experiments as files (:mod:`megabus.client.experiments`).

``plan`` prints the commands of the file (as ``up`` runs them on a namespace
where nothing of it exists yet) without any node; ``up`` brings the file to
the node, printing each command as it goes and changing only what changed;
``down`` takes it away. A bad file or a failed command prints
``FILE:LINE: ...`` on stderr (exit 1); no node or no server, exit 2.
"""

from __future__ import annotations

import asyncio
import sys

from megabus.bus.errors import BusError
from megabus.cli.args import Target
from megabus.client import Client
from megabus.client.experiments import ExperimentError, down, load, plan, up


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run_plan(file: str) -> int:
    try:
        loaded = load(file)
    except ExperimentError as err:
        sys.stderr.write(f"megabus: {err}\n")
        return 1
    _say(f"namespace {loaded.experiment.name}")
    for step in plan(loaded):
        _say(step.line)
    return 0


async def _apply(target: Target, file: str, verb: str) -> int:
    try:
        loaded = load(file)
    except ExperimentError as err:
        sys.stderr.write(f"megabus: {err}\n")
        return 1
    try:
        client = await Client.connect(
            target.urls,
            target.node,
            prefix=target.prefix,
            credentials=target.credentials,
            tls=target.tls,
            timeout=target.timeout,
            base=target.base,
        )
    except BusError as err:
        sys.stderr.write(f"megabus: {err}\n")
        return 2
    try:
        if verb == "up":
            report = await up(client, loaded, _say)
            _say(
                f"{loaded.experiment.name} is up on {client.node}: "
                f"{len(report.launched)} launched, {len(report.killed)} killed, "
                f"{len(report.kept)} unchanged"
            )
        else:
            await down(client, loaded, _say)
            _say(f"{loaded.experiment.name} is down on {client.node}")
    except ExperimentError as err:
        sys.stderr.write(f"megabus: {err}\n")
        return 1
    except BusError as err:
        sys.stderr.write(f"megabus: {err}\n")
        return 2
    finally:
        await client.close()
    return 0


def run_experiment(target: Target, file: str, verb: str) -> int:
    """``megabus up|down FILE``: the exit status."""
    return asyncio.run(_apply(target, file, verb))
