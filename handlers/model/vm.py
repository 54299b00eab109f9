"""The VM record: what a VM is (name, ids, config, tags) and its state machine.

A :class:`VM` is type-neutral: its :class:`VMType` says which runtime drives it
(``kvm`` now, ``container`` later) and :attr:`VM.runtime` holds that runtime's
object. States are minimega 2.8's bit flags, so ``KILLABLE`` and the other masks
keep 2.8's meaning, and only 2.8's transitions are allowed.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from megabus.handlers.model.config import VMConfig

logger = logging.getLogger(__name__)

#: The namespace a node starts in (2.8 calls it ``minimega``).
DEFAULT_NAMESPACE = "minimega"


class VMState(enum.IntFlag):
    """2.8's ``VMState`` bit flags (``vmstate.go``)."""

    BUILDING = 1
    RUNNING = 2
    PAUSED = 4
    QUIT = 8
    ERROR = 16

    def __str__(self) -> str:
        return self.name or "UNKNOWN"


#: States ``vm kill`` acts on.
KILLABLE = VMState.BUILDING | VMState.RUNNING | VMState.PAUSED
#: States ``vm flush`` acts on (and ``vm start <name>`` relaunches from).
FLUSHABLE = VMState.QUIT | VMState.ERROR

#: 2.8's transitions; anything else is a bug or a stale QMP event, and is ignored.
TRANSITIONS: dict[VMState, VMState] = {
    VMState.BUILDING: VMState.RUNNING | VMState.PAUSED | VMState.QUIT | VMState.ERROR,
    VMState.RUNNING: VMState.PAUSED | VMState.QUIT | VMState.ERROR,
    VMState.PAUSED: VMState.RUNNING | VMState.QUIT | VMState.ERROR,
    # relaunch by `vm start <name>`
    VMState.QUIT: VMState.BUILDING | VMState.ERROR,
    VMState.ERROR: VMState.BUILDING | VMState.QUIT,
}


def can_transition(old: VMState, new: VMState) -> bool:
    """Whether 2.8 moves a VM from ``old`` to ``new``."""
    return old == new or bool(TRANSITIONS.get(old, VMState(0)) & new)


class VMType(enum.StrEnum):
    """The kinds of VM; each has its own runtime module."""

    KVM = "kvm"
    CONTAINER = "container"


@dataclass
class QueuedVMs:
    """One ``vm launch`` waiting for the scheduler: names (``""`` = unnamed) and a config copy."""

    names: list[str]
    type: VMType
    config: VMConfig


#: Called after every state change with the VM and its previous state.
StateListener = Callable[["VM", VMState], None]


@dataclass(eq=False)
class VM:
    """One VM on this node."""

    id: int
    name: str
    namespace: str
    type: VMType
    config: VMConfig
    uuid: str
    #: ``<base>/<id>``.
    instance_path: str
    state: VMState = VMState.BUILDING
    tags: dict[str, str] = field(default_factory=dict)
    pid: int = 0
    vnc_port: int = 0
    #: Wall-clock time of the last (re)launch; ``uptime`` counts from it.
    launched: float = field(default_factory=time.time)
    #: The type's runtime object (:class:`megabus.handlers.vms.kvm.KvmRuntime`).
    runtime: Any = None
    listeners: list[StateListener] = field(default_factory=list)

    def set_state(self, new: VMState) -> bool:
        """Move to ``new`` if 2.8 allows it; tell the listeners. Returns whether it moved."""
        old = self.state
        if old == new:
            return False
        if not can_transition(old, new):
            logger.debug("vm %d: ignoring %s -> %s", self.id, old, new)
            return False
        self.state = new
        logger.info("vm %d (%s): %s -> %s", self.id, self.name, old, new)
        for listener in list(self.listeners):
            try:
                listener(self, old)
            except Exception:  # a listener must not break the state machine
                logger.exception("vm %d: state listener failed", self.id)
        return True

    def set_error(self, message: str) -> None:
        """2.8's ``setErrorf``: ERROR state with the message in tag ``error``."""
        logger.error("vm %d (%s): %s", self.id, self.name, message)
        self.tags["error"] = message
        if not self.set_state(VMState.ERROR) and self.state != VMState.ERROR:
            # an error always wins, whatever the state was
            old, self.state = self.state, VMState.ERROR
            for listener in list(self.listeners):
                listener(self, old)

    def uptime(self) -> float:
        """Seconds since the last launch."""
        return max(0.0, time.time() - self.launched)
