"""QoS on taps with ``tc``: 2.8's tbf for rate, netem for loss and delay.

QoS shapes the *egress* of the host side of a VM's NIC (a tap, or a
container's veth), i.e. what the VM receives, as 2.8 does. Rate and
loss/delay exclude each other (one root qdisc): setting one drops the other.
A tap's settings live on the bridge table's :class:`Tap` (``tap.qos``), as
``["rate 1mbit"]`` or ``["loss 5", "delay 100ms"]`` in 2.8's order, so they
follow the tap through ``vm net connect`` and go with it.

Loss and delay need the ``netem`` qdisc (``sch_netem``). A kernel without it
makes ``tc`` answer "Specified qdisc kind is unknown"; that becomes a clear
error naming netem. ``tc qdisc replace`` is atomic, so a failed change leaves
the tap's previous qdisc and settings as they were (2.8 cleared them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from typing import TYPE_CHECKING

from megabus.bus.errors import CommandError
from megabus.handlers.net._bridges import Bridges

if TYPE_CHECKING:
    from megabus.handlers.model.vm import VM
    from megabus.handlers.net._bridges import Tap

logger = logging.getLogger(__name__)

TC = "tc"
#: Seconds one ``tc`` call may take.
TIMEOUT = 30.0
#: tc's answer when the kernel lacks a qdisc kind.
UNKNOWN_QDISC = "Specified qdisc kind is unknown"
RATE_UNITS = {"kbit": 1000, "mbit": 1000_000, "gbit": 1000_000_000}


def clock_ticks() -> int:
    """The kernel's USER_HZ (2.8: ``sysconf(_SC_CLK_TCK)``), which sizes tbf's burst."""
    try:
        return os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 100


def tbf_args(tap: str, rate: str) -> list[str]:
    """2.8's tbf line for ``rate`` (``<n>kbit|mbit|gbit``): burst is one tick's worth."""
    digits = rate.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = rate[len(digits) :]
    if not digits.isdigit() or unit not in RATE_UNITS:
        raise CommandError("invalid rate unit")
    bits = int(digits) * RATE_UNITS[unit]
    burst = f"{bits / clock_ticks() / 1000:.3f}kbit"
    return ["qdisc", "replace", "root", "dev", tap, "tbf", "rate", rate, "burst", burst,
            "latency", "20ms"]  # fmt: skip


def netem_args(tap: str, delay: str, loss: str) -> list[str]:
    """2.8's netem line: ``[delay <d>] [loss <p>]``."""
    args = ["qdisc", "replace", "root", "dev", tap, "netem"]
    if delay:
        args += ["delay", delay]
    if loss:
        args += ["loss", loss]
    return args


def settings(qos: list[str]) -> dict[str, str]:
    """``["loss 5", "delay 100ms"]`` as ``{"loss": "5", "delay": "100ms"}``."""
    return dict(entry.split(" ", 1) for entry in qos)


def ordered(values: dict[str, str]) -> list[str]:
    """Settings in 2.8's order (rate, loss, delay), as ``tap.qos`` holds them."""
    return [f"{k} {values[k]}" for k in ("rate", "loss", "delay") if values.get(k)]


async def tc(*args: str) -> tuple[int, str]:
    """Run ``tc <args>``; its exit status and combined output."""
    binary = shutil.which(TC, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if binary is None:
        raise CommandError('exec: "tc": executable file not found in $PATH (apt-get install -y '
                           "iproute2)")  # fmt: skip
    logger.debug("running tc %s", " ".join(args))
    proc = await asyncio.create_subprocess_exec(
        binary,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise CommandError(f"tc {' '.join(args)}: no answer within {TIMEOUT:g}s") from None
    return proc.returncode or 0, out.decode(errors="replace").strip()


async def add(tap: Tap, kind: str, value: str) -> None:
    """Add ``kind`` (rate, loss or delay) = ``value`` to ``tap`` (2.8's ``addQos``).

    Raises:
        CommandError: tc refused (its output), or netem is missing for loss/delay.
    """
    values = settings(tap.qos)
    if kind == "rate":
        if values.get("loss") or values.get("delay"):
            logger.warning("replacing loss/delay qos with rate on %s", tap.name)
        values = {"rate": value}
        args = tbf_args(tap.name, value)
    else:
        if values.pop("rate", ""):
            logger.warning("replacing rate qos with loss/delay on %s", tap.name)
        values[kind] = value
        args = netem_args(tap.name, values.get("delay", ""), values.get("loss", ""))
    code, out = await tc(*args)
    if code != 0:
        if UNKNOWN_QDISC in out and "netem" in args:
            raise CommandError(
                f"qos {kind} needs the netem qdisc (kernel module sch_netem), which this "
                f"host's kernel does not have: tc: {out}"
            )
        raise CommandError(out or f"tc exited with {code}")
    tap.qos = ordered(values)
    logger.info("qos on %s: %s", tap.name, " ".join(tap.qos))


async def remove(tap: Tap) -> None:
    """Drop every setting of ``tap`` (2.8's ``removeQos``); nothing to do without any."""
    if not tap.qos:
        return
    code, out = await tc("qdisc", "del", "dev", tap.name, "root")
    if code != 0:
        raise CommandError(out or f"tc exited with {code}")
    tap.qos = []


def describe(vm: VM, net: Bridges | None) -> list[str]:
    """The ``vm info`` ``qos`` entries of ``vm``: ``["0: loss 5 delay 100ms", ...]``.

    2.8's ``QosString``: one entry per NIC that has settings, by NIC index;
    ``net`` is the bridge table of the node that runs ``vm``.
    """
    out: list[str] = []
    for i, nic in enumerate(vm.config.networks):
        tap = net.any_tap(nic.tap) if net is not None and nic.tap else None
        if tap is not None and tap.qos:
            out.append(f"{i}: {' '.join(tap.qos)}")
    return out
