"""``python3 -m megabus.router`` (``minirouter`` in the router images).

Flags follow 2.8's minirouter (single or double dash)::

    minirouter [-path /tmp/minirouter] [-force]       the daemon
    minirouter -u FILE [-path /tmp/minirouter]        apply FILE through the running daemon

The other flags move the daemon's files (tests run it on the host inside a
network namespace) and set its logging.
"""

from __future__ import annotations

import argparse
import logging
import sys

from megabus.router import client, daemon
from megabus.router.options import Options
from megabus.router.router import LEVELS
from megabus.router.tags import LogTail


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="minirouter", description="the megabus router daemon (2.8's minirouter)"
    )
    d = Options()

    def opt(name: str, **kw: object) -> None:
        p.add_argument(f"-{name}", f"--{name}", **kw)  # type: ignore[arg-type]

    opt("path", default=d.path, help="socket and state folder (default %(default)s)")
    opt("u", metavar="FILE", default="", help="send FILE to the running daemon and wait")
    opt("force", action="store_true", help="start even if another daemon seems to run")
    opt("level", default="info", choices=list(LEVELS), help="log level (default %(default)s)")
    opt("logfile", default="", help="log to this file instead of stderr")
    opt("sysfs", default=d.sysfs, help="sysfs root for the interface list (default %(default)s)")
    opt("dnsmasq-conf", default=d.dnsmasq_conf, help="dnsmasq config (default %(default)s)")
    opt("dnsmasq-leases", default=d.dnsmasq_leases, help="dnsmasq lease file (default: its own)")
    opt("bird-conf", default=d.bird_conf, help="BIRD config (default %(default)s)")
    opt("bird-socket", default=d.bird_socket, help="BIRD control socket (default %(default)s)")
    opt("dhcp-wait", type=float, default=d.dhcp_wait, help="seconds to wait for a DHCP lease")
    opt("agent", default=d.agent, help="the agent's folder for tags; empty: no tags")
    opt("stats", type=float, default=d.stats, help="seconds between counter tags; 0: none")
    opt("wait", type=float, default=30.0, help="-u: seconds to wait for the daemon's socket")
    opt("timeout", type=float, default=600.0, help="-u: seconds to wait for the outcome")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    opts = Options(
        path=args.path,
        sysfs=args.sysfs,
        dnsmasq_conf=args.dnsmasq_conf,
        dnsmasq_leases=args.dnsmasq_leases,
        bird_conf=args.bird_conf,
        bird_socket=args.bird_socket,
        dhcp_wait=args.dhcp_wait,
        agent=args.agent,
        stats=args.stats,
    )
    if args.u:
        return client.update(opts.socket, args.u, wait=args.wait, timeout=args.timeout)
    try:
        logging.basicConfig(
            level=LEVELS[args.level],
            filename=args.logfile or None,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    except OSError as err:
        print(f"minirouter: cannot log to {args.logfile}: {err}", file=sys.stderr)
        return 1
    tail = LogTail()
    tail.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    # the minirouter_log tag (``router <vm>``'s Log:) holds what 2.8's would: records at
    # its default level, error, until a config's `log level` says otherwise
    tail.setLevel(logging.ERROR)
    logging.getLogger().addHandler(tail)
    try:
        return daemon.serve(opts, force=args.force, log=tail)
    except daemon.AlreadyRunningError as err:
        print(f"minirouter: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"minirouter: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
