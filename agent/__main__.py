"""``megabus agent`` / ``python -m megabus.agent``: run the guest agent, or set a tag through it.

Flags follow miniccc's (single or double dash)::

    megabus agent -serial /dev/virtio-ports/cc          KVM guest
    megabus agent -family unix -parent /cc              container
    megabus agent -parent 10.0.0.1 [-port 9002]         TCP (cc listen)
    megabus agent -tag KEY VALUE                        set a VM tag via the running agent
"""

# Python 3.9 in guests: annotations are never evaluated here (no msgspec Structs).

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from megabus.agent.client import Agent, Options, check_pid_file, send_tag
from megabus.agent.version import VERSION
from megabus.bus import cc_messages as wire


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="megabus agent", description="the megabus guest agent (miniccc)"
    )

    def opt(name: str, **kw: object) -> None:
        p.add_argument(f"-{name}", f"--{name}", **kw)  # type: ignore[arg-type]

    opt(
        "family", default="tcp", choices=["tcp", "unix"], help="transport to the parent (tcp, unix)"
    )
    opt("parent", default="", help="node address (tcp) or socket path (unix)")
    opt("port", type=int, default=wire.DEFAULT_PORT, help="node TCP port")
    opt("serial", default="", help="virtio-serial device, e.g. /dev/virtio-ports/cc")
    opt("path", default="/tmp/miniccc", help="agent directory (files in <path>/files)")
    opt("uuid", default="", help="this guest's UUID (default: DMI product UUID, or <path>/uuid)")
    opt("tag", nargs=2, metavar=("KEY", "VALUE"), help="set a tag through the running agent")
    opt("level", default="info", choices=["debug", "info", "warn", "error", "fatal"])
    opt("logfile", default="", help="log here instead of stderr")
    opt("retry", type=float, default=5.0, help="seconds between dials")
    opt("fsroot", default="/", help="what cc mount serves of this guest (default /)")
    opt("version", action="store_true", help="print the version")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"megabus agent {VERSION} (protocol {wire.PROTOCOL})")
        return 0
    if args.tag:
        try:
            answer = asyncio.run(send_tag(args.path, args.tag[0], args.tag[1]))
        except (OSError, asyncio.TimeoutError) as err:  # noqa: UP041 (3.9)
            print(f"megabus agent: no agent at {args.path}: {err}", file=sys.stderr)
            return 1
        if answer != "ok":
            print(f"megabus agent: {answer}", file=sys.stderr)
            return 1
        return 0
    levels = {"warn": "WARNING", "fatal": "CRITICAL"}
    logging.basicConfig(
        level=levels.get(args.level, args.level.upper()),
        filename=args.logfile or None,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.serial and not args.parent:
        print("megabus agent: need -serial or -parent", file=sys.stderr)
        return 2
    error = check_pid_file(args.path)
    if error:
        print(f"megabus agent: {error}", file=sys.stderr)
        return 1
    opts = Options(
        family=args.family,
        parent=args.parent,
        port=args.port,
        serial=args.serial,
        path=args.path,
        uuid=args.uuid,
        retry=args.retry,
        fs_root=args.fsroot,
    )
    try:
        return asyncio.run(_run(opts))
    except KeyboardInterrupt:
        return 130


async def _run(opts: Options) -> int:
    return await Agent(opts).run()


if __name__ == "__main__":
    sys.exit(main())
