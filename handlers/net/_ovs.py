"""An async adapter over ``ovs-vsctl``: finds the switch and batches port changes.

Why ``ovs-vsctl`` and not the OVSDB protocol: minimega 2.8 speaks to Open
vSwitch through ``ovs-vsctl`` only, and its messages (``already exists``,
``no port named``) are what 2.8's errors are made of. ``ovs-vsctl`` also
waits until ``ovs-vswitchd`` has applied a change (so a host tap exists in
the kernel when the call returns), which over raw OVSDB means watching
``cur_cfg`` by hand, and it needs no Python OVSDB library in the venv. Its
one cost is a process per call: 2.8 ran one per port, so deleting 250 taps
took 90 s. Here concurrent changes are *group committed*: while one
``ovs-vsctl`` runs, every change submitted meanwhile queues, and the queue
goes out as the next single ``ovs-vsctl -- cmd1 -- cmd2 ...`` (one OVSDB
transaction, one ``ovs-vswitchd`` reconfiguration). Callers with many changes
at hand (:meth:`Switch.transact` with a list) get one transaction directly.
OVSDB transactions are atomic, so when a merged batch fails its submitters'
changes are retried one submitter at a time, and each gets its own error.

Which switch: ``MEGABUS_OVS_DB`` (an ``ovs-vsctl --db`` target), else the
``db.sock`` in ``MEGABUS_OVS_RUNDIR`` when set (and only there), else the
first found in ``OVS_RUNDIR``, ``/run/openvswitch`` (the system one) and
``/run/megabus-ovs`` (what ``ops/ovs.sh`` starts, and a node where none runs:
``_ovsd.py``). Like 2.8's ``CheckOVS`` it sets
``other_config:vlan-limit=2`` first, which lets QinQ ports double-tag.
Bridges get ``datapath_type=netdev`` (the userspace datapath) when the
``openvswitch`` kernel module is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from megabus.bus.errors import MegabusError

logger = logging.getLogger(__name__)

VSCTL = "ovs-vsctl"
#: Seconds ``ovs-vsctl`` may take (it is told the same, so it gives up first).
TIMEOUT = 60.0
#: At most this many commands go into one merged transaction (argv stays small).
MAX_BATCH = 2000
SYSTEM_RUNDIR = "/run/openvswitch"
#: Where ``ops/ovs.sh`` runs its private switch by default.
PRIVATE_RUNDIR = "/run/megabus-ovs"
KERNEL_MODULE = Path("/sys/module/openvswitch")

#: One ``ovs-vsctl`` command with its arguments, e.g. ``["add-port", "br", "tap"]``.
VsctlCommand = Sequence[str]


class OvsError(MegabusError):
    """``ovs-vsctl`` failed; ``str()`` is 2.8's ``ovs cmd failed: [args] output``."""

    def __init__(self, args: Sequence[str], output: str) -> None:
        self.args_list = list(args)
        self.output = output
        super().__init__(f"ovs cmd failed: [{' '.join(args)}] {output}")

    @property
    def already_exists(self) -> bool:
        """Whether OVS refused because the bridge or port exists (2.8 ``errAlreadyExists``)."""
        return "already exists" in self.output

    @property
    def no_such_port(self) -> bool:
        """Whether OVS refused because the port is unknown (2.8 ``errNoSuchPort``)."""
        return "no port named" in self.output


