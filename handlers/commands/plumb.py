"""``plumb``, ``pipe``, ``clear plumb`` and ``clear pipe`` (2.8's ``plumber.go``).

The pipes engine (:mod:`megabus.handlers.pipes`, ``ctx.state.pipes``) does the
work; this module speaks 2.8's language over it. As in 2.8, building a
pipeline, writing to a pipe and setting its ``via`` run on the node that got
the command (``simple``); listing, modes, logging and clearing run on every
host of the namespace (``broadcast``), each answering for its own table.
Names without ``<namespace>//`` belong to the namespace the command runs in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers import pipes
from megabus.handlers.node.registry import Result, command, on_clear_all

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.context import Context

_PLUMB_LONG = """Create pipelines composed of named pipes and external programs. Pipelines pass
data on standard I/O, with messages split on newlines. Pipelines are
constructed similar to that of UNIX pipelines. For example, to pipeline named
pipe "foo" through "sed" and into another pipe "bar":

\tplumb foo "sed -u s/foo/moo/" bar

When specifying pipelines, strings that are not found in $PATH are considered
named pipes.

Pipelines can be composed into larger, nonlinear pipelines. For example, to
create a simple tree rooted at A with leaves B and C, simply specify multiple
pipelines:

\tplumb a b
\tplumb a c"""

_PIPE_LONG = """Interact with named pipes. To write to a pipe, simply invoke the pipe API with
the pipe name and value:

\tpipe foo Hello pipes!

Pipes have several message delivery modes. Based on the mode, messages written
to a pipe will be delivered to one or more readers. Mode "all" copies messages
to all readers, "round-robin" chooses a single reader, in-order, and "random"
selects a random reader.

Pipes can also have "vias", programs through which all written data is passed
before being sent to readers. Unlike pipelines, vias are run for every reader.
This allows for mutating data on a per-reader basis with a single write. For
example, to send a unique floating-point value on a normal distribution with a
written mean to all readers:

\tpipe foo via normal -stddev 5.0
\tpipe foo 1.5

Pipes in other namespaces can be referenced with the syntax <namespace>//<pipe>.

Pipe names cannot hold '.', '*' or '>': each pipe is a family of NATS subjects."""

_PIPE_HEADER = ["name", "mode", "readers", "writers", "count", "via", "previous"]


def _mine(ctx: Context, name: str) -> bool:
    """2.8 lists what contains ``<namespace>//``."""
    return f"{ctx.namespace}{pipes.SEPARATOR}" in name


@command(
    "plumb <src> <dst>...",
    short="plumb I/O between minimega, VMs, and external programs",
    long=_PLUMB_LONG,
)
async def plumb(ctx: Context, cmd: Command) -> Result:
    """Start a pipeline of pipes and programs on this node."""
    production = pipes.production(ctx.namespace, [cmd.arg("src"), *cmd.items("dst")])
    await ctx.state.pipes.plumb(production)
    return None


@command(
    "plumb",
    short="plumb I/O between minimega, VMs, and external programs",
    long=_PLUMB_LONG,
    kind="broadcast",
)
async def plumb_list(ctx: Context, cmd: Command) -> Result:
    """List this node's pipelines of the namespace."""
    rows = [[p] for p in ctx.state.pipes.pipelines() if _mine(ctx, p)]
    return ctx.table(["pipeline"], rows)


@command("clear plumb [pipeline]...", short="reset plumber state", kind="broadcast")
async def clear_plumb(ctx: Context, cmd: Command) -> Result:
    """End one pipeline (as listed, or as typed to ``plumb``), or all of them."""
    words = cmd.items("pipeline")
    if not words:
        ctx.state.pipes.delete_all_pipelines()
        return None
    plumber = ctx.state.pipes
    if " ".join(words) not in plumber.pipelines():
        # 2.8 wants the listed form (minimega//a minimega//b); the typed one is kinder
        try:
            typed = pipes.production(ctx.namespace, words)
        except pipes.PipeNameError:
            typed = words
        if " ".join(typed) in plumber.pipelines():
            words = typed
    plumber.delete_pipeline(words)
    return None


@command(
    "pipe",
    "pipe <pipe> <mode,> <all,round-robin,random>",
    "pipe <pipe> <log,> <true,false>",
    short="write to and modify named pipes",
    long=_PIPE_LONG,
    kind="broadcast",
)
async def pipe(ctx: Context, cmd: Command) -> Result:
    """List this node's pipes of the namespace, or set a pipe's mode or logging."""
    plumber = ctx.state.pipes
    if cmd.flag("mode"):
        name = pipes.qualify(ctx.namespace, cmd.arg("pipe"))
        mode = next(m for m in pipes.MODES if cmd.flag(m))
        plumber.set_mode(name, mode)
        return None
    if cmd.flag("log"):
        plumber.set_log(pipes.qualify(ctx.namespace, cmd.arg("pipe")), cmd.flag("true"))
        return None
    rows = [
        [p.name, p.mode, str(p.readers), str(p.writers), str(p.count), p.via, p.previous]
        for p in plumber.pipes()
        if _mine(ctx, p.name)
    ]
    return ctx.table(_PIPE_HEADER, rows)


@command(
    "pipe <pipe> <data>",
    "pipe <pipe> <via,> <command>...",
    short="write to and modify named pipes",
    long=_PIPE_LONG,
)
async def pipe_write(ctx: Context, cmd: Command) -> Result:
    """Write to a pipe, or make this node run the pipe's ``via`` program."""
    name = pipes.qualify(ctx.namespace, cmd.arg("pipe"))
    if cmd.flag("via"):
        await ctx.state.pipes.set_via(name, cmd.items("command"))
    else:
        await ctx.state.pipes.write(name, cmd.arg("data"))
    return None


@command(
    "clear pipe [pipe]",
    "clear pipe <pipe> <mode,>",
    "clear pipe <pipe> <log,>",
    "clear pipe <pipe> <via,>",
    short="reset pipe state",
    kind="broadcast",
)
async def clear_pipe(ctx: Context, cmd: Command) -> Result:
    """Reset a pipe's mode, logging or via; delete a pipe, or every pipe."""
    plumber = ctx.state.pipes
    if "pipe" not in cmd.string_args:
        plumber.delete_all_pipes()
        return None
    name = pipes.qualify(ctx.namespace, cmd.arg("pipe"))
    if cmd.flag("mode"):
        plumber.set_mode(name, "all")
    elif cmd.flag("log"):
        plumber.set_log(name, False)
    elif cmd.flag("via"):
        await plumber.set_via(name, [])
    else:
        plumber.delete_pipe(name)
    return None


@on_clear_all(50)
async def _clear_all(ctx: Context) -> None:
    # 2.8's `clear all` runs `clear plumb` and `clear pipe` after `clear vlans all`
    ctx.state.pipes.delete_all_pipelines()
    try:
        ctx.state.pipes.delete_all_pipes()
    except CommandError:
        pass  # a cc agent still writes to it; 2.8's `clear all` goes on too
