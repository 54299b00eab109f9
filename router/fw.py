"""The ``fw ...`` lines: the router's iptables firewall (2.8's ``fw.go``, #1456).

The rules are 2.8's, rule for rule (section 6.3 of the reference):

* ``fw flush``: no rules, no user chains, INPUT/FORWARD/OUTPUT policies
  ACCEPT, then the ``ESTABLISHED`` chain (``-p tcp|udp|icmp -m conntrack
  --ctstate ESTABLISHED,RELATED -j ACCEPT``, ``-j RETURN``) and
  ``-A FORWARD -j ESTABLISHED``;
* ``fw default accept|drop``: the FORWARD policy;
* ``fw <act> in|out <idx> [src] <dst> <proto>``: ``-A FORWARD -i|-o <if>
  [-p <proto>] [-s <ip> [--sport <p>]] [-d <ip> [--dport <p>]] -j <ACT>``;
* ``fw chain <c> ...``: the chain exists (``-N``); ``default action <act>``
  appends ``-j <ACT>``; ``action <act> [src] <dst> <proto>`` appends a rule;
  ``apply in|out <idx>`` appends ``-A FORWARD -i|-o <if> -j <c>``.

Only the filter table's FORWARD chain and user chains get rules; INPUT and
OUTPUT stay ACCEPT. Where 2.8 ran one ``iptables`` per rule as each line came,
the lines of one config are collected and the whole filter table is loaded
with one ``iptables-restore`` at the end of the config: atomic, and it
replaces every rule and chain of the previous config. A rule iptables refuses
(``-p bogus``) is reported against its line and left out; the rest still load.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field

from megabus.router import ifaces, lines, programs
from megabus.router.lines import LineError
from megabus.router.options import Options

logger = logging.getLogger(__name__)

ACTIONS = ("accept", "drop", "reject")
_PROTO = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_CHAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,27}$")
#: Names a user chain cannot take: built-in chains, targets, and our own chain.
RESERVED = {"INPUT", "FORWARD", "OUTPUT", "ACCEPT", "DROP", "REJECT", "RETURN", "ESTABLISHED"}
_ERROR_LINE = re.compile(r"line:?\s*(\d+)")
_PREFIX = re.compile(r"^iptables-restore( v[0-9.]+)?( \([a-z_]+\))?:\s*")


@dataclass
class Rule:
    #: The config line it came from (for errors).
    line: int
    text: str
    chain: str
    args: list[str]


@dataclass
class Table:
    """What the filter table should hold."""

    established: bool = False
    policy: str = "ACCEPT"
    chains: dict[str, None] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)


def _endpoint(word: str, flag: str, port_flag: str, proto: str) -> list[str]:
    """``ip[/cidr]`` or ``ip:port`` as iptables arguments ("" is none)."""
    if not word:
        return []
    what = "source" if flag == "-s" else "destination"
    if ":" in word:
        host, _, port = word.partition(":")
        if ":" in port:
            raise LineError(f"malformed {what} {word!r}")
        lines.number(port, f"{what} port", 0, 65535)
        if not proto:
            raise LineError("must specify proto when specifying ports")
        net = lines.ip_network(host, what)
        args = [flag, host if "/" not in host else str(net), port_flag, port]
    else:
        net = lines.ip_network(word, what)
        args = [flag, word if "/" not in word else str(net)]
    if net.version != 4:
        raise LineError(f"{what} {word!r} is not IPv4 (the firewall is iptables)")
    return args


def _match(src: str, dst: str, proto: str) -> list[str]:
    if proto and not _PROTO.match(proto):
        raise LineError(f"bad protocol {proto!r}")
    args = ["-p", proto] if proto else []
    return args + _endpoint(src, "-s", "--sport", proto) + _endpoint(dst, "-d", "--dport", proto)


class Firewall:
    """The ``fw`` lines: collected over one config, loaded at its end."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        #: Loaded last (``None``: the daemon never touched iptables).
        self.applied: Table | None = None
        self.pending: Table | None = None
        self._first_line = 0

    def begin(self) -> None:
        """A config starts: fw lines in it build on what is loaded now."""
        self.pending = None
        self._first_line = 0

    def _table(self, lineno: int) -> Table:
        if self.pending is None:
            self.pending = copy.deepcopy(self.applied) if self.applied else Table()
            for rule in self.pending.rules:
                rule.line = 0  # an earlier config's: its line numbers are not this one's
            self._first_line = lineno
        return self.pending

    def handle(self, words: list[str], lineno: int, text: str) -> None:
        verb = words[1] if len(words) > 1 else ""
        if verb == "flush":
            lines.want(words, 2)
            table = self._table(lineno)
            table.established, table.policy = True, "ACCEPT"
            table.chains.clear()
            table.rules.clear()
        elif verb == "default":
            lines.want(words, 3)
            action = lines.choice(words[2], "default action", ("accept", "drop"))
            self._table(lineno).policy = action.upper()
        elif verb in ACTIONS:
            lines.want(words, 6, 7)
            direction = lines.choice(words[2], "direction", ("in", "out"))
            iface = ifaces.resolve(self.opts.sysfs, lines.index(words[3]))
            src = words[4] if len(words) == 7 else ""
            match = _match(src, words[-2], words[-1])
            args = ["-i" if direction == "in" else "-o", iface, *match, "-j", verb.upper()]
            self._table(lineno).rules.append(Rule(lineno, text, "FORWARD", args))
        elif verb == "chain":
            self._chain(words, lineno, text)
        else:
            raise LineError("unknown fw command: want flush, default, accept|drop|reject or chain")

    def _chain(self, words: list[str], lineno: int, text: str) -> None:
        lines.want(words, 6, 7, 8)
        chain = words[2]
        if not _CHAIN.match(chain) or chain.upper() in RESERVED:
            raise LineError(f"bad chain name {chain!r}")
        kind = words[3]
        if kind == "default" and len(words) == 6 and words[4] == "action":
            action = lines.choice(words[5], "action", ACTIONS)
            rule = Rule(lineno, text, chain, ["-j", action.upper()])
        elif kind == "action" and len(words) in (7, 8):
            action = lines.choice(words[4], "action", ACTIONS)
            src = words[5] if len(words) == 8 else ""
            rule = Rule(
                lineno, text, chain, [*_match(src, words[-2], words[-1]), "-j", action.upper()]
            )
        elif kind == "apply" and len(words) == 6:
            direction = lines.choice(words[4], "direction", ("in", "out"))
            iface = ifaces.resolve(self.opts.sysfs, lines.index(words[5]))
            flag = "-i" if direction == "in" else "-o"
            rule = Rule(lineno, text, "FORWARD", [flag, iface, "-j", chain])
        else:
            raise LineError(
                "unknown fw chain command: want 'default action <a>', "
                "'action <a> [src] <dst> <proto>' or 'apply in|out <index>'"
            )
        table = self._table(lineno)
        table.chains[chain] = None
        table.rules.append(rule)

    def finish(self) -> list[tuple[int, str]]:
        """Load the collected table; (line, error) for what could not be loaded."""
        table, self.pending = self.pending, None
        if table is None:
            return []
        failures: list[tuple[int, str]] = []
        # each round either loads or drops the one rule iptables named
        for _ in range(len(table.rules) + 1):
            text, origin = restore_input(table)
            try:
                programs.run(["iptables-restore"], stdin=text)
            except programs.ProgramError as err:
                m = _ERROR_LINE.search(err.output)
                rule = origin.get(int(m.group(1))) if m else None
                if rule is None:
                    # not one rule's fault (no iptables, no permission): keep what is loaded
                    failures.append((self._first_line, f"firewall not loaded: {err}"))
                    return failures
                which = "the rule" if rule.line else f"{rule.text.strip()!r} (an earlier config's)"
                failures.append((rule.line, f"iptables refused {which}: {_reason(err.output)}"))
                table.rules = [r for r in table.rules if r is not rule]
                continue
            self.applied = table
            return failures
        return failures


