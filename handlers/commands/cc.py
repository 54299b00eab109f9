"""The ``cc`` command family and ``clear cc`` (2.8's ``cc_cli.go``).

Commands that create a cc command (``exec``, ``send``, ...) add it to the
namespace's stream once; every node serving the namespace delivers it to its
own agents, so they run on one node (``simple``). What reads this node's
agents or its response files (``cc``, ``cc clients``, ``cc responses``) is
this node's answer (``broadcast``). Creating a command prints nothing, as in
2.8; its ID is in the response's ``data``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import glob
import logging
import os
from typing import TYPE_CHECKING

from megabus.bus import cc_messages as wire
from megabus.bus.errors import CommandError
from megabus.bus.messages import Response
from megabus.handlers.cc import CcServer, ClientConn, CommandState, responses
from megabus.handlers.cc import filter as cc_filter
from megabus.handlers.commands.namespace import on_destroy
from megabus.handlers.language.gotime import format_duration, parse_duration
from megabus.handlers.node.registry import Result, command, on_clear_all
from megabus.handlers.pipes import check as check_pipe_name

if TYPE_CHECKING:
    from megabus.handlers.language.command import Command
    from megabus.handlers.model.vm import VM
    from megabus.handlers.node.context import Context

logger = logging.getLogger(__name__)

WILDCARD = "all"

_CC_LONG = """Command and control for VMs running the megabus agent (2.8's miniccc).
Commands may include regular commands, backgrounded commands, and any number
of sent and/or received files. Commands will be executed in command creation
order. For example, to send a file 'foo' and display the contents on a remote
VM:

	cc send foo
	cc exec cat foo

Files to be sent must be in the files directory. Responses are organized in a
structure within <filepath>/miniccc_responses, and include subdirectories for
each client response named by the client's UUID. Responses to executed
commands (not backgrounded) include the command's exit code, shown by "cc
exitcode".

Filters limit which clients run a new command ("cc filter os=linux
ip=10.0.0.0/24", "cc filter tag=foo:bar", "cc filter foo=bar", or any "vm
info" column such as "cc filter name=server"; "vm info" columns take
precedence over tags). "cc exec-once" and "cc background-once" run at most
once on every matching client, also on clients that connect later.

"cc test-conn tcp 10.0.0.68 443 wait 10s" writes "10.0.0.68:443 | pass" (or
"| fail") to the command's stdout. "cc tunnel" forwards a host port to a
port the guest reaches; "cc rtunnel" the other way round."""


async def server(ctx: Context) -> CcServer:
    """The namespace's cc server on this node."""
    node = ctx.state.cc
    if node.bus is None and ctx.bus is not None:
        node.bus = ctx.bus
    return await node.server(ctx.namespace)


def _new(ctx: Context, cmd_id: int) -> Response:
    return Response(host=ctx.host, data=cmd_id)


async def _create(ctx: Context, spec: wire.Command) -> Result:
    srv = await server(ctx)
    cmd_id = await srv.new_command(spec)
    return _new(ctx, cmd_id)


@command("cc", short="command and control commands", long=_CC_LONG, kind="broadcast")
async def cc_count(ctx: Context, cmd: Command) -> Result:
    """``cc``: how many agents this node's namespace server has."""
    srv = await server(ctx)
    return ctx.table(["clients"], [[str(len(srv.clients))]])


@command("cc <listen,> <port>", short="listen for agents on a TCP port", kind="broadcast")
async def cc_listen(ctx: Context, cmd: Command) -> Result:
    try:
        port = int(cmd.arg("port"))
    except ValueError:
        raise CommandError(f'strconv.Atoi: parsing "{cmd.arg("port")}": invalid syntax') from None
    srv = await server(ctx)
    try:
        await srv.listen_tcp(port)
    except OSError as err:
        raise CommandError(str(err)) from None
    return None


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(items) + "]"


@command("cc <clients,>", short="list connected agents", kind="broadcast")
async def cc_clients(ctx: Context, cmd: Command) -> Result:
    srv = await server(ctx)
    rows = [
        [
            c.uuid,
            c.info.hostname,
            c.info.arch,
            c.info.os,
            _go_list(c.info.ips),
            _go_list(c.info.macs),
        ]
        for c in srv.clients.values()
    ]
    return ctx.table(["uuid", "hostname", "arch", "os", "ip", "mac"], rows)


@command("cc <filter,> [filter]...", short="filter which agents run new commands")
async def cc_filter_cmd(ctx: Context, cmd: Command) -> Result:
    srv = await server(ctx)
    pairs = cmd.items("filter")
    if pairs:
        srv.filter = cc_filter.parse(pairs)
        return None
    if srv.filter is None:
        return None
    return ctx.table(cc_filter.HEADER, [srv.filter.row()])


@command("cc <prefix,> [prefix]", short="tag new commands with a prefix")
async def cc_prefix(ctx: Context, cmd: Command) -> Result:
    srv = await server(ctx)
    if "prefix" in cmd.string_args:
        srv.prefix = cc_filter.check_prefix(cmd.arg("prefix"))
        return None
    return ctx.respond(srv.prefix)


def _command_row(state: CommandState) -> list[str]:
    rec = state.record
    spec = rec.spec
    conn = ""
    if spec.conn_test is not None:
        wait = format_duration(int(spec.conn_test.wait * 1e9))
        conn = f"{spec.conn_test.endpoint} ({wait} wait)"
    return [
        str(rec.id),
        rec.prefix,
        _go_list(spec.command),
        str(len(state.checked_in)),
        "true" if spec.background else "false",
        "true" if spec.once else "false",
        _go_list(spec.files_send),
        _go_list(spec.files_recv),
        conn,
        spec.level,
        str(rec.filter) if rec.filter is not None else "",
    ]


@command("cc <commands,>", short="list commands", kind="broadcast")
async def cc_commands(ctx: Context, cmd: Command) -> Result:
    srv = await server(ctx)
    header = [
        "id", "prefix", "command", "responses", "background", "once",
        "sent", "received", "connectivity", "level", "filter",
    ]  # fmt: skip
    rows = [_command_row(srv.store.commands[i]) for i in sorted(srv.store.commands)]
    return ctx.table(header, rows)


def _stdio(words: list[str]) -> tuple[str, str, str, list[str]]:
    """2.8's ``ccCommandPreProcess``: up to three leading ``stdin=``/``stdout=``/``stderr=``."""
    pipes = {"stdin": "", "stdout": "", "stderr": ""}
    for i in range(min(3, len(words))):
        key, sep, value = words[i].partition("=")
        if not sep or key not in pipes or "=" in value:
            return pipes["stdin"], pipes["stdout"], pipes["stderr"], words[i:]
        pipes[key] = value
    return pipes["stdin"], pipes["stdout"], pipes["stderr"], words[3:]


@command(
    "cc <exec,> <command>...",
    "cc <exec-once,> <command>...",
    "cc <background,> <command>...",
    "cc <background-once,> <command>...",
    short="run a command on agents",
)
async def cc_exec(ctx: Context, cmd: Command) -> Result:
    stdin, stdout, stderr, words = _stdio(cmd.items("command"))
    for name in (stdin, stdout, stderr):
        if name:
            check_pipe_name(name)  # the agent's node refuses it too; say so before it runs
    spec = wire.Command(
        id=0,
        command=words,
        background=cmd.flag("background") or cmd.flag("background-once"),
        once=cmd.flag("exec-once") or cmd.flag("background-once"),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
    )
    return await _create(ctx, spec)


def _send_files(srv: CcServer, names: list[str]) -> list[str]:
    """2.8's ``NewFilesSendCommand`` over every argument (2.8 kept only the last one's)."""
    root = os.path.realpath(srv.files_dir)
    ns_dir = os.path.realpath(responses.base_dir(srv.files_dir, srv.namespace))
    out: list[str] = []
    for name in names:
        f = os.path.normpath(name)
        if ".." in f.split(os.sep):
            raise CommandError(f"can only send files from {srv.files_dir}")
        if os.path.isabs(f):
            if not (f == root or f.startswith(root + os.sep)):
                raise CommandError(f"can only send files from {srv.files_dir}")
            found = [os.path.relpath(p, root) for p in sorted(glob.glob(f))]
        else:
            found = [os.path.relpath(p, ns_dir) for p in sorted(glob.glob(os.path.join(ns_dir, f)))]
            if not found:
                found = [os.path.relpath(p, root) for p in sorted(glob.glob(os.path.join(root, f)))]
        found = [p for p in found if not p.startswith("..")]
        if not found:
            raise CommandError(f"no such file: {f}")
        out.extend(p for p in found if p not in out)
    return out


def _send_candidates(root: str, namespace: str, name: str) -> list[str]:
    """The names under ``root`` that ``cc send <name>`` may mean, the namespace's first."""
    ns_rel = os.path.relpath(responses.base_dir(root, namespace), root)
    f = os.path.normpath(name)
    if ".." in f.split(os.sep):
        return []  # refused by _send_files with 2.8's text
    if os.path.isabs(f):
        return [f] if f.startswith(os.path.normpath(root) + os.sep) else []
    return [os.path.join(ns_rel, f), f] if ns_rel != "." else [f]


async def _fetch_for_send(ctx: Context, srv: CcServer, names: list[str]) -> None:
    """2.8 fetches each file from the mesh first, the namespace's copy before the root's."""
    files = ctx.state.files
    for name in names:
        for cand in _send_candidates(files.root, srv.namespace, name):
            try:
                await files.fetch(cand)
            except CommandError as err:
                if str(err).endswith("file not found"):
                    continue
                raise
            break


@command("cc <send,> <file>...", short="send files to agents")
async def cc_send(ctx: Context, cmd: Command) -> Result:
    srv = await server(ctx)
    await _fetch_for_send(ctx, srv, cmd.items("file"))
    files = await asyncio.to_thread(_send_files, srv, cmd.items("file"))
    return await _create(ctx, wire.Command(id=0, files_send=files))


@command("cc <recv,> <file>...", short="fetch files from agents")
async def cc_recv(ctx: Context, cmd: Command) -> Result:
    return await _create(ctx, wire.Command(id=0, files_recv=list(cmd.items("file"))))


@command(
    "cc <test-conn,> <tcp,udp> <ip or fqdn> <port> wait <timeout> [base64 udp packet]",
    short="test a connection from agents",
)
async def cc_test_conn(ctx: Context, cmd: Command) -> Result:
    port = cmd.arg("port")
    try:
        int(port)
    except ValueError:
        raise CommandError(
            f'invalid port {port}: strconv.Atoi: parsing "{port}": invalid syntax'
        ) from None
    timeout = cmd.arg("timeout")
    try:
        wait_ns = parse_duration(timeout)
    except ValueError:
        raise CommandError(
            f'invalid wait duration {timeout}: time: invalid duration "{timeout}"'
        ) from None
    scheme = "udp" if cmd.flag("udp") else "tcp"
    packet = b""
    if cmd.arg("base64"):
        try:
            packet = base64.b64decode(cmd.arg("base64"), validate=True)
        except (binascii.Error, ValueError) as err:
            raise CommandError(f"unable to decode base64 packet string: {err}") from None
    test = wire.ConnTest(
        endpoint=f"{scheme}://{cmd.arg('ip')}:{port}", wait=wait_ns / 1e9, packet=packet
    )
    return await _create(ctx, wire.Command(id=0, conn_test=test))


def _find_vm(ctx: Context, target: str) -> VM:
    vm = ctx.state.vms.find(ctx.namespace, target)
    if vm is None:
        raise CommandError(f"vm not found: {target}")
    return vm


def _find_client(srv: CcServer, ctx: Context, target: str) -> ClientConn | None:
    """A connected agent by VM name or ID, UUID or hostname."""
    if target in srv.clients:
        return srv.clients[target]
    vm = ctx.state.vms.find(ctx.namespace, target)
    if vm is not None and vm.uuid in srv.clients:
        return srv.clients[vm.uuid]
    for conn in srv.clients.values():
        if conn.info.hostname == target:
            return conn
    return None


@command(
    "cc <process,> <list,> <vm name, uuid or all>",
    "cc <process,> <kill,> <pid or all>",
    "cc <process,> <killall,> <name>",
    short="list or kill background processes",
)
async def cc_process(ctx: Context, cmd: Command) -> Result:
    if cmd.flag("kill"):
        pid = cmd.arg("pid")
        if pid == WILDCARD:
            return await _create(ctx, wire.Command(id=0, pid=-1))
        try:
            value = int(pid)
        except ValueError:
            raise CommandError(f"invalid PID: `{pid}`") from None
        return await _create(ctx, wire.Command(id=0, pid=value))
    if cmd.flag("killall"):
        return await _create(ctx, wire.Command(id=0, kill_all=cmd.arg("name")))
    srv = await server(ctx)
    target = cmd.arg("vm")
    if target == WILDCARD:
        conns = list(srv.clients.values())
    else:
        conn = _find_client(srv, ctx, target)
        if conn is None:
            raise CommandError(f"vm not found: {target}")
        conns = [conn]
    rows = []
    for conn in conns:
        name = conn.vm.name if conn.vm is not None else conn.info.hostname
        for proc in sorted(conn.info.processes, key=lambda p: p.pid):
            rows.append([name, conn.uuid, str(proc.pid), " ".join(proc.command)])
    return ctx.table(["name", "uuid", "pid", "command"], rows)


@command("cc <log,> level <debug,info,warn,error,fatal>", short="set the agents' log level")
async def cc_log(ctx: Context, cmd: Command) -> Result:
    level = next(k for k in ("debug", "info", "warn", "error", "fatal") if cmd.flag(k))
    return await _create(ctx, wire.Command(id=0, level=level))


@command(
    "cc <responses,> <id or prefix or all> [raw,]",
    short="show command responses",
    kind="broadcast",
)
async def cc_responses(ctx: Context, cmd: Command) -> Result:
    srv = await server(ctx)
    target = cmd.arg("id")
    raw = cmd.flag("raw")
    files = srv.files_dir
    if target == WILDCARD:
        text = await asyncio.to_thread(responses.get_responses, files, ctx.namespace, raw)
        return ctx.respond(text)
    try:
        cmd_id = int(target)
    except ValueError:
        cmd_id = None
    if cmd_id is not None:
        text = await asyncio.to_thread(responses.get_response, files, ctx.namespace, cmd_id, raw)
        return ctx.respond(text)
    ids = [i for i, s in sorted(srv.store.commands.items()) if s.record.prefix == target]
    if not ids:
        raise CommandError(f"no such prefix: `{target}`")
    parts = []
    for i in ids:
        parts.append(await asyncio.to_thread(responses.get_response, files, ctx.namespace, i, raw))
    return ctx.respond("".join(p + "\n" for p in parts))


@command(
    "cc <exitcode,> <id> <vm name, hostname, or uuid>",
    short="show the exit code of a command on one agent",
    kind="broadcast",
)
async def cc_exitcode(ctx: Context, cmd: Command) -> Result:
    try:
        cmd_id = int(cmd.arg("id"))
    except ValueError:
        raise CommandError("invalid command ID provided") from None
    srv = await server(ctx)
    target = cmd.arg("vm")
    conn = _find_client(srv, ctx, target)
    if conn is None:
        raise CommandError(f"unable to get exit code: no client {target}")
    try:
        code = await asyncio.to_thread(
            responses.exit_code, srv.files_dir, ctx.namespace, cmd_id, conn.uuid
        )
    except (OSError, ValueError) as err:
        raise CommandError(f"unable to get exit code: {err}") from None
    return ctx.respond(str(code))


@command(
    "cc <tunnel,> <vm name or uuid> <src port> <host> <dst port>",
    short="forward a host port into a guest",
)
async def cc_tunnel(ctx: Context, cmd: Command) -> Result:
    src, dst = _ports(cmd)
    srv = await server(ctx)
    target = cmd.arg("vm")
    conn = _find_client(srv, ctx, target)
    if conn is None:
        _find_vm(ctx, target)  # 2.8's error when there is no such VM
        raise CommandError(f"no client for {target}")
    try:
        await srv.tunnels.forward(conn, src, cmd.arg("host"), dst)
    except OSError as err:
        raise CommandError(str(err)) from None
    return None


@command("cc <rtunnel,> <src port> <host> <dst port>", short="forward a guest port to a host")
async def cc_rtunnel(ctx: Context, cmd: Command) -> Result:
    src, dst = _ports(cmd)
    srv = await server(ctx)
    frame = wire.ListenTunnel(port=src, host=cmd.arg("host"), dst=dst)
    for conn in list(srv.clients.values()):
        if srv.matches(srv.filter, conn):
            try:
                await conn.send(frame)
            except (OSError, TimeoutError) as err:
                logger.warning("rtunnel to %s: %s", conn.uuid, err)
    return None


def _ports(cmd: Command) -> tuple[int, int]:
    ports = []
    for key in ("src", "dst"):
        try:
            ports.append(int(cmd.arg(key)))
        except ValueError:
            text = cmd.arg(key)
            raise CommandError(
                f'non-integer {key}: {text} : strconv.Atoi: parsing "{text}": invalid syntax'
            ) from None
    return ports[0], ports[1]


@command(
    "cc <delete,> <command,> <id or prefix or all>",
    "cc <delete,> <response,> <id or prefix or all>",
    short="delete commands or responses",
)
async def cc_delete(ctx: Context, cmd: Command) -> Result:
    srv = await server(ctx)
    target = cmd.arg("id")
    files = srv.files_dir
    try:
        cmd_id: int | None = int(target)
    except ValueError:
        cmd_id = None
    if cmd.flag("command"):
        if target == WILDCARD:
            await srv.store.clear()
        elif cmd_id is not None:
            if cmd_id not in srv.store.commands:
                raise CommandError(f"command {cmd_id} not found")
            await srv.store.delete(cmd_id)
        else:
            ids = [i for i, s in srv.store.commands.items() if s.record.prefix == target]
            if not ids:
                raise CommandError(f"no such prefix: `{target}`")
            for i in ids:
                await srv.store.delete(i)
        return None
    if target == WILDCARD:
        await asyncio.to_thread(responses.delete, files, ctx.namespace)
    elif cmd_id is not None:
        await asyncio.to_thread(responses.delete, files, ctx.namespace, cmd_id)
    else:
        ids = [i for i, s in srv.store.commands.items() if s.record.prefix == target]
        if not ids:
            raise CommandError(f"no such prefix: `{target}`")
        for i in ids:
            await asyncio.to_thread(responses.delete, files, ctx.namespace, i)
    return None


_CLEAR_LONG = """Resets state for the command and control infrastructure provided by minimega.
See "help cc" for more information."""
_CLEAR_PARTS = ("commands", "filter", "prefix", "responses")


@command(
    "clear cc",
    "clear cc <commands,>",
    "clear cc <filter,>",
    "clear cc <prefix,>",
    "clear cc <responses,>",
    short="reset command and control state",
    long=_CLEAR_LONG,
)
async def clear_cc(ctx: Context, cmd: Command) -> Result:
    srv = await server(ctx)
    chosen = [p for p in _CLEAR_PARTS if cmd.flag(p)] or list(_CLEAR_PARTS)
    await clear_parts(srv, chosen)
    if not cmd.bool_args:
        # 2.8 (#1466): plain `clear cc` unmounts too; `clear cc <part>` never does
        await ctx.state.cc.mounts.clear(ctx.namespace)
    return None


async def clear_parts(srv: CcServer, parts: list[str]) -> None:
    """Clear parts of a namespace's cc state."""
    for part in parts:
        logger.info("clearing %s in namespace `%s`", part, srv.namespace)
        if part == "filter":
            srv.filter = None
        elif part == "prefix":
            srv.prefix = ""
        elif part == "commands":
            await srv.store.clear()
        elif part == "responses":
            await asyncio.to_thread(responses.delete, srv.files_dir, srv.namespace)


# -- lifecycle -------------------------------------------------------------------------------


@on_destroy(45)
async def _destroy(ctx: Context, namespace: str) -> None:
    await ctx.state.cc.drop(namespace)


@on_clear_all(40)
async def _clear_all(ctx: Context) -> None:
    for srv in list(ctx.state.cc.servers.values()):
        await clear_parts(srv, list(_CLEAR_PARTS))
