"""Security helpers for tests: a throw-away CA made with the ``openssl`` CLI, and secured servers.

:func:`make_ca` writes a CA, a server certificate for ``127.0.0.1``/``localhost``,
a client certificate, and a second, unrelated CA with a client certificate of
its own (the "wrong certificate" of the tests). EC P-256 keys: a full set takes
a few tens of milliseconds. The callers put it in a temporary folder and
remove it when done (:func:`test_ca`).

:func:`secured_server` starts a nats-server with every role's credentials
(generated as a node's embedded server does) and, optionally, TLS.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from megabus.bus.connection import Bus
from megabus.bus.messages import CommandReply, CommandRequest
from megabus.bus.rawclient import RawClient
from megabus.bus.security import Credentials, TlsFiles, ensure_local_credentials, server_users
from megabus.bus.server import EmbeddedServer, ServerTLS
from megabus.cli.oneshot import REQUEST_TAG
from megabus.config.settings import Settings
from megabus.handlers.main import Node
from megabus.handlers.node.process import Emit, Executor

_SUBJECT_CA = "/CN=megabus test CA"
_EXT_SERVER = (
    "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    "extendedKeyUsage=serverAuth,clientAuth\n"
    "basicConstraints=critical,CA:FALSE\n"
)
_EXT_CLIENT = "extendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\n"


@dataclass(frozen=True)
class TestCA:
    """The files of :func:`make_ca` (all PEM)."""

    __test__ = False  # not a test class, whatever its name

    folder: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: A CA nobody trusts, and a client certificate it signed.
    rogue_ca: Path
    rogue_cert: Path
    rogue_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(
        ["openssl", *map(str, args)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _new_ca(folder: Path, name: str, subject: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", subject,
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _issue(
    folder: Path, name: str, ca: tuple[Path, Path], subject: str, ext: str
) -> tuple[Path, Path]:
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    extfile = folder / f"{name}.ext"
    extfile.write_text(ext)
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", subject,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", extfile,
    )  # fmt: skip
    csr.unlink()
    extfile.unlink()
    return cert, key


def make_ca(folder: Path) -> TestCA:
    """Write a test CA and its certificates into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = _new_ca(folder, "ca", _SUBJECT_CA)
    server = _issue(folder, "server", ca, "/CN=localhost", _EXT_SERVER)
    client = _issue(folder, "client", ca, "/CN=megabus client", _EXT_CLIENT)
    rogue = _new_ca(folder, "rogue-ca", "/CN=someone else's CA")
    rogue_client = _issue(folder, "rogue-client", rogue, "/CN=megabus client", _EXT_CLIENT)
    return TestCA(
        folder=folder,
        ca=ca[0],
        server_cert=server[0],
        server_key=server[1],
        client_cert=client[0],
        client_key=client[1],
        rogue_ca=rogue[0],
        rogue_cert=rogue_client[0],
        rogue_key=rogue_client[1],
    )


@contextlib.contextmanager
def test_ca(folder: Path) -> Iterator[TestCA]:
    """:func:`make_ca` in ``folder``, removed again on exit (keys included)."""
    try:
        yield make_ca(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


test_ca.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@dataclass
class Secured:
    """A running secured server and every role's credentials."""

    server: EmbeddedServer
    creds: dict[str, Credentials]
    auth_dir: Path

    @property
    def url(self) -> str:
        return self.server.client_url


@contextlib.asynccontextmanager
async def secured_server(
    folder: Path,
    *,
    prefix: str = "mb",
    tls: ServerTLS | None = None,
    max_payload: int | None = None,
) -> AsyncIterator[Secured]:
    """A nats-server on a free port with authorization on (and TLS when ``tls`` is given)."""
    creds = ensure_local_credentials(folder / "auth")
    extra = {"max_payload": max_payload} if max_payload else {}
    server = EmbeddedServer(
        folder / "nats", port=0, users=server_users(creds, prefix), tls=tls, **extra
    )
    await server.start()
    try:
        yield Secured(server, creds, folder / "auth")
    finally:
        await server.stop()


def raw_request(
    url: str,
    creds: Credentials | None,
    subject: str,
    line: str | None = None,
    *,
    tls: TlsFiles | None = None,
    idle: float = 5.0,
) -> list[dict[str, Any]]:
    """A command over the one-shot client (blocking: run it with ``asyncio.to_thread``
    when the node shares the test's event loop)."""
    payload = b"{}" if line is None else json.dumps({"type": REQUEST_TAG, "line": line}).encode()
    with RawClient.connect([url], credentials=creds, tls=tls) as raw:
        return list(raw.request_stream(subject, payload, idle_timeout=idle))


class Recorder:
    """An executor that remembers every line it ran (to prove a node untouched)."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.lines: list[str] = []

    async def execute(self, req: CommandRequest, emit: Emit) -> None:
        self.lines.append(req.line)
        await emit(CommandReply(node=self.node, rendered=req.line))


@contextlib.asynccontextmanager
async def recorder_node(**settings: Any) -> AsyncIterator[tuple[Node, Recorder]]:
    """A node named ``n1`` whose commands only a :class:`Recorder` sees."""
    recorder = Recorder("n1")

    @contextlib.asynccontextmanager
    async def factory(_settings: Settings, _bus: Bus) -> AsyncIterator[Executor]:
        yield recorder

    node = Node(Settings(name="n1", heartbeat=0.2, **settings), dispatcher_factory=factory)
    await node.start()
    try:
        yield node, recorder
    finally:
        await node.stop()
