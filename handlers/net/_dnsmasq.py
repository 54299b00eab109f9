"""The node's dnsmasq servers: 2.8's argument list, files, ids and teardown.

Each ``dnsmasq start`` makes ``<base>/dnsmasq_XXXX/`` with ``hostdir/``,
``dhcpdir/`` and ``dhcpoptsdir/`` and runs one ``dnsmasq`` in the
foreground, owned by the node (a watcher task per process). dnsmasq watches
those directories itself (inotify), so ``dnsmasq configure`` only rewrites
a file there; no restart. When a dnsmasq exits, for whatever reason, its
server leaves the table and its directory is removed, as in 2.8.

The DNS-leak fix (#1471): dnsmasq is given ``--resolv-file=<dir>/resolv.conf``,
a file that does not exist at first, instead of reading ``/etc/resolv.conf``.
Until ``dns upstream server`` writes that file it knows no upstream and
forwards nothing; it polls the file and picks up upstreams without a restart.

Files are replaced by rename so dnsmasq never reads half a file; the
temporary names start with a dot, which dnsmasq skips in its directories.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from megabus.bus.errors import CommandError

logger = logging.getLogger(__name__)

DNSMASQ = "dnsmasq"
#: Where Debian puts it: not on every user's PATH.
EXTRA_PATH = "/usr/sbin:/sbin"
#: Seconds a new dnsmasq may take to write its pid file (it does once it listens).
START_TIMEOUT = 10.0
#: Seconds dnsmasq may take to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT = 10.0
#: How much of dnsmasq's standard error is kept for an error message.
STDERR_KEEP = 4096


@dataclass
class Server:
    """One running dnsmasq and what ``dnsmasq configure`` gave it."""

    id: int
    addr: str
    min_range: str
    max_range: str
    path: Path
    proc: asyncio.subprocess.Process
    #: MAC -> IP (``dhcpdir/dhcp``), in the order set.
    dhcp_hosts: dict[str, str] = field(default_factory=dict)
    #: IP -> hostname (``hostdir/hosts``).
    hostnames: dict[str, str] = field(default_factory=dict)
    #: DHCP options (``dhcpoptsdir/dhcp-options``).
    options: list[str] = field(default_factory=list)
    #: Upstream DNS servers (``resolv.conf``).
    upstreams: list[str] = field(default_factory=list)
    stderr: bytes = b""
    watcher: asyncio.Task[None] | None = None
    #: Seconds-resolution mtime of the last ``resolv.conf`` we wrote.
    resolv_mtime: int = -1

    @property
    def hostdir(self) -> Path:
        return self.path / "hostdir"

    @property
    def dhcpdir(self) -> Path:
        return self.path / "dhcpdir"

    @property
    def optsdir(self) -> Path:
        return self.path / "dhcpoptsdir"

    @property
    def pidfile(self) -> Path:
        return self.path / "dnsmasq.pid"

    def pid(self) -> int:
        """The pid from ``dnsmasq.pid``, or -1 (2.8's ``dnsmasqPID``)."""
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return -1


def argv(binary: str, path: Path, addr: str, low: str, high: str, config: str) -> list[str]:
    """2.8's dnsmasq command line for a server in ``path`` (and an extra config file)."""
    args = [
        binary,
        "--keep-in-foreground",
        "--user=root",
        f"--dhcp-hostsdir={path / 'dhcpdir'}",
        f"--dhcp-optsdir={path / 'dhcpoptsdir'}",
        f"--hostsdir={path / 'hostdir'}",
        f"--pid-file={path / 'dnsmasq.pid'}",
        f"--resolv-file={path / 'resolv.conf'}",
    ]
    if addr:
        args += ["--except-interface", "lo", "--listen-address", addr]
        args += ["--bind-interfaces", "--dhcp-range", f"{low},{high}"]
        args += [f"--dhcp-leasefile={path / 'dnsmasq.leases'}"]
        args += ["--dhcp-lease-max=4294967295"]
    if config:
        args.append(f"--conf-file={config}")
    return args


def _replace(path: Path, text: str, mode: int) -> None:
    # a dot name: dnsmasq skips it while it is being written in a watched dir
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class Dnsmasqs:
    """The dnsmasq servers of one node (2.8's ``dnsmasqServers``)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.servers: dict[int, Server] = {}
        #: 2.8: one counter per process, from 0; IDs are never reused.
        self._next = 0

    def get(self, server_id: int) -> Server:
        """Server ``server_id``.

        Raises:
            CommandError: ``invalid dnsmasq ID``.
        """
        found = self.servers.get(server_id)
        if found is None:
            raise CommandError("invalid dnsmasq ID")
        return found

    def sorted(self) -> list[Server]:
        """Every server, by ID."""
        return [self.servers[k] for k in sorted(self.servers)]

    # -- start and stop ---------------------------------------------------------------

    async def start(self, addr: str, low: str, high: str, config: str) -> Server:
        """Start a dnsmasq (2.8's ``dnsmasqStart``); returns once it listens.

        Raises:
            CommandError: dnsmasq is not installed, or it exited (its message).
        """
        binary = shutil.which(DNSMASQ, path=f"{os.environ.get('PATH', '')}:{EXTRA_PATH}")
        if binary is None:
            raise CommandError(
                'exec: "dnsmasq": executable file not found in $PATH '
                "(apt-get install -y dnsmasq-base)"
            )
        path = await asyncio.to_thread(self._make_dirs)
        args = argv(binary, path, addr, low, high, config)
        logger.debug("starting dnsmasq server with command: %s", args)
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as err:
            await asyncio.to_thread(shutil.rmtree, path, True)
            raise CommandError(f"start dnsmasq: {err}") from None
        server = Server(self._next, addr, low, high, path, proc)
        self._next += 1
        self.servers[server.id] = server
        server.watcher = asyncio.create_task(self._watch(server), name=f"dnsmasq-{server.id}")
        try:
            await self._wait_ready(server)
        except CommandError:
            await self._stop(server)
            raise
        logger.info("dnsmasq %d started (pid %d) in %s", server.id, server.proc.pid, path)
        return server

    def _make_dirs(self) -> Path:
        self.base.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="dnsmasq_", dir=self.base))
        os.chmod(path, 0o755)
        for sub in ("hostdir", "dhcpdir", "dhcpoptsdir"):
            (path / sub).mkdir(mode=0o755)
        return path

    async def _wait_ready(self, server: Server) -> None:
        # dnsmasq writes its pid file after it has bound its sockets
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while server.pid() <= 0:
            if server.watcher is not None and server.watcher.done():
                text = server.stderr.decode(errors="replace").strip()
                raise CommandError(f"dnsmasq exited: {text or 'no message'}")
            if loop.time() > deadline:
                raise CommandError(f"dnsmasq did not start within {START_TIMEOUT:g}s")
            await asyncio.sleep(0.05)

    async def _watch(self, server: Server) -> None:
        """Drain dnsmasq's stderr until it exits, then forget it (2.8's wait goroutine)."""
        proc = server.proc
        assert proc.stderr is not None
        try:
            while chunk := await proc.stderr.read(1024):
                server.stderr = (server.stderr + chunk)[-STDERR_KEEP:]
            code = await proc.wait()
        finally:
            if self.servers.get(server.id) is server:
                del self.servers[server.id]
            await asyncio.to_thread(shutil.rmtree, server.path, True)
        if code not in (0, -signal.SIGTERM, -signal.SIGKILL):
            logger.error(
                "dnsmasq %d exited with %d: %s",
                server.id, code, server.stderr.decode(errors="replace").strip(),
            )  # fmt: skip
        logger.info("dnsmasq server %d quit", server.id)

    async def kill(self, server_id: int) -> None:
        """SIGTERM one dnsmasq and wait until it is gone (2.8: ``invalid id``)."""
        server = self.servers.get(server_id)
        if server is None:
            raise CommandError("invalid id")
        logger.info("killing dnsmasq server: %d", server.proc.pid)
        await self._stop(server)

    async def kill_all(self) -> None:
        """Kill every dnsmasq of the node, all at once."""
        await asyncio.gather(*(self._stop(s) for s in self.sorted()))

    async def _stop(self, server: Server) -> None:
        proc = server.proc
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        watcher = server.watcher
        if watcher is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(watcher), STOP_TIMEOUT)
        except TimeoutError:
            logger.warning("dnsmasq %d ignored SIGTERM: killing it", server.id)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await watcher

    # -- configuration files -------------------------------------------------------------

    async def set_host(self, servers: Iterable[Server], mac: str, ip: str) -> None:
        """Static DHCP lease ``mac -> ip`` (``dhcpdir/dhcp``)."""
        for s in servers:
            s.dhcp_hosts[mac] = ip
            text = "".join(f"{m},{i}\n" for m, i in s.dhcp_hosts.items())
            await asyncio.to_thread(_replace, s.dhcpdir / "dhcp", text, 0o755)

    async def set_dns(self, servers: Iterable[Server], ip: str, hostname: str) -> None:
        """DNS entry ``ip -> hostname`` (``hostdir/hosts``)."""
        for s in servers:
            s.hostnames[ip] = hostname
            text = "".join(f"{i}\t{h}\n" for i, h in s.hostnames.items())
            await asyncio.to_thread(_replace, s.hostdir / "hosts", text, 0o755)

    async def add_option(self, servers: Iterable[Server], option: str) -> None:
        """A DHCP option line (``dhcpoptsdir/dhcp-options``)."""
        for s in servers:
            s.options.append(option)
            text = "".join(f"{o}\n" for o in s.options)
            await asyncio.to_thread(_replace, s.optsdir / "dhcp-options", text, 0o755)

    async def add_upstream(self, servers: Iterable[Server], ip: str) -> None:
        """An upstream DNS server (``resolv.conf``), used without a restart."""
        for s in servers:
            s.upstreams.append(ip)
            text = "".join(f"nameserver {u}\n" for u in s.upstreams)
            await asyncio.to_thread(_write_resolv, s, text)


def _write_resolv(server: Server, text: str) -> None:
    path = server.path / "resolv.conf"
    _replace(path, text, 0o644)
    # dnsmasq notices a new resolv file by its mtime in whole seconds: a second
    # rewrite within the same second would go unseen, so move the clock on
    mtime = int(path.stat().st_mtime)
    if mtime <= server.resolv_mtime:
        mtime = server.resolv_mtime + 1
        os.utime(path, (mtime, mtime))
    server.resolv_mtime = mtime
