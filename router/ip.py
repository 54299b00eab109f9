"""``ip add <index|lo> <cidr|dhcp>`` and ``ip flush``: the router's own addresses.

``ip add`` brings the interface up and adds the address (one already there
counts as added: the line is idempotent), or runs ``dhclient`` for ``dhcp``
(after stopping one an earlier config started there) and waits up to
``-dhcp-wait`` seconds for the lease; dhclient goes on trying in the
background when none came, and the line reports it. dhclients outlive the
daemon, as in 2.8: a restarted daemon leaves leases alone. ``ip flush`` makes
the next ``ip add`` lines the router's only addresses: it releases the
dhclients the daemon started and removes every global address from every
interface, ``lo`` included (loopback's own ``127.0.0.1`` and ``::1`` have host
scope and stay). dhclient's pid and lease files live under ``-path``, so two
routers on one host (tests) never share them.
"""

from __future__ import annotations

import logging
import os
import subprocess

from megabus.router import ifaces, lines, programs
from megabus.router.lines import LineError
from megabus.router.options import Options

logger = logging.getLogger(__name__)


class Addresses:
    """The ``ip`` lines."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        #: interface -> its dhclient still waiting for a first lease (reaped once it forks away).
        self._waiting: dict[str, subprocess.Popen[bytes]] = {}

    def handle(self, words: list[str]) -> None:
        if words[1:2] == ["flush"]:
            lines.want(words, 2)
            self.flush()
        elif words[1:2] == ["add"]:
            lines.want(words, 4)
            idx = lines.index(words[2])
            if words[3] == "dhcp":
                if idx is None:
                    raise LineError("dhcp cannot be used on the loopback interface")
                self.dhcp(ifaces.resolve(self.opts.sysfs, idx))
            else:
                addr = lines.ip_interface(words[3])
                self.add(ifaces.resolve(self.opts.sysfs, idx), str(addr))
        else:
            raise LineError("unknown ip command: want 'ip add <index|lo> <ip|dhcp>' or 'ip flush'")

    # -- static addresses ---------------------------------------------------------------

    def add(self, iface: str, cidr: str) -> None:
        programs.run(["ip", "link", "set", "dev", iface, "up"])
        try:
            programs.run(["ip", "addr", "add", cidr, "dev", iface])
        except programs.ProgramError as err:
            if "File exists" not in str(err):
                raise
            logger.debug("%s already on %s", cidr, iface)

    def flush(self) -> None:
        self.reap()
        errors: list[str] = []
        for iface in ["lo", *ifaces.names(self.opts.sysfs)]:
            if os.path.exists(self._pid_file(iface)):
                try:
                    self.release(iface)
                except programs.ProgramError as err:
                    errors.append(str(err))
            try:
                programs.run(["ip", "addr", "flush", "dev", iface, "scope", "global"])
            except programs.ProgramError as err:
                errors.append(str(err))
        if errors:
            raise programs.ProgramError("; ".join(errors))

    # -- DHCP ---------------------------------------------------------------------------

    def _pid_file(self, iface: str) -> str:
        return self.opts.state_file(f"dhclient.{iface}.pid")

    def _dhclient_args(self, iface: str) -> list[str]:
        return [
            "-pf",
            self._pid_file(iface),
            "-lf",
            self.opts.state_file(f"dhclient.{iface}.leases"),
            iface,
        ]

    def dhcp(self, iface: str) -> None:
        self.reap()
        # one dhclient per interface: an earlier one (no `ip flush` since) makes way
        old = self._waiting.pop(iface, None)
        if old is not None:
            old.kill()
            old.wait()
        programs.kill_stale(self._pid_file(iface), "dhclient")
        programs.run(["ip", "link", "set", "dev", iface, "up"])
        exe = programs.need("dhclient")
        log_path = self.opts.state_file(f"dhclient.{iface}.log")
        with open(log_path, "ab") as log:
            try:
                # no -1 (2.8 runs plain `dhclient <if>`): without a lease it keeps trying
                proc = subprocess.Popen(
                    [exe, "-v", *self._dhclient_args(iface)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as err:
                raise programs.ProgramError(f"dhclient: {err}") from None
        try:
            code = proc.wait(self.opts.dhcp_wait)
        except subprocess.TimeoutExpired:
            self._waiting[iface] = proc
            raise programs.ProgramError(
                f"no DHCP lease on {iface} within {self.opts.dhcp_wait:g}s"
                " (dhclient keeps trying in the background)"
            ) from None
        if code != 0:
            raise programs.ProgramError(
                f"dhclient {iface} failed (exit {code}): {programs.tail(log_path)}"
            )

    def release(self, iface: str) -> None:
        """Stop the dhclient on ``iface`` and give its lease back (``dhclient -r``)."""
        try:
            programs.run(["dhclient", "-r", *self._dhclient_args(iface)], timeout=15.0)
        finally:
            try:
                os.unlink(self._pid_file(iface))
            except OSError:
                pass

    def reap(self) -> None:
        """Collect dhclients that have forked away (or given up) since they were started."""
        self._waiting = {i: p for i, p in self._waiting.items() if p.poll() is None}
