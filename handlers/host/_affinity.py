"""CPU affinity of a namespace's VMs, as 2.8's ``affinity.go``.

Each CPU of the filter (all CPUs without one) is a set; a VM's process goes
to the set with the fewest processes. 2.8 ran ``taskset -a -p <cpu> <pid>``;
this calls ``sched_setaffinity`` on every thread of the process (what ``-a``
does), so nothing has to be installed and nothing is parsed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from megabus.bus.errors import CommandError
from megabus.handlers.language.goerrors import go_errno_text

logger = logging.getLogger(__name__)


def _atoi(text: str) -> int:
    body = text[1:] if text[:1] in "+-" else text
    if not body or not body.isascii() or not body.isdigit():
        raise CommandError(
            f'cannot expand CPU range: strconv.Atoi: parsing "{text}": invalid syntax'
        )
    return int(text)


def cpu_filter(spec: str, cpus: int) -> list[str]:
    """2.8's ``cpuRange.SplitRange``: ``[1,3-5]`` or ``2`` into CPU numbers, 0 to ``cpus - 1``.

    2.8 let a single out-of-range CPU through (``taskset`` failed later);
    here it is refused with the range's own error.

    Raises:
        CommandError: ``cannot expand CPU range: ...``.
    """
    if spec.startswith("[") != spec.endswith("]"):
        raise CommandError("cannot expand CPU range: invalid range specification")
    body = spec[1:-1] if spec.startswith("[") else spec
    found: set[int] = set()
    for part in body.split(","):
        if "-" in part.lstrip("-+"):
            limits = part.split("-")
            if len(limits) != 2:
                raise CommandError(f"cannot expand CPU range: invalid subrange {part}")
            numbers = list(range(_atoi(limits[0]), _atoi(limits[1]) + 1))
        else:
            numbers = [_atoi(part)]
        for n in numbers:
            if n < 0 or n > cpus - 1:
                raise CommandError(f"cannot expand CPU range: value of out range: {n}")
            found.add(n)
    return [str(n) for n in sorted(found)]


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError as err:
        raise CommandError(f"set affinity for {pid}: {go_errno_text(err)}") from None


def set_cpus(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` to ``cpus`` (``taskset -a -p``); a few syscalls."""
    for tid in _threads(pid):
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:
            continue  # a thread that ended meanwhile
        except OSError as err:
            raise CommandError(f"set affinity for {pid}: {go_errno_text(err)}") from None


def all_cpus() -> set[int]:
    """Every CPU of the host (a cleared affinity)."""
    return set(range(os.cpu_count() or 1))


@dataclass
class Affinity:
    """One namespace's affinity state (2.8's ``affinityEnabled/Filter/CPUSets``)."""

    enabled: bool = False
    #: CPUs the sets are made of; empty means every CPU the node may use.
    filter: list[str] = field(default_factory=list)
    #: CPU -> the processes pinned to it.
    cpusets: dict[str, list[int]] = field(default_factory=dict)

    def _init(self) -> None:
        cpus = self.filter or [str(c) for c in sorted(os.sched_getaffinity(0))]
        self.cpusets = {cpu: [] for cpu in cpus}

    def enable(self, pids: list[int]) -> None:
        """Start over with fresh sets and pin ``pids`` (2.8's ``enableAffinity``)."""
        self._init()
        for pid in pids:
            self.add(pid)
        self.enabled = True

    def add(self, pid: int) -> None:
        """Pin ``pid`` to the CPU with the fewest processes (lowest CPU on a tie)."""
        if not self.cpusets:
            raise CommandError("could not find a valid CPU set!")
        cpu = min(self.cpusets, key=lambda c: (len(self.cpusets[c]), int(c)))
        logger.debug("set affinity to %s for %d", cpu, pid)
        set_cpus(pid, {int(cpu)})
        self.cpusets[cpu].append(pid)

    def drop(self, pid: int) -> None:
        """Forget a process that ended (its CPU takes the next one)."""
        for pids in self.cpusets.values():
            if pid in pids:
                pids.remove(pid)

    def disable(self) -> None:
        """Unpin every process (2.8's ``disableAffinity``)."""
        if not self.enabled:
            raise CommandError("affinity is not enabled for this namespace")
        for pids in self.cpusets.values():
            for pid in pids:
                try:
                    set_cpus(pid, all_cpus())
                except CommandError as err:
                    logger.info("clear affinity: %s", err)  # the process is gone: fine
        self.cpusets = {}
        self.enabled = False

    def rows(self) -> list[list[str]]:
        """``optimize affinity``: ``cpu | pids``, CPUs sorted as text (2.8: ``sort.Strings``)."""
        return [
            [cpu, "[" + " ".join(str(p) for p in self.cpusets[cpu]) + "]"]
            for cpu in sorted(self.cpusets)
        ]
