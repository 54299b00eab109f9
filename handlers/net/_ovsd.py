"""A node's own Open vSwitch: started where none runs, stopped only if started here.

As a node starts its NATS server when none listens, it starts the private
userspace switch that ``ops/ovs.sh`` starts (same run directory layout, same
daemons, same ``vlan-limit``) when :func:`~._ovs.find_db` finds no switch,
so ``vm config net`` guests get taps on a fresh machine. The daemons run
detached (``--detach``), as ``ops/ovs.sh`` runs them, so a node killed with
SIGKILL leaves a working switch for ``-recover``; a node that stops cleanly
stops what it started. A switch that already ran is never stopped.

Where: ``MEGABUS_OVS_RUNDIR`` (one switch per lab host) or
``/run/megabus-ovs``. A daemon inherits the node's network namespace, which
is what a lab host (a network namespace of its own) needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from megabus.handlers.net._ovs import PRIVATE_RUNDIR, OvsError, connect

logger = logging.getLogger(__name__)

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
DAEMONS = ("ovsdb-server", "ovs-vswitchd")
#: Seconds each step of starting or stopping may take.
STEP_TIMEOUT = 30.0


class SwitchStartError(OvsError):
    """The private switch could not be started; ``str()`` says which step failed."""

    def __init__(self, text: str) -> None:
        self.args_list = []
        self.output = text
        Exception.__init__(self, text)


async def _run(*argv: str, env: Mapping[str, str]) -> None:
    # Output goes to a file, not a pipe: a --detach daemon keeps the fds it was
    # given, so reading a pipe to EOF would wait for the daemon to exit (uvloop
    # does; the test that would have caught it: test_node_switch on uvloop).
    with tempfile.TemporaryFile() as out:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env),
        )
        try:
            await asyncio.wait_for(proc.wait(), STEP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise SwitchStartError(f"{argv[0]}: no answer within {STEP_TIMEOUT:g}s") from None
        if proc.returncode != 0:
            out.seek(0)
            text = out.read(64 * 1024).decode(errors="replace").strip()
            raise SwitchStartError(f"{' '.join(argv)}: {text}")


def _pid(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` when that process lives."""
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


@dataclass
class PrivateSwitch:
    """ovsdb-server and ovs-vswitchd that this node started in ``rundir``."""

    rundir: Path

    def _env(self) -> dict[str, str]:
        r = str(self.rundir)
        return {**os.environ, "OVS_RUNDIR": r, "OVS_DBDIR": r, "OVS_LOGDIR": r}

    async def start(self) -> None:
        """Start both daemons (as ``ops/ovs.sh start``) and wait until the switch answers.

        Raises:
            SwitchStartError: a program is missing or a step failed.
        """
        missing = [p for p in ("ovsdb-tool", *DAEMONS) if shutil.which(p) is None]
        if missing:
            raise SwitchStartError(
                f"{', '.join(missing)} not found: install openvswitch-switch "
                "(apt-get install -y openvswitch-switch)"
            )
        r, env = self.rundir, self._env()
        r.mkdir(parents=True, exist_ok=True)
        r.chmod(0o750)
        if not (r / "conf.db").exists():
            await _run("ovsdb-tool", "create", str(r / "conf.db"), SCHEMA, env=env)
        if _pid(r / "ovsdb-server.pid") is None:
            (r / "db.sock").unlink(missing_ok=True)
            await _run(
                "ovsdb-server", str(r / "conf.db"),
                f"--remote=punix:{r}/db.sock",
                "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
                f"--pidfile={r}/ovsdb-server.pid", f"--unixctl={r}/ovsdb-server.ctl",
                f"--log-file={r}/ovsdb-server.log", "-vconsole:off", "--detach",
                env=env,
            )  # fmt: skip
        db = f"--db=unix:{r}/db.sock"
        await _run("ovs-vsctl", db, "--timeout=10", "--no-wait", "init", env=env)
        if _pid(r / "ovs-vswitchd.pid") is None:
            await _run(
                "ovs-vswitchd", f"unix:{r}/db.sock",
                f"--pidfile={r}/ovs-vswitchd.pid", f"--unixctl={r}/ovs-vswitchd.ctl",
                f"--log-file={r}/ovs-vswitchd.log", "-vconsole:off", "--detach",
                env=env,
            )  # fmt: skip
        # answered once ovs-vswitchd has applied the database (ovs-vsctl waits for it)
        await _run(
            "ovs-vsctl", db, "--timeout=30", "set", "Open_vSwitch", ".",
            "other_config:vlan-limit=2", env=env,
        )  # fmt: skip

    async def stop(self) -> None:
        """Stop both daemons (vswitchd first); the database stays for the next start."""
        for daemon in reversed(DAEMONS):
            pidfile = self.rundir / f"{daemon}.pid"
            pid = _pid(pidfile)
            if pid is None:
                continue
            try:
                await _run("ovs-appctl", "-t", str(self.rundir / f"{daemon}.ctl"), "exit",
                           env=self._env())  # fmt: skip
            except SwitchStartError as err:
                logger.info("%s did not exit when asked (%s): killing it", daemon, err)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 15)
            for _ in range(100):
                if _pid(pidfile) is None:
                    break
                await asyncio.sleep(0.05)
            else:
                logger.warning("%s (pid %d) does not stop", daemon, pid)
        (self.rundir / "db.sock").unlink(missing_ok=True)


async def ensure_switch(environ: Mapping[str, str] | None = None) -> PrivateSwitch | None:
    """Start a private switch when none answers; the one started, or ``None``.

    A switch that cannot start is logged, not raised: the node serves all the
    same and its network commands give the clear "openvswitch is not running"
    error.
    """
    env = os.environ if environ is None else environ
    try:
        switch = await connect(env)
    except OvsError:
        pass
    else:
        await switch.close()
        return None
    if env.get("MEGABUS_OVS_DB"):
        return None  # a switch named by its database is someone else's to start
    private = PrivateSwitch(Path(env.get("MEGABUS_OVS_RUNDIR") or PRIVATE_RUNDIR))
    try:
        await private.start()
    except (SwitchStartError, OSError) as err:
        logger.warning("no Open vSwitch runs and none could be started: %s", err)
        await private.stop()
        return None
    logger.info("started a private Open vSwitch in %s", private.rundir)
    return private
