"""``nuke``: remove what megabus started on this host, from what its base directory records.

2.8's ``nuke`` destroyed its namespaces, killed every pid in a ``qemu.pid``
or ``dnsmasq.pid`` under ``-base``, deleted the bridges ``<base>/bridges``
says it created and every ``mega_tap*`` link, removed ``-base`` and exited.
This does the same for everything a megabus node leaves (also after it was
killed with SIGKILL, when only the base directory knows): QEMU, dnsmasq,
containers with their monitors, cgroups and netns links, ``cc mount``
helpers, the mounts (container overlays, ``cc mount`` points), taps and
bridges. Unlike 2.8 nothing is touched on its name alone: a process must
show it is ours (its command line names our pid file or instance), a tap or
bridge must be recorded by us, a mount must lie under the base directory or
be a recorded ``cc mount``, so another node's or the host's own things stay.

:func:`scan` reads the records first (the node's own teardown rewrites some),
:func:`adopt` hands the recorded bridges and taps to the node's bridge table,
then :func:`clean` kills, unmounts and deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field

from megabus.bus.errors import CommandError
from megabus.handlers.cc import mounts as cc_mounts
from megabus.handlers.net import Bridges, taps
from megabus.handlers.vms import leftovers

logger = logging.getLogger(__name__)


@dataclass
class Found:
    """What :func:`scan` found of this node on the host."""

    base: str
    vms: leftovers.Leftovers
    dnsmasq: list[int] = field(default_factory=list)
    #: Host taps (``<base>/taps``) and VM taps (``<base>/<id>/taps``).
    taps: list[str] = field(default_factory=list)
    #: ``cc mount`` records (possibly of a killed node).
    cc_mounts: list[cc_mounts.Record] = field(default_factory=list)
    #: Mount points under the base directory, deepest first.
    mounts: list[str] = field(default_factory=list)


def _dnsmasq(base: str) -> list[int]:
    pids: list[int] = []
    for root, _dirs, files in os.walk(base):
        if "dnsmasq.pid" in files:
            pidfile = os.path.join(root, "dnsmasq.pid")
            pid = leftovers.read_pid(pidfile)
            if pid and f"--pid-file={pidfile}" in leftovers.cmdline(pid):
                pids.append(pid)
    return pids


def _host_taps(base: str) -> list[str]:
    try:
        with open(os.path.join(base, "taps")) as fh:
            lines = fh.read().splitlines()[1:]
    except OSError:
        return []
    return [f[1] for f in (line.split() for line in lines) if len(f) >= 2]


def scan(base: str) -> Found:
    """Read the base directory and /proc (blocking)."""
    base = os.path.abspath(base)
    found = Found(base, leftovers.scan(base))
    found.dnsmasq = _dnsmasq(base)
    found.taps = _host_taps(base) + found.vms.taps
    found.cc_mounts = cc_mounts.read_records(base)
    found.mounts = sorted(
        (m for m in cc_mounts.mount_points() if m.startswith(base + os.sep)),
        key=lambda m: -m.count(os.sep),
    )
    return found


async def adopt(found: Found, bridges: Bridges) -> list[str]:
    """Take the recorded bridges and taps into ``bridges``, so its teardown deletes them."""
    errors: list[str] = []
    try:
        await bridges.adopt_recorded_bridges()
        for tap in found.taps:
            await bridges.adopt_tap(tap)
    except CommandError as err:
        # no Open vSwitch: no bridge can be left either; the links still go
        logger.info("nuke: %s", err)
    return errors


def remove_tree(base: str) -> list[str]:
    """``rm -rf <base>`` that never crosses into a filesystem mounted below it.

    An unmount that failed must not turn into deleting what is mounted there
    (a container's own filesystem, a guest's files): such a directory stays,
    and is reported.
    """
    try:
        dev = os.lstat(base).st_dev
    except FileNotFoundError:
        return []
    kept: list[str] = []
    dirs_seen: list[str] = []
    for root, dirs, files in os.walk(base):
        for name in list(dirs):
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                dirs.remove(name)
                continue
            if st.st_dev != dev or os.path.ismount(path):
                kept.append(path)
                dirs.remove(name)
        dirs_seen.append(root)
        for name in files:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(root, name))
        for name in dirs:
            path = os.path.join(root, name)
            if os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.unlink(path)
    for path in reversed(dirs_seen):
        with contextlib.suppress(OSError):
            os.rmdir(path)
    return [f"left {path}: still mounted" for path in kept]


def _kill(pids: list[int]) -> None:
    for pid in pids:
        logger.info("killing process: %d", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def clean(found: Found, bridges: Bridges) -> list[str]:
    """Kill, unmount, delete; returns what could not be done (logged too)."""
    errors: list[str] = []
    for rec in found.cc_mounts:
        errors += await asyncio.to_thread(cc_mounts.remove_record, rec)
    errors += await asyncio.to_thread(leftovers.clean, found.vms)
    await asyncio.to_thread(_kill, found.dnsmasq)
    for path in found.mounts:
        try:
            await asyncio.to_thread(cc_mounts.unmount, path, True)
        except OSError as err:
            errors.append(f"unmount {path}: {err.strerror or err}")
    try:
        await bridges.destroy_all()
    except CommandError as err:
        errors.append(str(err))
    failed = await taps.delete_links(found.taps)
    errors += [f"cannot delete link {name}" for name in failed]
    logger.info("cleaning up base path: %s", found.base)
    errors += await asyncio.to_thread(remove_tree, found.base)
    for text in errors:
        logger.error("nuke: %s", text)
    return errors
