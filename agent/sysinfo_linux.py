"""The Linux-only calls of the agent: DMI UUID, interface addresses (ioctl, /proc, /sys)."""

from __future__ import annotations

import fcntl
import os
import socket
import struct

_SIOCGIFADDR = 0x8915
_DMI_UUID = "/sys/class/dmi/id/product_uuid"


def dmi_uuid() -> str:
    try:
        with open(_DMI_UUID) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _ipv4(name: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
        except OSError:
            return ""
    return socket.inet_ntoa(packed[20:24])


def _ipv6() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    try:
        with open("/proc/net/if_inet6") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 6:
                    continue
                raw = parts[0]
                addr = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(raw))
                out.setdefault(parts[5], []).append(addr)
    except (OSError, ValueError):
        pass
    return out


def interface_addresses() -> tuple[list[str], list[str]]:
    """(IPs, MACs) of every interface but loopback, in interface order."""
    ips: list[str] = []
    macs: list[str] = []
    v6 = _ipv6()
    for _index, name in socket.if_nameindex():
        if name == "lo":
            continue
        try:
            with open(os.path.join("/sys/class/net", name, "address")) as fh:
                mac = fh.read().strip()
        except OSError:
            mac = ""
        if mac and mac != "00:00:00:00:00:00":
            macs.append(mac)
        ip = _ipv4(name)
        if ip:
            ips.append(ip)
        ips.extend(v6.get(name, []))
    return ips, macs
