"""``megabus attach``: an interactive prompt on a running node (minimega -attach).

It behaves like 2.8's ``miniclient.Attach``: a caution banner, the prompt
``megabus:<node>$ `` (``megabus:<node>[<ns>]$ `` with ``-namespace``), blank
lines skipped, ``disconnect`` or ^D to leave, ``quit`` asked twice because it
stops the node, ^C drops the line being typed.

It runs on the synchronous :class:`~megabus.bus.rawclient.RawClient` rather
than nats-py's ``Bus``: a prompt blocks in ``input()`` (readline) between
commands, which suits a blocking client, whereas an asyncio client would need
its event loop in another thread just to keep the connection answered. The
raw client answers the server's PINGs before each command and reconnects when
the server dropped it during a long idle spell.
"""

from __future__ import annotations

import os
import sys

from megabus.cli.args import Target
from megabus.cli.oneshot import Session, UnreachableError, print_reply

HISTORY_FILE = os.path.expanduser("~/.megabus_history")
HISTORY_LENGTH = 1000

#: First words offered by tab completion: minimega 2.8's top-level commands.
COMMANDS = (
    ".alias",
    ".annotate",
    ".columns",
    ".compress",
    ".csv",
    ".env",
    ".filter",
    ".headers",
    ".json",
    ".preprocess",
    ".record",
    ".sort",
    ".unalias",
    "background",
    "bridge",
    "capture",
    "cc",
    "check",
    "clear",
    "deploy",
    "disconnect",
    "disk",
    "dnsmasq",
    "echo",
    "file",
    "help",
    "history",
    "host",
    "log",
    "mesh",
    "namespace",
    "ns",
    "nuke",
    "optimize",
    "pipe",
    "plumb",
    "qos",
    "quit",
    "read",
    "router",
    "shell",
    "status",
    "tap",
    "version",
    "vlans",
    "vm",
    "vnc",
    "write",
)


def prompt_for(target: Target) -> str:
    """The prompt, in 2.8's ``minimega:<socket>[ns]$ `` shape with the node for the socket."""
    if target.namespace:
        return f"megabus:{target.node}[{target.namespace}]$ "
    return f"megabus:{target.node}$ "


def _setup_readline() -> bool:
    """Load history and first-word completion; False when readline is unavailable."""
    try:
        import readline
    except ImportError:
        return False
    try:
        readline.read_history_file(HISTORY_FILE)
    except OSError:
        pass  # no history yet
    readline.set_history_length(HISTORY_LENGTH)

    def complete(text: str, state: int) -> str | None:
        if readline.get_line_buffer()[: readline.get_begidx()].strip():
            return None  # only the command word; the rest needs the node's grammar
        matches = [c for c in COMMANDS if c.startswith(text)]
        return matches[state] + " " if state < len(matches) else None

    readline.set_completer_delims(" \t")
    readline.set_completer(complete)
    readline.parse_and_bind("tab: complete")
    return True


def _save_history() -> None:
    try:
        import readline

        readline.write_history_file(HISTORY_FILE)
    except (ImportError, OSError):
        pass  # a read-only home must not turn leaving into a traceback


def attach(target: Target) -> int:
    """Run the prompt until ``disconnect``/EOF; 2 when the node cannot be reached."""
    session = Session(target, client="megabus attach")
    try:
        session.connect()
    except UnreachableError as err:
        sys.stderr.write(f"megabus: {err}\n")
        return 2
    interactive = sys.stdin.isatty()
    has_readline = interactive and _setup_readline()
    print("CAUTION: calling 'quit' will cause the megabus node to exit")
    print("use 'disconnect' or ^d to exit just the megabus command line")
    print()
    prompt = prompt_for(target)
    quit_armed = False
    status = 0
    try:
        while True:
            try:
                line = input(prompt).strip()
            except EOFError:
                print()
                break
            except KeyboardInterrupt:
                print()
                continue
            if not line:
                continue
            if line == "disconnect":
                break
            if line == "quit" and not quit_armed:
                print("CAUTION: calling 'quit' will cause the megabus node to exit")
                print("If you really want to stop the megabus node, enter 'quit' again")
                quit_armed = True
                continue
            quit_armed = False
            try:
                for reply in session.run(line):
                    print_reply(reply)
                sys.stdout.flush()
            except UnreachableError as err:
                sys.stderr.write(f"megabus: {err}\n")
                if line == "quit":
                    break  # the node is gone, as asked
                status = 2
            except KeyboardInterrupt:
                # The node keeps running the command; its late replies are
                # dropped because the next request uses a new reply subject.
                print()
    finally:
        if has_readline:
            _save_history()
        session.close()
    return status
