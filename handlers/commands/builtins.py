"""minicli's builtins: the ``.`` commands that change output and the CLI.

Without a sub-command a flag builtin prints or sets the node's default
(``.annotate false``); with one it changes only that command's output
(``.annotate false vm info``), by setting the flags of the first response of
each batch, as minicli does.
"""

from __future__ import annotations

import os

from megabus.bus.messages import Flags
from megabus.handlers.language.command import Command, LanguageError
from megabus.handlers.language.transform import filter_responses, select_columns
from megabus.handlers.node.context import Context
from megabus.handlers.node.dispatch import set_preprocess
from megabus.handlers.node.registry import Result, command


def _copy_flags(flags: Flags) -> Flags:
    return Flags(
        annotate=flags.annotate,
        compress=flags.compress,
        headers=flags.headers,
        sort=flags.sort,
        preprocess=flags.preprocess,
        mode=flags.mode,
        record=flags.record,
    )


async def _flag(ctx: Context, cmd: Command, name: str) -> Result:
    value = cmd.flag("true")
    if cmd.subcommand is None:
        if cmd.flag("true") or cmd.flag("false"):
            setattr(ctx.state.flags, name, value)
            return None
        return ctx.respond("true" if getattr(ctx.state.flags, name) else "false")
    for batch in await ctx.run_command(cmd.subcommand, ctx.namespace):
        if batch:
            if batch[0].flags is None:
                batch[0].flags = _copy_flags(ctx.state.flags)
            setattr(batch[0].flags, name, value)
        await ctx.emit(batch)
    return None


async def _mode(ctx: Context, cmd: Command, mode: str) -> Result:
    if cmd.subcommand is None:
        flags = ctx.state.flags
        if cmd.flag("true"):
            flags.mode = mode
        elif cmd.flag("false") and flags.mode == mode:
            flags.mode = "default"
        elif not cmd.flag("false"):
            return ctx.respond("true" if flags.mode == mode else "false")
        return None
    for batch in await ctx.run_command(cmd.subcommand, ctx.namespace):
        if batch:
            if batch[0].flags is None:
                batch[0].flags = _copy_flags(ctx.state.flags)
            if cmd.flag("true"):
                batch[0].flags.mode = mode
            elif cmd.flag("false") and batch[0].flags.mode == mode:
                batch[0].flags.mode = "default"
            await ctx.emit(batch)
    return None


@command(
    ".csv [true,false]",
    ".csv <true,false> (command)",
    short="enable or disable CSV mode",
    long="Enable or disable CSV mode. Enabling CSV mode disables JSON mode, if enabled.",
)
async def csv_mode(ctx: Context, cmd: Command) -> Result:
    return await _mode(ctx, cmd, "csv")


@command(
    ".json [true,false]",
    ".json <true,false> (command)",
    short="enable or disable JSON mode",
    long="Enable or disable JSON mode. Enabling JSON mode disables CSV mode, if enabled.",
)
async def json_mode(ctx: Context, cmd: Command) -> Result:
    return await _mode(ctx, cmd, "json")


@command(
    ".headers [true,false]",
    ".headers <true,false> (command)",
    short="enable or disable headers for tabular data",
    long="Enable or disable headers for tabular data.",
)
async def headers(ctx: Context, cmd: Command) -> Result:
    return await _flag(ctx, cmd, "headers")


@command(
    ".annotate [true,false]",
    ".annotate <true,false> (command)",
    short="enable or disable hostname annotation",
    long="Enable or disable hostname annotation for responses.",
)
async def annotate(ctx: Context, cmd: Command) -> Result:
    return await _flag(ctx, cmd, "annotate")


@command(
    ".sort [true,false]",
    ".sort <true,false> (command)",
    short="enable or disable sorting of tabular data",
    long="Enable or disable sorting of tabular data based on the value in the first\n"
    "column. Sorting is based on string comparison.",
)
async def sort(ctx: Context, cmd: Command) -> Result:
    return await _flag(ctx, cmd, "sort")


@command(
    ".compress [true,false]",
    ".compress <true,false> (command)",
    short="enable or disable output compression",
    long="Enable or disable output compression of like output from multiple responses.\n"
    "For example, `mesh send node[0-9] version` prints `node[0-9]: megabus <version>`\n"
    "once instead of ten times. Compression is not applied in JSON mode.",
)
async def compress(ctx: Context, cmd: Command) -> Result:
    return await _flag(ctx, cmd, "compress")


