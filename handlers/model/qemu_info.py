"""What a QEMU binary supports: NIC drivers, CPUs and machines.

minimega asks the binary itself (``<qemu> [-M machine] -device ?`` and so on)
once per binary and machine and caches the answer. A binary name without a
slash is looked up on ``PATH`` (the default ``kvm`` is Debian's
qemu-system-x86 binary); when it is not installed the NIC set is empty and
only a warning is logged, since containers need no QEMU.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable

from megabus.bus.errors import CommandError

logger = logging.getLogger(__name__)

#: What a QEMU binary answered: a fact of this host, so every node in the
#: process may share it (failures are not kept: the binary may appear later).
_cache: dict[tuple[str, ...], frozenset[str]] = {}
#: Questions being asked now, per event loop (two nodes in one process may
#: run on different loops, and a task belongs to its loop).
_asking: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, ...], asyncio.Task[frozenset[str]]]
] = weakref.WeakKeyDictionary()


class QemuMissingError(CommandError):
    """The QEMU binary is not on ``PATH`` (Go: executable file not found)."""


def clear_cache() -> None:
    """Forget every answer (tests, or after QEMU was installed)."""
    _cache.clear()


async def _run(argv: list[str]) -> str:
    exe = argv[0]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except FileNotFoundError:
        if "/" not in exe:
            raise QemuMissingError(f'exec: "{exe}": executable file not found in $PATH') from None
        raise CommandError(f"fork/exec {exe}: no such file or directory") from None
    except PermissionError:
        raise CommandError(f"fork/exec {exe}: permission denied") from None
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise CommandError(f"exit status {proc.returncode}")
    return out.decode(errors="replace")


async def _caps(argv: list[str], parse: Callable[[str], frozenset[str]]) -> frozenset[str]:
    key = tuple(argv)
    if key in _cache:
        return _cache[key]
    asking = _asking.setdefault(asyncio.get_running_loop(), {})
    task = asking.get(key)
    if task is None:

        async def ask() -> frozenset[str]:
            try:
                answer = parse(await _run(argv))
            finally:
                asking.pop(key, None)
            _cache[key] = answer
            return answer

        task = asking[key] = asyncio.ensure_future(ask())
    # shielded: one caller's cancellation must not fail the others' question
    return await asyncio.shield(task)


def parse_nics(text: str) -> frozenset[str]:
    """Driver names from the ``Network devices:`` section of ``-device ?``."""
    lines = text.splitlines()
    out: set[str] = set()
    try:
        start = next(i for i, line in enumerate(lines) if "Network devices:" in line)
    except StopIteration:
        return frozenset()
    for line in lines[start + 1 :]:
        fields = line.split()
        if len(fields) < 2:
            break
        out.add(fields[1].strip('",'))
    return frozenset(out)


def parse_cpus(text: str) -> frozenset[str]:
    """CPU models from ``-cpu ?``."""
    out: set[str] = set()
    for line in text.splitlines():
        if line == "Available CPUs:":
            continue
        fields = line.split()
        if not fields:
            break
        if fields[0] == "x86":
            if len(fields) >= 2:
                out.add(fields[1])
        else:
            out.add(fields[0])
    return frozenset(out)


def parse_machines(text: str) -> frozenset[str]:
    """Machine types from ``-M ?`` (the first line is a header)."""
    out: set[str] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if not fields:
            break
        out.add(fields[0])
    return frozenset(out)


def _argv(qemu: str, machine: str, *rest: str) -> list[str]:
    return [qemu, *(["-M", machine] if machine else []), *rest]


async def nics(qemu: str, machine: str = "") -> frozenset[str]:
    """The NIC drivers of ``qemu``; empty (with a warning) when it is missing.

    Any other failure raises 2.8's ``unable to determine valid QEMU nics`` error.
    """
    try:
        return await _caps(_argv(qemu, machine, "-device", "?"), parse_nics)
    except QemuMissingError as err:
        logger.warning("unable to determine valid QEMU nics -- %s", err)
        return frozenset()
    except CommandError as err:
        raise CommandError(f"unable to determine valid QEMU nics -- {err}") from None


async def cpus(qemu: str, machine: str = "") -> frozenset[str]:
    """The CPU models of ``qemu`` for ``machine``."""
    try:
        return await _caps(_argv(qemu, machine, "-cpu", "?"), parse_cpus)
    except CommandError as err:
        if not machine:
            raise CommandError(
                "unable to determine valid QEMU CPUs, try configuring machine first"
            ) from None
        raise CommandError(f"unable to determine valid QEMU CPUs -- {err}") from None


async def machines(qemu: str) -> frozenset[str]:
    """The machine types of ``qemu``."""
    try:
        return await _caps([qemu, "-M", "?"], parse_machines)
    except CommandError as err:
        raise CommandError(f"unable to determine valid QEMU machines -- {err}") from None
