"""The ``megabus`` console script: parse the command line, pick a front end.

Forms::

    megabus node [flags]              run a node (embedded nats-server if none)
    megabus [flags] -e <command...>   run one command and exit (minimega -e)
    megabus [flags] attach            interactive prompt (minimega -attach)
    megabus [flags] read FILE         run each line of FILE as a command
    megabus [flags] events [kinds]    print bus events as JSON lines
    megabus [flags] status            live view of nodes, status and logs
    megabus [flags] web               the web UI (VMs, screens, noVNC, graph, commands)
    megabus [flags] viz [-T png]      the namespace's topology as SVG or PNG
    megabus agent [flags]             the guest agent (2.8's miniccc)
    megabus lognode -dir D [flags]    write every node's log records to D/<node>.log
    megabus schema [-pyi]             the bus's subjects, messages and command table (JSON),
                                      or the client's methods as a typing stub
    megabus plan|up|down FILE         an experiment file: its commands, brought up, taken down

Flags follow Go's ``flag`` package, as minimega's do: ``-x`` and ``--x`` are
the same, values go as ``-x v`` or ``-x=v``, and parsing stops at the first
argument that is not a flag, so everything after ``-e`` that is not a flag is
the command.

This module is on the one-shot path, which must finish in a few tens of
milliseconds as a whole process: it imports only the standard library's light
modules at top level, and each front end imports what it needs when chosen.
"""

from __future__ import annotations

import os
import sys

from megabus.cli.args import (
    CLIENT_FLAGS,
    NODE_FLAGS,
    UsageError,
    parse_flags,
    parse_interspersed,
    quote_args,
    resolve_target,
)

USAGE = """\
usage: megabus node [flags]                 run a node
       megabus [flags] -e <command...>      run one command and exit
       megabus [flags] attach               interactive prompt on a node
       megabus [flags] read FILE            run each line of FILE ('-': stdin)
       megabus [flags] events [KIND...]     print bus messages as JSON lines
                                            (KIND: event status log vlans hb)
       megabus [flags] status               live view of nodes, status, logs
       megabus [flags] web [-listen ADDR] [-port N] [-files DIR]
                                            the web UI (VMs, screens, noVNC, graph)
       megabus [flags] viz [-T svg|png] [-o FILE]
                                            the namespace's topology picture
       megabus agent [agent flags]          the guest agent (miniccc; -h for flags)
       megabus lognode -dir DIR [-max-bytes N] [-backups K] [flags]
                                            write each node's log records to DIR/<node>.log
       megabus schema [-pyi]                subjects, messages (JSON Schema) and commands
                                            (-pyi: megabus.client's methods as a typing stub)
       megabus plan FILE                    an experiment file's commands (no node needed)
       megabus [flags] up FILE              bring an experiment up (again: only what changed)
       megabus [flags] down FILE            take an experiment down

client flags:
  -nats URL[,URL]   NATS servers (env MEGABUS_NATS; default: <base>/megabus.json,
                    else nats://127.0.0.1:4222)
  -node NAME        node to command (default: <base>/megabus.json, else hostname)
  -base DIR         local node's base directory (env MEGABUS_BASE; /tmp/megabus)
  -prefix P         subject prefix (env MEGABUS_PREFIX; default mb)
  -namespace NS     run commands in namespace NS
  -timeout SECS     idle timeout waiting for the node (default 10)
  -json             -e: print each batch's responses as one JSON line
  -count N          events: exit after N messages
  -credentials FILE NATS user and password, JSON {"user", "password"} (env
                    MEGABUS_CREDENTIALS, or MEGABUS_NATS_USER and MEGABUS_NATS_PASSWORD;
                    default: the local node's <base>/auth/<role>.json)
  -tls-ca FILE      CA to verify the NATS server with (env MEGABUS_TLS_CA)
  -tls-cert FILE    client certificate, -tls-key FILE its key (MEGABUS_TLS_CERT, _KEY)

node flags: -name -nats -base -filepath -prefix -vlanrange -heartbeat -level
  -logfile -log-node (-headnode) -nats-port -accel -config -recover -hashfiles -max-requests
  -max-waiting -credentials -tls-ca -tls-cert -tls-key -tls-server-cert -tls-server-key
"""


