"""The container monitor: the shim's parent process, which outlives the node.

What a running container needs from outside lives here, not in the node, so
that a node killed with SIGKILL takes nothing of the container along:

* the console: the pty master, its scrollback, ``<inst>/console`` and the
  TCP port (:class:`Console`). Were the master the node's, the node's death
  would hang up the console, and the shell on it (and with it an init that
  waits for it) would end;
* the freeze hand-shake: the container waits on a pipe only the monitor
  holds. The node writes ``g`` on its go pipe once the container is frozen;
  the monitor then closes the container's pipe, and the container execs init
  when thawed. EOF without ``g`` means the node gave up the launch (or died
  during it): the container is killed rather than left running unfrozen;
* the exit: the monitor waits for the container (a pidfd) and exits with its
  status, so the node that started it learns when it ends; a recovering
  node watches the monitor's pid instead.

Standard library only, like the shim, and no threads: after
``unshare(CLONE_NEWPID)`` the kernel refuses this process new threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from megabus.handlers.vms._container_console import Console

logger = logging.getLogger(__name__)

#: What the node writes on the go pipe once the container is frozen.
GO = b"g"


class Monitor:
    """Serves one container until it exits."""

    def __init__(self, pid: int, console: Console, go_fd: int, hold_fd: int) -> None:
        self.pid = pid
        self.console = console
        self.go_fd = go_fd
        #: The write end of the container's hold pipe; closing it releases the container.
        self.hold_fd = hold_fd
        self._released = False
        self._go_open = True

    def _on_go(self) -> None:
        try:
            data = os.read(self.go_fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if GO in data:
            self._release()
        if data:
            return
        self._close_go()
        if not self._released:
            # the node gave up (or died) before the container was frozen
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def _close_go(self) -> None:
        if self._go_open:
            self._go_open = False
            asyncio.get_running_loop().remove_reader(self.go_fd)
            os.close(self.go_fd)

    def _release(self) -> None:
        if not self._released:
            self._released = True
            os.close(self.hold_fd)

    async def run(self) -> int:
        """Serve until the container exits; returns its exit status as a shell would."""
        loop = asyncio.get_running_loop()
        exited = asyncio.Event()
        pidfd = os.pidfd_open(self.pid)
        loop.add_reader(pidfd, exited.set)
        os.set_blocking(self.go_fd, False)
        loop.add_reader(self.go_fd, self._on_go)
        await self.console.start()
        try:
            await exited.wait()
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._close_go()
        # The pidfd said it exited, so this does not block. (No thread could
        # anyway: after unshare(CLONE_NEWPID) this process cannot make threads.)
        _, wstatus = os.waitpid(self.pid, 0)  # noqa: ASYNC222
        await self.console.close()
        code = os.waitstatus_to_exitcode(wstatus)
        return 128 - code if code < 0 else code
