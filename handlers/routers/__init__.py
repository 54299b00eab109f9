"""Routers on the node side: each router VM's pending config, its two texts, its delivery.

2.8 keeps one :class:`Router` per VM in the namespace on the host that runs
the VM (``Namespace.routers`` here, keyed by VM ID); ``router <vm> ...``
changes it, ``router <vm>`` prints it (:func:`summary`) and ``router <vm>
commit`` writes the minirouter config (:func:`config`) and hands it to the
VM's agent through its namespace's cc server (:func:`commit`). The router
daemon in the guest (:mod:`megabus.router`) applies it.

What the engine needs of the node is the VM (model) and the namespace's
:class:`~megabus.handlers.cc.CcServer`; it knows nothing of command parsing.

Modules: ``_model`` (the config and 2.8's rules for changing it), ``_text``
(the byte-exact summary and config file), ``_deliver`` (the file and the cc
commands), ``_goaddr`` (Go's address parsing, as 2.8's checks use it).
"""

from __future__ import annotations

from megabus.handlers.model.topology import ROUTER_TAG
from megabus.handlers.model.vm import VM
from megabus.handlers.routers._deliver import GUEST_FILES, commit, file_name
from megabus.handlers.routers._model import (
    FW_ACTIONS,
    NO_ROUTER_ID,
    Bgp,
    Dhcp,
    Fw,
    FwChain,
    FwRule,
    Ospf,
    Router,
    check_endpoint,
    go_atoi,
)
from megabus.handlers.routers._text import LOG_TAG, config, summary


def find_or_create(routers: dict[int, Router], vm: VM) -> Router:
    """2.8's ``FindOrCreateRouter``: the VM's router, made (and the VM tagged) on first use."""
    found = routers.get(vm.id)
    if found is None:
        found = routers[vm.id] = Router.for_vm(vm)
        vm.tags[ROUTER_TAG] = str(vm.id)
    return found


__all__ = [
    "FW_ACTIONS",
    "GUEST_FILES",
    "LOG_TAG",
    "NO_ROUTER_ID",
    "ROUTER_TAG",
    "Bgp",
    "Dhcp",
    "Fw",
    "FwChain",
    "FwRule",
    "Ospf",
    "Router",
    "check_endpoint",
    "commit",
    "config",
    "file_name",
    "find_or_create",
    "go_atoi",
    "summary",
]
