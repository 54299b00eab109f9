"""A VM's instance directory ``<base>/<id>`` and its namespace link, as 2.8 keeps them.

Both runtimes (KVM and container) write the same files there: ``name``,
``state`` (on every state change), ``config`` (the ``vm config`` lines that
rebuild the VM) and the link ``<base>/namespaces/<ns>/<uuid>`` that recovery
follows back to the instance.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

from megabus.config.settings import Settings
from megabus.handlers.model.vm import VM, VMState

logger = logging.getLogger(__name__)


class InstanceFiles:
    """The files of one VM's instance directory; a runtime's base class."""

    vm: VM
    settings: Settings

    @property
    def path(self) -> str:
        """``<base>/<id>``."""
        return self.vm.instance_path

    def _ns_link(self) -> str:
        return os.path.join(self.settings.base, "namespaces", self.vm.namespace, self.vm.uuid)

    def _link_namespace(self) -> None:
        """Point ``<base>/namespaces/<ns>/<uuid>`` at the instance directory."""
        link = self._ns_link()
        os.makedirs(os.path.dirname(link), exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink(self.path, link)

    def _write_file(self, name: str, text: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(text)

    def _write_name(self) -> None:
        self._write_file("name", self.vm.name)

    def _write_config(self) -> None:
        self._write_file("config", "".join(line + "\n" for line in self.vm.config.write_config()))

    def _write_state(self, vm: VM, old: VMState) -> None:
        # a few bytes on the local disk; 2.8 writes it synchronously too
        try:
            self._write_file("state", str(vm.state))
        except OSError as err:
            logger.debug("vm %d: state not written: %s", vm.id, err)

    def _begin_relaunch(self) -> None:
        """2.8's ``Start`` of a QUIT or ERROR VM: clear the error, back to BUILDING."""
        vm = self.vm
        logger.info("relaunching VM: %d", vm.id)
        vm.tags.pop("error", None)
        vm.set_state(VMState.BUILDING)
        vm.launched = time.time()

    def _unlink_namespace(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._ns_link())
