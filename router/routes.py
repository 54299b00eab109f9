"""``route add default gw <gw>`` and ``route del default``: the router's own default route.

2.8 ran net-tools' ``route``; we use iproute2: ``ip route replace default via
<gw>`` sets the one default route whatever was there (the line is
idempotent), and ``route del default`` removes the default routes that BIRD
did not install (BIRD's, from a named static ``0.0.0.0/0`` set, are the
routing config's and go with ``bird flush``/``bird commit``). No default route
to delete is no error, as in 2.8.
"""

from __future__ import annotations

import json
import logging

from megabus.router import lines, programs
from megabus.router.lines import LineError

logger = logging.getLogger(__name__)

#: More default routes than this is a loop that does not converge.
_MAX_ROUTES = 64


def handle(words: list[str]) -> None:
    if words[1:2] == ["add"]:
        lines.want(words, 5)
        if words[2:4] != ["default", "gw"]:
            raise LineError("want 'route add default gw <gw>'")
        gw = lines.ip_address(words[4], "gateway")
        family = "-4" if gw.version == 4 else "-6"
        programs.run(["ip", family, "route", "replace", "default", "via", str(gw)])
    elif words[1:2] == ["del"]:
        lines.want(words, 3)
        if words[2] != "default":
            raise LineError("want 'route del default'")
        delete_default()
    else:
        raise LineError(
            "unknown route command: want 'route add default gw <gw>' or 'route del default'"
        )


def delete_default() -> None:
    out = programs.run(["ip", "-j", "-4", "route", "show", "default"])
    try:
        found = json.loads(out or "[]")
    except ValueError:
        raise programs.ProgramError(f"ip route show: unreadable output: {out[:200]!r}") from None
    for route in found[:_MAX_ROUTES]:
        if not isinstance(route, dict) or route.get("protocol") == "bird":
            continue
        argv = ["ip", "-4", "route", "del", "default"]
        for key, flag in (("gateway", "via"), ("dev", "dev"), ("metric", "metric")):
            if key in route:
                argv += [flag, str(route[key])]
        if "protocol" in route:
            argv += ["proto", str(route["protocol"])]
        try:
            programs.run(argv)
        except programs.ProgramError as err:
            if "No such process" not in str(err):
                raise
