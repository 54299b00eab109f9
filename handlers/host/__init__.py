"""Host-level mechanisms: ``optimize``, ``check``, ``nuke`` and ``debug``'s profiles.

* :class:`Optimizer`: KSM (one setting of the host), CPU affinity and
  hugepages per namespace, following the node's VMs;
* :func:`check`: the programs and kernel features megabus needs, 2.8's texts;
* :func:`nuke_scan`, :func:`nuke_adopt`, :func:`nuke_clean`: what megabus
  left on the host, found from the base directory and removed;
* :mod:`debug <megabus.handlers.host._debug>` (:class:`Profiler`,
  :func:`debug_info`, ...): memory and CPU profiles, task stacks.

Whether the host has a feature (KSM, hugetlbfs, FUSE) is found when the
command runs, and a missing one is a clear error, never a crash at start.
The engine knows the node only through what it is handed (the VM table,
the bridge table); other packages import from here, never from the modules.
"""

from __future__ import annotations

from megabus.handlers.host._affinity import Affinity, cpu_filter
from megabus.handlers.host._check import check
from megabus.handlers.host._debug import HEADER as DEBUG_HEADER
from megabus.handlers.host._debug import Profiler, stacks, write_memory, write_profile, write_text
from megabus.handlers.host._debug import info as debug_info
from megabus.handlers.host._hugepages import check as check_hugepages
from megabus.handlers.host._hugepages import reserved_pages
from megabus.handlers.host._ksm import Ksm
from megabus.handlers.host._nuke import Found as NukeFound
from megabus.handlers.host._nuke import adopt as nuke_adopt
from megabus.handlers.host._nuke import clean as nuke_clean
from megabus.handlers.host._nuke import scan as nuke_scan
from megabus.handlers.host._optimize import Optimizer

__all__ = [
    "DEBUG_HEADER",
    "Affinity",
    "Ksm",
    "NukeFound",
    "Optimizer",
    "Profiler",
    "check",
    "check_hugepages",
    "cpu_filter",
    "debug_info",
    "nuke_adopt",
    "nuke_clean",
    "nuke_scan",
    "reserved_pages",
    "stacks",
    "write_memory",
    "write_profile",
    "write_text",
]
