"""Packet captures to pcap files: one ``tcpdump`` per capture.

2.8 opened libpcap in-process; here a ``tcpdump -w`` process per capture
does the same work outside the event loop (and cannot stall it), writing
each packet as it comes (``-U``) with the namespace's snaplen and BPF
filter. A VM capture listens on the VM's tap; a bridge capture mirrors the
whole bridge into a new host tap and listens there, as 2.8 does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from dataclasses import dataclass, field

from megabus.bus.errors import CommandError

logger = logging.getLogger(__name__)

TCPDUMP = "tcpdump"
#: 2.8's default snaplen.
DEFAULT_SNAPLEN = 1600
#: Seconds tcpdump may take to open the interface and start writing.
START_TIMEOUT = 10.0
#: Seconds to wait for tcpdump to flush and exit after SIGTERM.
STOP_TIMEOUT = 10.0


@dataclass
class Capture:
    """One running capture."""

    bridge: str
    #: ``pcap`` (netflow is not offered: see :mod:`megabus.handlers.capture`).
    kind: str
    #: ``vm:index`` for a VM capture, empty for a bridge capture.
    interface: str
    path: str
    #: The link tcpdump listens on.
    link: str
    proc: asyncio.subprocess.Process
    #: For a VM capture, the VM's id; for a bridge capture, the mirror's host tap.
    vm_id: int = -1
    mirror_tap: str = ""


async def start_pcap(link: str, path: str, snaplen: int, bpf: str) -> asyncio.subprocess.Process:
    """Start ``tcpdump`` on ``link`` writing to ``path``; returns once it listens.

    Raises:
        CommandError: tcpdump is missing, or it exited (its message).
    """
    binary = shutil.which(TCPDUMP)
    if binary is None:
        raise CommandError(
            'exec: "tcpdump": executable file not found in $PATH (apt-get install -y tcpdump)'
        )
    # -Z root: Debian's tcpdump would drop to its own user and lose the file
    # --immediate-mode: hand each packet over at once, not per ring-buffer block,
    # so a capture stopped right after the traffic still holds it
    argv = [binary, "-i", link, "-w", path, "-U", "--immediate-mode", "-s", str(snaplen)]
    argv += ["-Z", "root", "-n"]
    if bpf:
        argv.append(bpf)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    # tcpdump says "listening on <link>" once the capture runs; anything else is its error
    try:
        line = await asyncio.wait_for(proc.stderr.readline(), START_TIMEOUT)
    except TimeoutError:
        await stop(proc)
        raise CommandError(f"capture on {link}: tcpdump did not start") from None
    text = line.decode(errors="replace").strip()
    if "listening on" not in text:
        rest = b""
        with contextlib.suppress(TimeoutError):
            rest = await asyncio.wait_for(proc.stderr.read(), 2)
        await stop(proc)
        message = (text + " " + rest.decode(errors="replace")).strip()
        raise CommandError(f"capture on {link}: {message or 'tcpdump exited'}")
    logger.info("capturing %s to %s (pid %d)", link, path, proc.pid)
    return proc


async def stop(proc: asyncio.subprocess.Process) -> None:
    """Stop a tcpdump (SIGTERM makes it flush its file), killing it if it lingers."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if proc.stderr is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.stderr.read(), 1)


@dataclass
class Captures:
    """One namespace's captures and settings."""

    snaplen: int = DEFAULT_SNAPLEN
    bpf: str = ""
    mode: str = "raw"
    compress: bool = False
    running: list[Capture] = field(default_factory=list)
