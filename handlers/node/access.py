"""How a node reaches NATS: its credentials and TLS files, and those of its own server.

Three cases (see :mod:`megabus.bus.security` for the roles):

- the node starts its own nats-server (none listens locally and no ``-nats``
  was given): it generates every role's credentials into ``<base>/auth``
  once, starts the server with authorization on (and TLS when
  ``tls-server-cert`` is set), and logs in as ``node``;
- a server already listens locally: the node logs in with the credentials it
  was given, else with ``<base>/auth/node.json`` when that exists (a server a
  node of this base started), else with none;
- ``-nats URL``: the credentials it was given (``credentials`` file,
  ``MEGABUS_CREDENTIALS``, ``MEGABUS_NATS_USER``/``MEGABUS_NATS_PASSWORD``), or none.

Whenever the node uses ``<base>/auth``, ``megabus.json`` names that directory
(never a secret), so local front ends log in without being told anything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from megabus.bus.security import (
    AUTH_DIR,
    NODE,
    Credentials,
    TlsFiles,
    ensure_local_credentials,
    env_credentials,
    local_credentials,
    read_credentials,
    server_users,
)
from megabus.bus.server import EmbeddedServer, ServerTLS
from megabus.config.settings import Settings


class NodeAccess:
    """The credentials and TLS files one node connects with.

    Build it with :meth:`load` (reads files: call it off the event loop).

    Attributes:
        credentials: the user the node logs in as, or ``None``.
        tls: the node's TLS client files, or ``None``.
        auth_dir: the base's generated credentials, when the node uses them.
    """

    def __init__(
        self, settings: Settings, credentials: Credentials | None, tls: TlsFiles | None
    ) -> None:
        self.settings = settings
        self.credentials = credentials
        self.tls = tls
        self.auth_dir: Path | None = None
        self._explicit = credentials is not None

    @classmethod
    def load(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> NodeAccess:
        """The node's own credentials (the ``credentials`` file, else the environment).

        Raises:
            SecurityError: a credentials file is missing or bad.
        """
        env = os.environ if environ is None else environ
        if settings.credentials:
            creds: Credentials | None = read_credentials(settings.credentials)
        else:
            creds = env_credentials(env)
        files = TlsFiles(settings.tls_ca, settings.tls_cert, settings.tls_key)
        return cls(settings, creds, files if files else None)

    @property
    def local_auth(self) -> Path:
        return Path(self.settings.base) / AUTH_DIR

    def embedded_server(self, port: int) -> EmbeddedServer:
        """The nats-server this node starts, with every role's credentials (made once).

        The node itself logs in as ``node`` with the generated credentials,
        whatever it was given for other servers.

        Raises:
            SecurityError: the credentials cannot be written or read.
        """
        creds = ensure_local_credentials(self.local_auth)
        self.credentials = creds[NODE]
        self.auth_dir = self.local_auth
        s = self.settings
        tls = None
        if s.tls_server_cert:
            tls = ServerTLS(cert=s.tls_server_cert, key=s.tls_server_key, ca=s.tls_ca)
        return EmbeddedServer(
            Path(s.base) / "nats",
            port=port,
            users=server_users(creds, s.prefix),
            tls=tls,
        )

    def join_local(self) -> None:
        """Joining a server that already listens here: this base's credentials, if any.

        Raises:
            SecurityError: ``<base>/auth/node.json`` exists but cannot be read.
        """
        if self._explicit:
            return
        creds = local_credentials(self.local_auth, NODE)
        if creds is not None:
            self.credentials = creds
            self.auth_dir = self.local_auth

    def info(self) -> dict[str, str]:
        """What ``megabus.json`` tells local front ends: where credentials and TLS files are."""
        out: dict[str, str] = {}
        if self.auth_dir is not None:
            out["auth"] = str(self.auth_dir)
        if self.tls is not None:
            for key in ("ca", "cert", "key"):
                value = getattr(self.tls, key)
                if value:
                    out[f"tls_{key}"] = os.path.abspath(value)
        return out


__all__ = ["NodeAccess"]