# --- entry point ------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the ``megabus`` command line; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    try:
        return _dispatch(args)
    except UsageError as err:
        print(f"megabus: {err}", file=sys.stderr)
        print("run 'megabus -h' for usage", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: list[str]) -> int:
    if args and args[0] == "node":
        return _run_node(args[1:])
    if args and args[0] == "agent":
        from megabus.agent.__main__ import main as agent_main

        return agent_main(args[1:])
    if args and args[0] == "lognode":
        _configure_logging(os.environ.get("MEGABUS_LEVEL", "error"), "", True)
        from megabus.cli.lognode import run_lognode

        return run_lognode(args[1:])
    if args and args[0] == "schema":
        pyi = args[1:] in (["-pyi"], ["--pyi"])
        if not pyi:
            _no_args("schema", args[1:])
        from megabus.cli.schema import run_schema

        return run_schema(pyi)
    flags, rest = parse_flags(args, CLIENT_FLAGS)
    if flags.get("help"):
        sys.stdout.write(USAGE)
        return 0
    if flags.get("e"):
        if not rest:
            raise UsageError("-e needs a command")
        from megabus.cli.oneshot import run_line

        target = resolve_target(flags)
        return run_line(target, quote_args(rest), as_json=bool(flags.get("json")))
    verb = "attach" if flags.get("attach") else (rest.pop(0) if rest else "")
    if verb in ("attach", "read", "events", "status", "plan", "up", "down"):
        more, rest = parse_interspersed(rest, CLIENT_FLAGS)
        flags.update(more)
    if verb in ("web", "viz"):
        more, rest = parse_interspersed(rest, {**CLIENT_FLAGS, **PICTURE_FLAGS})
        flags.update(more)
        _no_args(verb, rest)
        return _run_picture(verb, flags)
    if verb == "attach":
        _no_args(verb, rest)
        from megabus.cli.shell import attach

        return attach(resolve_target(flags))
    if verb == "read":
        if len(rest) != 1:
            raise UsageError("read needs exactly one FILE")
        from megabus.cli.oneshot import run_file

        return run_file(resolve_target(flags), rest[0], as_json=bool(flags.get("json")))
    if verb in ("plan", "up", "down"):
        # as events and status: minimega's default -level error
        _configure_logging(os.environ.get("MEGABUS_LEVEL", "error"), "", True)
        if len(rest) != 1:
            raise UsageError(f"{verb} needs exactly one FILE")
        from megabus.cli.experiment import run_experiment, run_plan

        if verb == "plan":
            return run_plan(rest[0])
        return run_experiment(resolve_target(flags), rest[0], verb)
    if verb in ("events", "status"):
        # The clients log like minimega's default -level error; a warning
        # such as the bus's "disconnected" on close is noise on a terminal.
        _configure_logging(os.environ.get("MEGABUS_LEVEL", "error"), "", True)
    if verb == "events":
        from megabus.cli.events import run_events

        count = _int_flag(flags, "count")
        # Following the bus needs no more than a watcher's rights.
        return run_events(resolve_target(flags, role="watcher"), rest, count=count)
    if verb == "status":
        _no_args(verb, rest)
        from megabus.cli.status import run_status

        return run_status(resolve_target(flags, role="watcher"))
    if not verb:
        sys.stderr.write(USAGE)
        return 2
    raise UsageError(
        f"unknown command {verb!r} (did you mean: megabus -e {quote_args([verb, *rest])})"
    )


#: Flags of ``megabus web`` and ``megabus viz``.
PICTURE_FLAGS: dict[str, tuple[str, bool]] = {
    "listen": ("listen", True),
    "port": ("port", True),
    "files": ("files", True),
    "o": ("out", True),
    "T": ("format", True),
}


def _run_picture(verb: str, flags: dict[str, str | bool]) -> int:
    target = resolve_target(flags)
    if verb == "viz":
        from megabus.cli.graph import run_viz

        return run_viz(target, str(flags.get("format") or "svg"), str(flags.get("out") or ""))
    _configure_logging(os.environ.get("MEGABUS_LEVEL", "error"), "", True)
    from megabus.cli.web import DEFAULT_PORT, run_web

    port = _int_flag(flags, "port") if flags.get("port") else DEFAULT_PORT
    files = str(flags.get("files") or os.path.join(target.base, "files"))
    from pathlib import Path

    return run_web(target, Path(files), str(flags.get("listen") or "127.0.0.1"), port)


def _no_args(verb: str, rest: list[str]) -> None:
    if rest:
        raise UsageError(f"{verb} takes no arguments, got {' '.join(rest)!r}")


def _int_flag(flags: dict[str, str | bool], name: str) -> int:
    raw = flags.get(name)
    if raw is None or raw is True:
        return 0
    try:
        value = int(str(raw))
    except ValueError:
        raise UsageError(f"invalid value {raw!r} for -{name}: expected a number") from None
    if value < 0:
        raise UsageError(f"invalid value {raw!r} for -{name}: must not be negative")
    return value


def _run_node(args: list[str]) -> int:
    flags, rest = parse_flags(args, NODE_FLAGS)
    if flags.get("help"):
        sys.stdout.write(USAGE)
        return 0
    if rest:
        # minimega ignores positional files in daemon mode; we refuse them.
        raise UsageError(f"node takes only flags, got {' '.join(rest)!r}")
    from megabus.config.settings import SettingsError, load

    config = flags.pop("config", None)
    try:
        settings = load(dict(flags), config_file=str(config) if config else None)
    except SettingsError as err:
        raise UsageError(str(err)) from None
    _check_level(settings.level)
    # No root handlers here: the node's LogControl owns stderr and -logfile for
    # the megabus logger (so `log` commands act on them); handlers in both
    # places wrote every record twice.
    if not any(url.startswith(("ws://", "wss://")) for url in settings.nats):
        # nats-py imports aiohttp, when installed (the web UI's), for a websocket
        # transport no node on nats:// uses: 12 MB and 140 ms of each node's start
        # (issue 16's idle memory). A node given a ws:// server keeps it.
        sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]
    from megabus.bus.loop import run
    from megabus.handlers.main import run_node

    try:
        run(run_node(settings))
    except KeyboardInterrupt:
        pass
    return 0


_LEVELS = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "fatal": 50}


def _check_level(level: str) -> None:
    if level.lower() not in _LEVELS:
        raise UsageError(f"invalid level {level!r}: expected debug, info, warn, error or fatal")


def _configure_logging(level: str, logfile: str, verbose: bool) -> None:
    """Log like minilog: stderr unless ``-v=false``, plus ``-logfile``, at ``-level``.

    For the front ends that are no node (``events``, ``status``, ``lognode``).
    """
    import logging

    _check_level(level)
    handlers: list[logging.Handler] = []
    if verbose:
        handlers.append(logging.StreamHandler())
    if logfile:
        try:
            handlers.append(logging.FileHandler(logfile))
        except OSError as err:
            raise UsageError(f"cannot open log file {logfile}: {err.strerror}") from None
    logging.basicConfig(
        level=_LEVELS[level.lower()],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers or [logging.NullHandler()],
    )


if __name__ == "__main__":
    sys.exit(main())
