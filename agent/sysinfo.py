"""Who this guest is: UUID, hostname, arch, OS, addresses (Linux details in ``sysinfo_linux``)."""

from __future__ import annotations

import os
import platform
import socket
import sys

#: Checked at run time (a plain ``sys.platform`` test would let type checkers prune branches).
PLATFORM: str = sys.platform
#: 2.8 reports Go's GOARCH names.
_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
}


def arch() -> str:
    machine = platform.machine().lower()
    return _ARCH.get(machine, machine)


def os_name() -> str:
    """Go's GOOS: ``linux``, ``windows``, ``darwin``..."""
    if PLATFORM.startswith("linux"):
        return "linux"
    if PLATFORM.startswith("win"):
        return "windows"
    return PLATFORM


def hostname() -> str:
    return socket.gethostname()


def machine_uuid() -> str:
    """The DMI product UUID where the platform has one, else ``""``."""
    if PLATFORM.startswith("linux"):
        from megabus.agent.sysinfo_linux import dmi_uuid

        return dmi_uuid()
    return ""


def addresses() -> tuple[list[str], list[str]]:
    """(IPs, MACs) of the guest's interfaces, loopback left out."""
    if PLATFORM.startswith("linux"):
        from megabus.agent.sysinfo_linux import interface_addresses

        return interface_addresses()
    try:
        ips = sorted({str(ai[4][0]) for ai in socket.getaddrinfo(socket.gethostname(), None)})
    except OSError:
        ips = []
    return [ip for ip in ips if not ip.startswith("127.") and ip != "::1"], []


def uuid_from(given: str, path: str) -> str:
    """The agent's UUID: given on the command line, else DMI, else ``<path>/uuid`` (lower case)."""
    if given:
        return given.lower()
    found = machine_uuid()
    if not found:
        try:
            with open(os.path.join(path, "uuid")) as fh:
                found = fh.read().strip()
        except OSError:
            found = ""
    return found.lower()
