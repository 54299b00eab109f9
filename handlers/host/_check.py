"""``check``: the programs and kernel features megabus needs on this host (2.8's ``checkExternal``).

2.8 stopped at the first failing group (kernel, programs, versions, Open
vSwitch); this reports every failure at once, one line each, in 2.8's texts
(``exec: "x": executable file not found in $PATH``, ``dnsmasq version does
not meet minimum: 2.60 < 2.73``). Success prints nothing, as in 2.8. What is
optional (KVM acceleration, FUSE for ``cc mount`` of KVM guests, KSM,
hugetlbfs) is logged as a warning, as 2.8 warns about the kvm module.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from collections.abc import Callable

from megabus.bus.errors import CommandError
from megabus.handlers.net import Bridges

logger = logging.getLogger(__name__)

MIN_QEMU = (1, 6)
MIN_DNSMASQ = (2, 73)
MIN_OVS = (1, 11)
#: overlayfs (container snapshots) since 3.18, as 2.8.
MIN_KERNEL = (3, 18)

#: What the node runs, by what uses it: VMs and disks, host DHCP/DNS, Open vSwitch,
#: qos, captures, ``tap ... dhcp``, ``deploy``.
PROGRAMS = (
    "qemu-img", "dnsmasq", "ovs-vsctl", "ovs-ofctl", "tc", "tcpdump", "dhclient", "ssh", "scp",
)  # fmt: skip
#: 2.8 named ``kvm``; a plain QEMU binary does as well (the accelerator is a setting).
QEMU = ("qemu-system-x86_64", "kvm")

#: Kernel features the node cannot work without: (what, how to see it).
Feature = tuple[str, Callable[[], bool]]


def _has_fs(name: str) -> bool:
    try:
        with open("/proc/filesystems") as fh:
            return any(line.split()[-1] == name for line in fh if line.strip())
    except OSError:
        return False


REQUIRED: tuple[Feature, ...] = (
    ("overlay filesystem (container snapshots)", lambda: _has_fs("overlay")),
    ("tun/tap device /dev/net/tun (VM taps)", lambda: os.path.exists("/dev/net/tun")),
    ("network namespaces (containers)", lambda: os.path.exists("/proc/self/ns/net")),
    ("mount namespaces (containers)", lambda: os.path.exists("/proc/self/ns/mnt")),
    ("pid namespaces (containers)", lambda: os.path.exists("/proc/self/ns/pid")),
    ("cgroups (container limits)", lambda: _has_fs("cgroup") or _has_fs("cgroup2")),
)
OPTIONAL: tuple[Feature, ...] = (
    ("/dev/kvm: KVM guests run under TCG (slow)", lambda: os.path.exists("/dev/kvm")),
    ("FUSE (/dev/fuse): no cc mount of KVM guests", lambda: os.path.exists("/dev/fuse")),
    ("KSM: no optimize ksm", lambda: os.path.isdir("/sys/kernel/mm/ksm")),
    ("hugetlbfs: no optimize hugepages", lambda: _has_fs("hugetlbfs")),
)


def parse_version(name: str, text: str) -> tuple[int, ...]:
    """2.8's ``parseVersion``: ``2.89`` -> (2, 89); ``6.1.0-rc1`` stops at the first non-digit."""
    out: list[int] = []
    for part in text.split("."):
        if part.isdigit():
            out.append(int(part))
            continue
        digits = re.match(r"\d*", part)
        if digits is not None and digits.group():
            out.append(int(digits.group()))
            return tuple(out)
        raise CommandError(f"cannot parse {name} version: {text}")
    return tuple(out)


def version_error(name: str, have: tuple[int, ...], want: tuple[int, ...]) -> str:
    """2.8's ``checkVersion`` text when ``have`` is below ``want`` ("" when it is not)."""
    got = ".".join(map(str, have))
    need = ".".join(map(str, want))
    for i, minimum in enumerate(want):
        if i >= len(have) or have[i] < minimum:
            return f"{name} version does not meet minimum: {got} < {need}"
        if have[i] > minimum:
            break
    return ""


async def _output(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 30.0)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise OSError(f"{argv[0]} did not answer in 30s") from None
    if proc.returncode:
        raise OSError(f"exit status {proc.returncode}: {out.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


async def _version(name: str, argv: list[str], field: int, want: tuple[int, ...]) -> str:
    try:
        fields = (await _output(*argv)).split()
    except OSError as err:
        return f"check {name} version failed: {err}"
    if len(fields) <= field:
        return f"cannot parse {name} version: {' '.join(fields)}"
    try:
        return version_error(name, parse_version(name, fields[field]), want)
    except CommandError as err:
        return str(err)


async def check(bridges: Bridges) -> list[str]:
    """Every problem found, one line each (empty: all is well)."""
    errors: list[str] = []
    kernel = version_error("kernel", parse_version("kernel", os.uname().release), MIN_KERNEL)
    if kernel:
        errors.append(kernel)
    for what, present in REQUIRED:
        if not await asyncio.to_thread(present):
            errors.append(f"kernel feature missing: {what}")
    for what, present in OPTIONAL:
        if not await asyncio.to_thread(present):
            logger.warning("optional feature missing: %s", what)
    found: dict[str, str] = {}
    qemu = next((p for p in (shutil.which(q) for q in QEMU) if p), None)
    if qemu is None:
        errors.append(f'exec: "{QEMU[0]}": executable file not found in $PATH')
    for name in PROGRAMS:
        path = shutil.which(name)
        if path is None:
            errors.append(f'exec: "{name}": executable file not found in $PATH')
        else:
            logger.info("%s found at: %s", name, path)
            found[name] = path
    if "dnsmasq" in found:
        errors.append(await _version("dnsmasq", [found["dnsmasq"], "-v"], 2, MIN_DNSMASQ))
    if "ovs-vsctl" in found:
        errors.append(await _version("ovs", [found["ovs-vsctl"], "-V"], 3, MIN_OVS))
        try:
            await bridges.switch()
        except CommandError:
            errors.append("openvswitch does not appear to be running")
    if qemu is not None:
        errors.append(await _version("qemu", [qemu, "-version"], 3, MIN_QEMU))
    return [e for e in errors if e]
