"""Helpers for the ``router`` family tests: VMs without a runtime, guests driven through cc.

:func:`table_vm` puts a VM record in a node's table (its NICs from a real
``vm config net``) without starting anything, for the tests of texts and
errors. :class:`Guests` launches real VMs from the router images on a test
node (``cnode``) and runs commands in them through cc, as a user would:
``cc filter uuid=...``, ``cc exec``, then the response files. It also waits
for a router to have applied its last commit (the ``minirouter -u`` command's
exit code).
"""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from nodes import MiniNode

from megabus.handlers.cc import responses
from megabus.handlers.language.lexer import go_quote
from megabus.handlers.model.vm import DEFAULT_NAMESPACE, VM, VMType

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "build" / "images"


def router_images(kvm: bool = False) -> Path:
    """The images folder with ``minirouterfs`` (and the KVM router), built or found current."""
    args = [sys.executable, str(REPO / "ops" / "router_image.py"), "--dest", str(IMAGES)]
    if not kvm:
        args.append("--no-kvm")
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=900)
    assert proc.returncode == 0, f"ops/router_image.py failed:\n{proc.stderr}"
    return Path(proc.stdout.strip().splitlines()[-1])


async def table_vm(
    node: MiniNode,
    name: str,
    nets: str,
    kind: VMType = VMType.CONTAINER,
    namespace: str = DEFAULT_NAMESPACE,
) -> VM:
    """A VM record named ``name`` with the NICs of ``vm config net <nets>``; nothing runs."""
    errors = await node.errors(f"namespace {namespace} vm config net {nets}")
    assert errors == [], errors
    cfg = copy.deepcopy(node.state.namespace(namespace).vm_config)
    table = node.state.vms
    vm = VM(
        id=table.new_id(),
        name=name,
        namespace=namespace,
        type=kind,
        config=cfg,
        uuid=str(uuid.uuid4()),
        instance_path=f"/nonexistent/{name}",
    )
    table.add(vm)
    return vm


@dataclass
class Reply:
    """One guest's answer to one command."""

    code: int
    stdout: str
    stderr: str


@dataclass
class Guests:
    """Real VMs on a test node, and commands run in them through cc."""

    node: MiniNode

    @property
    def files(self) -> Path:
        return Path(self.node.state.settings.files_dir)

    def vm(self, name: str) -> VM:
        vm = self.node.state.vms.find(DEFAULT_NAMESPACE, name)
        assert vm is not None, f"no vm {name}"
        return vm

    async def ok(self, *lines: str) -> None:
        """Run lines that must not fail."""
        for line in lines:
            errors = await self.node.errors(line)
            assert errors == [], f"{line}: {errors}"

    async def configure(self, router: str, *lines: str) -> None:
        """``router <router> <line>`` for each line, then ``router <router> commit``."""
        await self.ok(*(f"router {router} {line}" for line in lines), f"router {router} commit")

    async def reply(self, cmd_id: int, name: str, limit: float = 60.0) -> Reply:
        """The VM ``name``'s answer to cc command ``cmd_id``, once it is in."""
        where = Path(responses.response_dir(str(self.files), DEFAULT_NAMESPACE, cmd_id))
        where = where / self.vm(name).uuid
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        # the answer is a file the node writes when the agent responds: polling is the way
        while not (where / "exitcode").exists():
            assert loop.time() < deadline, f"no answer from {name} to cc command {cmd_id}"
            await asyncio.sleep(0.1)

        def read(part: str) -> str:
            path = where / part
            return path.read_text() if path.exists() else ""

        return Reply(int(read("exitcode")), read("stdout"), read("stderr"))

    async def sh(self, name: str, script: str, limit: float = 60.0) -> Reply:
        """Run ``bash -c script`` in the VM ``name`` through cc; its answer."""
        await self.ok(f"cc filter uuid={self.vm(name).uuid}")
        try:
            batches = await self.node.run(f"cc exec bash -c {go_quote(script)}")
        finally:
            await self.ok("clear cc filter")
        resps = [r for b in batches for r in b]
        assert not [r.error for r in resps if r.error], resps
        (cmd_id,) = [r.data for r in resps if isinstance(r.data, int)]
        return await self.reply(cmd_id, name, limit)

    async def must(self, name: str, script: str, limit: float = 60.0) -> str:
        """:meth:`sh` that must exit 0; its stdout."""
        got = await self.sh(name, script, limit)
        assert got.code == 0, f"{name}: {script}: exit {got.code}\n{got.stdout}{got.stderr}"
        return got.stdout

    async def applied(self, router: str, limit: float = 90.0) -> Reply:
        """The answer of ``router``'s last ``minirouter -u`` (its last commit's last command)."""
        srv = await self.node.state.cc.server(DEFAULT_NAMESPACE)
        prefix = f"minirouter-{router}"
        ids = [i for i, s in srv.store.commands.items() if s.record.prefix == prefix]
        assert len(ids) == 3, f"{prefix}: commands {sorted(ids)}"
        return await self.reply(max(ids), router, limit)

    async def until(self, name: str, script: str, want: str, limit: float = 60.0) -> str:
        """Run ``script`` in ``name`` until its stdout contains ``want``; that stdout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            got = await self.sh(name, script)
            if want in got.stdout:
                return got.stdout
            assert loop.time() < deadline, f"{name}: {script}: never saw {want!r}:\n{got}"
            await asyncio.sleep(1.0)