class OvsMissingError(OvsError):
    """No Open vSwitch database could be found or reached."""

    def __init__(self, text: str) -> None:
        self.args_list = []
        self.output = text
        Exception.__init__(self, text)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def find_db(environ: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """The ``--db`` target of the switch to use and its run directory (if known).

    Raises:
        OvsMissingError: no ``db.sock`` anywhere.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("MEGABUS_OVS_DB")
    if explicit:
        return explicit, None
    tried: list[str] = []
    # MEGABUS_OVS_RUNDIR names one switch (a lab host's): never fall back to another
    own = env.get("MEGABUS_OVS_RUNDIR")
    candidates = (own,) if own else (env.get("OVS_RUNDIR"), SYSTEM_RUNDIR, PRIVATE_RUNDIR)
    for rundir in candidates:
        if not rundir or rundir in tried:
            continue
        tried.append(rundir)
        sock = os.path.join(rundir, "db.sock")
        if _is_socket(sock):
            return f"unix:{sock}", rundir
    raise OvsMissingError(
        "openvswitch is not running: no db.sock in "
        + ", ".join(tried)
        + " (start one with ops/ovs.sh)"
    )


def kernel_datapath() -> bool:
    """Whether the ``openvswitch`` kernel module is loaded (else: userspace datapath)."""
    return KERNEL_MODULE.exists()


@dataclass
class _Pending:
    commands: list[list[str]]
    future: asyncio.Future[None]


@dataclass
class Switch:
    """One Open vSwitch, reached through ``ovs-vsctl --db=<db>``."""

    db: str
    rundir: str | None = None
    #: ``netdev`` (userspace) or ``system`` (kernel); what new bridges get.
    datapath: str = "system"
    _queue: list[_Pending] = field(default_factory=list, repr=False)
    _flusher: asyncio.Task[None] | None = field(default=None, repr=False)
    #: Number of ``ovs-vsctl`` processes run (tests and benchmarks read it).
    runs: int = 0

    # -- running ovs-vsctl ------------------------------------------------------

    def _env(self) -> dict[str, str] | None:
        if self.rundir is None:
            return None
        # ovs-vsctl puts nothing there, but any helper it execs should agree
        return {**os.environ, "OVS_RUNDIR": self.rundir}

    async def vsctl(self, *args: str, wait: float = TIMEOUT) -> str:
        """Run ``ovs-vsctl <args>`` once and return its standard output.

        Raises:
            OvsError: non-zero exit (with its combined output), or no answer
                within ``wait`` seconds.
        """
        argv = [VSCTL, f"--db={self.db}", f"--timeout={max(1, int(wait))}", *args]
        logger.debug("running %s", argv)
        self.runs += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env(),
            )
        except FileNotFoundError:
            raise OvsMissingError(
                f"{VSCTL} not found: install openvswitch-switch (apt-get install -y "
                "openvswitch-switch)"
            ) from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), wait + 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise OvsError(args, f"no answer within {wait:g}s") from None
        if proc.returncode != 0:
            text = (out + err).decode(errors="replace").strip()
            raise OvsError(args, text)
        if err:
            # e.g. "Error detected while setting up 'x'": the change is made all the same
            logger.info("ovs-vsctl %s: %s", " ".join(args), err.decode(errors="replace").strip())
        return out.decode(errors="replace")

    @staticmethod
    def join(commands: Sequence[VsctlCommand]) -> list[str]:
        """``-- cmd1 -- cmd2 ...``: many commands as one ``ovs-vsctl`` transaction."""
        args: list[str] = []
        for cmd in commands:
            args += ["--", *cmd]
        return args

    async def transact(self, commands: Sequence[VsctlCommand]) -> None:
        """Apply ``commands`` (which print nothing) atomically, merged with concurrent callers.

        Raises:
            OvsError: this caller's own commands failed.
        """
        if not commands:
            return
        loop = asyncio.get_running_loop()
        pending = _Pending([list(c) for c in commands], loop.create_future())
        self._queue.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="ovs-vsctl-batch")
        # the flusher owns the change once queued: a cancelled caller does not undo it
        await asyncio.shield(pending.future)

    async def _flush(self) -> None:
        while self._queue:
            batch: list[_Pending] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].commands) <= MAX_BATCH):
                item = self._queue.pop(0)
                batch.append(item)
                size += len(item.commands)
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        if len(batch) > 1:
            logger.debug("merging %d callers into one ovs-vsctl transaction", len(batch))
            try:
                await self.vsctl(*self.join([c for p in batch for c in p.commands]))
            except OvsError:
                pass  # fall through: one transaction per caller, so each gets its own error
            else:
                for p in batch:
                    if not p.future.done():
                        p.future.set_result(None)
                return
        for p in batch:
            try:
                await self.vsctl(*self.join(p.commands))
            except OvsError as err:
                if not p.future.done():
                    p.future.set_exception(err)
            else:
                if not p.future.done():
                    p.future.set_result(None)

    async def close(self) -> None:
        """Wait for queued changes to be applied."""
        if self._flusher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._flusher, TIMEOUT * 2)
            self._flusher = None

    # -- the few operations everyone needs ----------------------------------------

    async def check(self) -> None:
        """2.8's ``CheckOVS``: allow two VLAN tags (QinQ); fails when OVS is down."""
        await self.vsctl("set", "Open_vSwitch", ".", "other_config:vlan-limit=2")

    async def add_bridge(self, name: str) -> bool:
        """Create bridge ``name``; ``False`` when it already existed (preexisting).

        Raises:
            OvsError: any other failure.
        """
        cmd = ["add-br", name]
        if self.datapath != "system":
            cmd = [*cmd, "--", "set", "bridge", name, f"datapath_type={self.datapath}"]
        try:
            await self.vsctl(*cmd)
        except OvsError as err:
            if err.already_exists:
                return False
            raise
        return True

    async def del_bridge(self, name: str) -> None:
        """Delete bridge ``name`` (its ports go with it)."""
        await self.vsctl("del-br", name)

    async def list_ports(self, bridge: str) -> list[str]:
        """The ports of ``bridge``, sorted (as ``ovs-vsctl list-ports``)."""
        return (await self.vsctl("list-ports", bridge)).split()

    async def get(self, table: str, record: str, column: str) -> str:
        """One column of one record, as ``ovs-vsctl get`` prints it (stripped)."""
        return (await self.vsctl("get", table, record, column)).strip()

    async def iface_types(self) -> set[str]:
        """The interface types this switch supports (``vxlan``, ``gre``, ...)."""
        text = await self.get("Open_vSwitch", ".", "iface_types")
        return {t.strip().strip('"') for t in text.strip("[]").split(",") if t.strip()}


#: The switch found by :func:`get_switch`, with the event loop it was found in.
_cached: tuple[asyncio.AbstractEventLoop, Switch] | None = None


async def connect(environ: Mapping[str, str] | None = None) -> Switch:
    """Find the switch, run ``CheckOVS`` and pick the datapath (no caching).

    Raises:
        OvsMissingError: no switch found or it does not answer.
    """
    db, rundir = find_db(environ)
    env = os.environ if environ is None else environ
    datapath = env.get("MEGABUS_OVS_DATAPATH") or ("system" if kernel_datapath() else "netdev")
    switch = Switch(db=db, rundir=rundir, datapath=datapath)
    try:
        await switch.check()
    except OvsMissingError:
        raise
    except OvsError as err:
        raise OvsMissingError(f"openvswitch does not answer on {db}: {err.output}") from None
    logger.info("using Open vSwitch at %s, %s datapath", db, datapath)
    return switch


async def get_switch() -> Switch:
    """The node's switch, found on first use.

    A private switch's run directory is exported as ``OVS_RUNDIR`` to this
    process's environment (unless set), so programs the node starts
    (``shell ovs-vsctl list-ports br``, ``ovs-ofctl``) reach the same switch.
    """
    global _cached
    loop = asyncio.get_running_loop()
    # a switch belongs to one loop (its batching task does); tests run many loops
    if _cached is not None and _cached[0] is loop:
        return _cached[1]
    switch = await connect()
    if switch.rundir and switch.rundir != SYSTEM_RUNDIR:
        os.environ.setdefault("OVS_RUNDIR", switch.rundir)
    if _cached is None or _cached[0] is not loop:
        _cached = (loop, switch)
    return _cached[1]
