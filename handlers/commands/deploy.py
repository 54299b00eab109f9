"""The ``deploy`` family: start nodes on other hosts over ssh (2.8's ``deploy``).

2.8 copies its own binary (``/proc/<pid>/exe``) to each host with ``scp`` and
starts it there with ``ssh ... "nohup <bin> <flags> > out 2> err &"``. megabus
is a Python package, not one static binary: copying the entry point alone
would start nothing, and copying a virtualenv is neither small nor portable.
So the far host must have megabus installed at the same path as here (as any
cluster tool is rolled out: a package, an image, a shared ``/opt``), and
``deploy launch`` runs *that* entry point, this node's own
``<venv>/bin/megabus``, as ``megabus node``. There is no copy step, so no
``scp``.

The far node is pointed at the same NATS servers (``-nats``, the list this
node was given, or the server it is connected to), the same prefix, base,
VLAN range and level, and ``-log-node`` (2.8's ``-headnode=<self>``): this
node, or the log node this node itself logs to. It gets no ``-name``: like
2.8 it takes its host's name. ``deploy flags <flags>...`` replaces all of
that, as 2.8's custom flags do.

ssh runs with an argument list (no local shell). The remote command is one
string, because ssh hands it to the far user's shell; every word of it is
quoted with :func:`shlex.quote`. ``BatchMode=yes`` makes ssh fail instead of
prompting for a password a node cannot type; keys come from the node user's
``~/.ssh`` or its ssh-agent (``SSH_AUTH_SOCK``).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.language.command import LanguageError
from megabus.handlers.language.ranges import expand
from megabus.handlers.node.registry import Result, command, on_clear_all

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

#: Seconds one ssh may take (connecting, authenticating, starting the node).
SSH_TIMEOUT = 60.0
#: 2.8's host key policy, plus: never prompt, give up on a dead host.
SSH_OPTIONS = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=10",
)


def entry_point() -> str:
    """This node's ``megabus`` script, which the far host must have at the same path."""
    beside = Path(sys.executable).parent / "megabus"
    if beside.is_file():
        return str(beside)
    return shutil.which("megabus") or "megabus"


def default_flags(ctx: Context) -> list[str]:
    """This node's flags for a far node (2.8: ``flag.VisitAll`` plus ``-headnode``)."""
    s = ctx.state.settings
    urls = list(s.nats) or ([ctx.bus.url] if ctx.bus is not None and ctx.bus.url else [])
    flags = [f"-nats={','.join(urls)}"] if urls else []
    flags += [
        f"-prefix={s.prefix}",
        f"-base={s.base}",
        f"-vlanrange={s.vlan_range}",
        f"-heartbeat={s.heartbeat:g}",
        f"-level={s.level}",
        f"-accel={s.accel}",
        f"-log-node={s.log_node or ctx.host}",
    ]
    if s.filepath:
        flags.append(f"-filepath={s.filepath}")
    return flags


def flags_of(ctx: Context) -> list[str]:
    """The flags ``deploy launch`` uses now: custom ones, else this node's."""
    custom = ctx.state.deploy.flags
    return list(custom) if custom is not None else default_flags(ctx)


def remote_command(ctx: Context, sudo: bool) -> str:
    """The shell line the far host runs (2.8's ``[sudo -b] nohup <bin> <flags> > out 2> err &``)."""
    st = ctx.state.deploy
    words = [entry_point(), "node", *flags_of(ctx)]
    line = " ".join(shlex.quote(w) for w in words)
    out = shlex.quote(st.stdout or "/dev/null")
    err = shlex.quote(st.stderr or "/dev/null")
    prefix = "sudo -b nohup" if sudo else "nohup"
    # </dev/null: an open stdin would keep ssh waiting on the background job
    return f"{prefix} {line} > {out} 2> {err} < /dev/null &"