@command(
    ".record [true,false]",
    ".record <true,false> (command)",
    short="enable or disable history recording",
    long="Enable or disable the recording of a given command in the command history.",
)
async def record(ctx: Context, cmd: Command) -> Result:
    if cmd.subcommand is not None:
        cmd.record = cmd.record and cmd.flag("true")
    elif not cmd.flag("true"):
        cmd.record = False  # `.record false` itself is never recorded
    return await _flag(ctx, cmd, "record")


@command(
    ".preprocess [true,false]",
    ".preprocess <true,false> (command)",
    short="enable or disable preprocessor",
    long="Enable or disable the command preprocessor ($VAR, ${VAR} and file: arguments).",
)
async def preprocess_flag(ctx: Context, cmd: Command) -> Result:
    if cmd.subcommand is not None:
        set_preprocess(cmd.subcommand, cmd.flag("true"))
    return await _flag(ctx, cmd, "preprocess")


@command(
    ".filter <filter> (command)",
    short="filter tabular data by column value",
    long="Filters tabular data based on the value in a particular column:\n\n"
    "\t.filter state=running vm info\n\t.filter state!=running vm info\n"
    "\t.filter state~run vm info\n\t.filter state!~run vm info\n\n"
    "Filters are case insensitive and may be stacked. If the column value is a list\n"
    'or an object ("[...]", "{...}"), = implicitly uses substring matching.',
)
async def filter_(ctx: Context, cmd: Command) -> Result:
    assert cmd.subcommand is not None
    spec = cmd.arg("filter")
    for batch in await ctx.run_command(cmd.subcommand, ctx.namespace):
        try:
            batch = filter_responses(batch, spec)
        except LanguageError as err:
            batch = [ctx.error(str(err))]
        await ctx.emit(batch)
    return None


@command(
    ".columns <columns as csv> (command)",
    short="show certain columns from tabular data",
    long="Show only the named columns (comma-separated, in that order):\n\n"
    "\t.columns name,state vm info\n\n"
    ".columns can be combined with .filter: `.columns name,state .filter vcpus=4 vm info`\n"
    "works, the reverse fails when the filter column was dropped.\n"
    "Note: the annotate flag controls the presence of the host column.",
)
async def columns(ctx: Context, cmd: Command) -> Result:
    assert cmd.subcommand is not None
    cols = cmd.arg("columns").split(",")
    # the command below may then compute only what can be selected (vm info)
    cmd.subcommand.columns = cols
    for batch in await ctx.run_command(cmd.subcommand, ctx.namespace):
        try:
            batch = select_columns(batch, cols)
        except LanguageError as err:
            batch = [ctx.error(str(err))]
        await ctx.emit(batch)
    return None


@command(
    ".alias",
    ".alias <alias>...",
    short="create an alias",
    long="Create an alias, like a bash alias, applied once to the first word of a line:\n\n"
    "\t.alias vmr=.filter state=running vm info\n\n"
    'The alias is the text up to the first "=". With no argument, lists the aliases.',
)
async def alias(ctx: Context, cmd: Command) -> Result:
    text = " ".join(cmd.items("alias"))
    if not text:
        rows = [[k, v] for k, v in ctx.state.aliases.items()]
        return ctx.table(["alias", "expansion"], rows)
    name, sep, expansion = text.partition("=")
    if not sep:
        return ctx.error("expected alias of format `alias=expansion`")
    ctx.state.aliases[name] = expansion
    return None


@command(
    ".unalias <alias>",
    short="remove an alias",
    long="Removes an alias by name. See .alias for a listing of aliases.",
)
async def unalias(ctx: Context, cmd: Command) -> Result:
    ctx.state.aliases.pop(cmd.arg("alias"), None)
    return None


@command(
    ".env [name]",
    ".env <name> <value>",
    short="print or set env variables",
    long='Print or update env variables. To unset an env variable, use:\n\n\t.env <name> ""',
)
async def env(ctx: Context, cmd: Command) -> Result:
    name = cmd.arg("name")
    if "value" in cmd.string_args:
        value = cmd.string_args["value"]
        try:
            if value:
                os.environ[name] = value
            else:
                os.environ.pop(name, None)
        except (ValueError, OSError) as err:
            return ctx.error(str(err))
        return None
    if name:
        return ctx.respond(os.environ.get(name, ""))
    rows = [[k, v] for k, v in os.environ.items()]
    return ctx.table(["key", "value"], rows)
