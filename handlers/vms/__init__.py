"""The VM engine: KVM and container runtimes, launch, recovery, ``vm info``.

* :mod:`.launch`: a batch of VMs into the table and their runtimes started;
* :mod:`.kvm` (QEMU over QMP) and :mod:`.container` (namespaces, overlay,
  cgroups, a monitor process that outlives the node): the runtimes, given a
  :class:`~.host.VmHost` (what they need of their node);
* :mod:`.recover`: ``-recover`` after a killed node;
* :mod:`.leftovers`: what a killed node's VMs left on the host (``nuke``);
* :mod:`.info`, :mod:`.top`, :mod:`.screenshot`, :mod:`.snapshot`,
  :mod:`.devices`: what the ``vm`` commands read and do on a VM.

Other packages import from here, never from the modules.
"""

from __future__ import annotations

from megabus.handlers.vms import devices, info, launch, leftovers, screenshot, snapshot, top
from megabus.handlers.vms._container import guest_root
from megabus.handlers.vms._host import VmHost
from megabus.handlers.vms._kvm import KvmRuntime, image_format, resolve_accel, run_tool
from megabus.handlers.vms._qemu_args import qemu_args
from megabus.handlers.vms._recover import recover
from megabus.handlers.vms._recovery import Found, ReadConfig

__all__ = [
    "Found",
    "KvmRuntime",
    "ReadConfig",
    "VmHost",
    "devices",
    "guest_root",
    "image_format",
    "info",
    "launch",
    "leftovers",
    "qemu_args",
    "recover",
    "resolve_accel",
    "run_tool",
    "screenshot",
    "snapshot",
    "top",
]