def ssh_command(host: str, user: str, remote: str) -> list[str]:
    """The argument list of one ``ssh`` run."""
    target = f"{user}@{host}" if user else host
    return ["ssh", *SSH_OPTIONS, target, remote]


async def _run(argv: list[str]) -> str:
    """Run ``argv``; ``""`` on success, else 2.8's ``<err>: <output>``."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as err:
        return f'exec: "{argv[0]}": {err.strerror}'
    try:
        async with asyncio.timeout(SSH_TIMEOUT):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return f"timed out after {SSH_TIMEOUT:g}s"
    if proc.returncode:
        return f"exit status {proc.returncode}: {out.decode(errors='replace').strip()}"
    return ""


@command(
    "deploy <launch,> <hosts>",
    "deploy <launch,> <hosts> <user> [sudo,]",
    "deploy <flags,> [minimega flags]...",
    "deploy <stdout,> [path]",
    "deploy <stderr,> [path]",
    short="copy and run minimega on remote nodes",
    long="""deploy starts megabus nodes on remote hosts over ssh, facilitating the
deployment of megabus to a cluster. minimega copied its own binary first;
megabus runs the megabus entry point found at this node's path on the remote
host, which must have megabus installed there. By default, the remote node
gets this node's NATS servers, prefix, base, VLAN range and level, and logs to
this node's log node (-log-node). For example, to start nodes on kn1 and kn2:

\tdeploy launch kn[1-2]

deploy uses ssh with key authentication (no password prompt). By default it
logs in as the current user; a username can be given, and with it sudo to
start the node as root.

To override the flags passed to remote nodes, provide them with 'deploy
flags'. For example:

\tdeploy flags -base=/opt/megabus -level=debug -nats=nats://hub:4222

To customize stdout and stderr, use 'deploy stdout' and 'deploy stderr':

\tdeploy stdout /var/log/megabus.out
\tdeploy stderr /var/log/megabus.err

By default, stdout and stderr are written to /dev/null.""",
)
async def deploy(ctx: Context, cmd: Command) -> Result:
    """2.8's ``cliDeploy``."""
    st = ctx.state.deploy
    if cmd.flag("flags"):
        given = cmd.items("minimega")
        if not given:
            return ctx.respond(" ".join(flags_of(ctx)))
        st.flags = list(given)
        return None
    if cmd.flag("stdout") or cmd.flag("stderr"):
        which = "stdout" if cmd.flag("stdout") else "stderr"
        path = cmd.arg("path")
        if not path:
            return ctx.respond(getattr(st, which))
        setattr(st, which, path)
        return None
    try:
        hosts = expand(cmd.arg("hosts"))
    except LanguageError as err:
        raise CommandError(str(err)) from None
    if not hosts or any(not h or h.startswith("-") for h in hosts):
        # a host starting with "-" would be read by ssh as an option
        raise CommandError(f"invalid hosts: {cmd.arg('hosts')!r}")
    user = cmd.arg("user")
    if user.startswith("-"):
        raise CommandError(f"invalid user: {user!r}")
    remote = remote_command(ctx, cmd.flag("sudo"))
    commands = {host: ssh_command(host, user, remote) for host in hosts}
    st.last = commands
    for argv in commands.values():
        logger.info("deploy: %s", shlex.join(argv))
    results = await asyncio.gather(*(_run(argv) for argv in commands.values()))
    errors = [f"{host}: {res}" for host, res in zip(commands, results, strict=True) if res]
    if errors:
        raise CommandError("\n".join(errors))
    return None


@command(
    "clear deploy flags",
    short="reset deploy flags",
    long="""Reset the deploy flags to their default value, which is equal to the launch
flags used when launching megabus.""",
)
async def clear_deploy(ctx: Context, cmd: Command) -> Result:
    ctx.state.deploy.flags = None
    return None


@on_clear_all(order=0)
async def _clear_all(ctx: Context) -> None:
    # 2.8's clear all starts with `clear deploy flags`
    ctx.state.deploy.flags = None