def _reason(output: str) -> str:
    """iptables-restore's complaint, less its line number (of its input) and usage hint."""
    keep = [
        _PREFIX.sub("", line.strip())
        for line in output.splitlines()
        if line.strip() and not line.startswith(("Error occurred at line", "Try `"))
    ]
    return programs.one_line("\n".join(keep)) or programs.one_line(output)


def restore_input(table: Table) -> tuple[str, dict[int, Rule]]:
    """The filter table as ``iptables-restore`` input; its line numbers -> rules."""
    out = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        f":FORWARD {table.policy} [0:0]",
        ":OUTPUT ACCEPT [0:0]",
    ]
    if table.established:
        out.append(":ESTABLISHED - [0:0]")
    out += [f":{c} - [0:0]" for c in table.chains]
    if table.established:
        for proto in ("tcp", "udp", "icmp"):
            out.append(
                f"-A ESTABLISHED -p {proto} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
            )
        out += ["-A ESTABLISHED -j RETURN", "-A FORWARD -j ESTABLISHED"]
    origin: dict[int, Rule] = {}
    for rule in table.rules:
        out.append(" ".join(["-A", rule.chain, *rule.args]))
        origin[len(out)] = rule
    out.append("COMMIT")
    return "\n".join(out) + "\n", origin
