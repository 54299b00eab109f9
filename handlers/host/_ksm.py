"""Kernel Samepage Merging, as 2.8's ``ksm.go``: save the host's values, tune, restore.

KSM is one setting of the whole host (every namespace's VMs share it), so a
node keeps one :class:`Ksm`. Enabling saves ``run``, ``pages_to_scan`` and
``sleep_millisecs`` and writes 2.8's tuning; disabling (``clear optimize``,
or the node stopping) writes the saved values back. A kernel without KSM
(no ``/sys/kernel/mm/ksm``) is found when the command runs, not at start.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from megabus.bus.errors import CommandError
from megabus.handlers.language.goerrors import go_errno_text

logger = logging.getLogger(__name__)

KSM_DIR = "/sys/kernel/mm/ksm"
#: 2.8's tuning: scan hard, sleep little (KVM guests of one image share most pages).
TUNE = {"run": 1, "pages_to_scan": 100000, "sleep_millisecs": 10}


@dataclass
class Ksm:
    """KSM on this host as this node set it."""

    root: str = KSM_DIR
    enabled: bool = False
    #: The host's values before :meth:`enable`, written back by :meth:`disable`.
    saved: dict[str, int] = field(default_factory=dict)

    def _path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _check_host(self) -> None:
        if not os.path.isdir(self.root):
            raise CommandError(
                f"ksm: this host's kernel has no KSM ({self.root} is missing; it needs CONFIG_KSM)"
            )

    def _read(self, name: str) -> int:
        path = self._path(name)
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError as err:
            raise CommandError(f"unable to read {path}: {go_errno_text(err)}") from None
        try:
            return int(text)
        except ValueError:
            raise CommandError(f"expected int from {path}, not `{text}`") from None

    def _write(self, name: str, value: int) -> None:
        path = self._path(name)
        logger.debug("writing %d to %s", value, path)
        try:
            with open(path, "w") as fh:
                fh.write(str(value))
        except OSError as err:
            raise CommandError(f"open {path}: {go_errno_text(err)}") from None

    def value(self, name: str) -> int:
        """One KSM setting as the kernel has it now (tests read it back)."""
        return self._read(name)

    def enable(self) -> None:
        """2.8's ``ksmEnable`` (blocking: sysfs writes)."""
        if self.enabled:
            raise CommandError("ksm is already enabled")
        self._check_host()
        logger.info("saving current KSM values")
        saved = {name: self._read(name) for name in TUNE}
        logger.info("enabling ksm")
        for name, value in TUNE.items():
            self._write(name, value)
        self.saved = saved
        self.enabled = True

    def disable(self) -> None:
        """2.8's ``ksmDisable``: the saved values back (blocking)."""
        if not self.enabled:
            raise CommandError("ksm is not enabled")
        logger.info("restoring ksm values")
        for name, value in self.saved.items():
            self._write(name, value)
        self.enabled = False
