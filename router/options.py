"""The daemon's settings: where it listens, keeps its state and writes configs.

Defaults are 2.8's paths inside a router image (``/tmp/minirouter``,
``/etc/dnsmasq.conf``, ``/etc/bird.conf``, ``/bird.sock``); tests run the
daemon on the host inside a network namespace and point every path into a
temporary folder, so that two daemons never share a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: The socket's name inside ``-path`` (2.8's).
SOCKET_NAME = "minirouter"


@dataclass
class Options:
    """Everything the daemon and its parts read from the command line."""

    #: 2.8's ``-path``: the socket and the daemon's own files (pids, leases, logs).
    path: str = "/tmp/minirouter"
    #: Root of sysfs: interfaces are listed from ``<sysfs>/class/net``.
    sysfs: str = "/sys"
    dnsmasq_conf: str = "/etc/dnsmasq.conf"
    #: dnsmasq's lease file; empty: dnsmasq's own default.
    dnsmasq_leases: str = ""
    bird_conf: str = "/etc/bird.conf"
    bird_socket: str = "/bird.sock"
    #: Seconds ``ip add <i> dhcp`` waits for a lease before reporting none.
    dhcp_wait: float = 30.0
    #: The agent's directory (its control socket is ``<agent>/miniccc``); empty: no tags.
    agent: str = "/tmp/miniccc"
    #: Seconds between interface counter tags; 0: none.
    stats: float = 5.0

    @property
    def socket(self) -> str:
        return os.path.join(self.path, SOCKET_NAME)

    def state_file(self, name: str) -> str:
        """A file of the daemon's own under ``-path`` (pid files, leases, logs)."""
        return os.path.join(self.path, name)
