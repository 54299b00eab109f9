"""``router <vm> commit``: the config file, and the three cc commands that deliver it (2.8 §6.2).

The file goes to ``<files>/minirouter-<vm>`` (``<files>/<namespace>/...``
outside the default namespace); the VM's earlier delivery commands (prefix
``minirouter-<vm>``) are deleted; three new ones, for the router VM's UUID
only, remove the copy the agent kept last time, fetch the new file, and run
``minirouter -u`` on it. An agent that is not connected yet gets them when it
connects (2.8's ``router_static`` commits before its routers start), and
what ``minirouter -u`` prints about lines the router could not apply is its
cc response.
"""

from __future__ import annotations

import asyncio
import os
import posixpath

from megabus.bus import cc_messages as wire
from megabus.bus.errors import CommandError
from megabus.bus.stored import Filter
from megabus.handlers.cc import CcServer, responses
from megabus.handlers.language.goerrors import go_errno_text
from megabus.handlers.routers._model import Router
from megabus.handlers.routers._text import config

#: Where the guest's agent keeps files it was sent (2.8's miniccc default).
GUEST_FILES = "/tmp/miniccc/files"


def file_name(vm_name: str) -> str:
    """The config's file name, which is also its cc commands' prefix."""
    return f"minirouter-{vm_name}"


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    # a delivery already running reads the old file or the new one, never half of one
    os.replace(tmp, path)


async def commit(router: Router, srv: CcServer) -> str:
    """Write the router's config and queue its delivery on ``srv``; the file's path.

    Raises:
        CommandError: the file could not be written (Go's text).
    """
    vm = router.vm
    name = file_name(vm.name)
    path = os.path.join(responses.base_dir(srv.files_dir, vm.namespace), name)
    async with router.commit_lock:
        changes = router.ip_changes
        text = config(router)
        try:
            await asyncio.to_thread(_write, path, text)
        except OSError as err:
            raise CommandError(f"open {path}: {go_errno_text(err)}") from err
        await srv.delete_prefix(name)
        only = Filter(uuid=vm.uuid.lower())
        guest = posixpath.join(GUEST_FILES, name)
        for spec in (
            wire.Command(id=0, command=["rm", guest]),
            wire.Command(id=0, files_send=[name]),
            wire.Command(id=0, command=["minirouter", "-u", guest]),
        ):
            await srv.new_command(spec, prefix=name, filt=only)
        # the router gets these addresses now; the next commit leaves them alone unless
        # they change (2.8 keeps established connections so). Cleared only once the
        # delivery is queued, so that a commit that failed halfway sends them again, and
        # only if no command changed them while this one waited on the disk or the bus.
        if router.ip_changes == changes:
            router.update_ips = False
    return path
