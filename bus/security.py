"""Who may do what on the bus: credentials, roles and TLS files.

Every megabus client connects to NATS with a user name and password, and the
server gives each user the permissions of one role:

- ``node``: a node serves its subjects and talks to other nodes (everything
  under ``<prefix>.v1.>``), uses JetStream (``$JS.API``, acks, flow control,
  ``$KV``, ``$O``), answers and sends micro discovery (``$SRV``) and receives
  replies (``_INBOX.>``);
- ``operator``: runs commands (publishes on ``<prefix>.v1.node.*.cmd``, ``.schema`` and
  ``<prefix>.v1.cmd``), receives their replies (``_INBOX.>``) and may watch;
- ``watcher``: subscribes to events, status updates, logs, heartbeats and VLAN
  publications, and publishes nothing.

Why user/password and not nkeys: the one-shot ``megabus -e`` client speaks NATS
with the standard library only (:mod:`megabus.bus.rawclient`), and an nkey
login signs the server's nonce with ed25519, which the standard library does
not have; a password goes in the ``CONNECT`` line as it is. Secrets therefore
matter where they are stored: credentials files are JSON
(``{"user": ..., "password": ...}``) of mode 0600 in a 0700 directory, and a
password never appears on a command line (``-credentials FILE`` names a file,
``MEGABUS_NATS_USER``/``MEGABUS_NATS_PASSWORD`` are the environment's).

A node that starts its own nats-server generates one credentials file per
role into ``<base>/auth`` once and keeps them across restarts; its
``megabus.json`` names that directory (never a secret), and local front ends
take ``<base>/auth/<role>.json`` from there, so security costs a newcomer
nothing.

This module is on the one-shot path: light standard library modules only at
import time (``ssl`` and ``secrets`` load when used).
"""

from __future__ import annotations

import json
import os

from megabus.bus.errors import SecurityError
from megabus.bus.subjects import Subjects

# ``typing`` costs the one-shot path a few ms; the names are for the type
# checker only (mypy treats any ``TYPE_CHECKING`` name as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Mapping

NODE = "node"
OPERATOR = "operator"
WATCHER = "watcher"
ROLES = (NODE, OPERATOR, WATCHER)

#: The directory of a base that holds a node's generated credentials.
AUTH_DIR = "auth"

#: Environment variables of credentials given directly (no file).
ENV_USER = "MEGABUS_NATS_USER"
ENV_PASSWORD = "MEGABUS_NATS_PASSWORD"
#: Environment variable naming a credentials file.
ENV_CREDENTIALS = "MEGABUS_CREDENTIALS"


class Credentials:
    """A NATS user name and password, and where they came from (for messages).

    A plain class rather than a dataclass: ``dataclasses`` imports ``inspect``,
    which alone costs the one-shot path about 10 ms. The password stays out of
    ``repr`` so that a log line or a traceback never shows it.
    """

    __slots__ = ("password", "source", "user")

    def __init__(self, user: str, password: str, source: str = "") -> None:
        self.user = user
        self.password = password
        self.source = source

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, source={self.source!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credentials):
            return NotImplemented
        return (self.user, self.password) == (other.user, other.password)

    def __hash__(self) -> int:
        return hash((self.user, self.password))

    def describe(self) -> str:
        """``user 'x' (from FILE)`` for error messages."""
        where = f" (from {self.source})" if self.source else ""
        return f"user {self.user!r}{where}"


def read_credentials(path: str | os.PathLike[str]) -> Credentials:
    """The credentials of a JSON file ``{"user": ..., "password": ...}``.

    Raises:
        SecurityError: the file is missing, unreadable or not such an object.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
        raise SecurityError(f"cannot read credentials file {name}: {reason}") from None
    except ValueError as err:
        raise SecurityError(f"credentials file {name} is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise SecurityError(f"credentials file {name}: expected an object with user and password")
    user, password = data.get("user"), data.get("password")
    if not isinstance(user, str) or not user or not isinstance(password, str):
        raise SecurityError(f"credentials file {name}: expected an object with user and password")
    return Credentials(user, password, source=name)


def env_credentials(environ: Mapping[str, str]) -> Credentials | None:
    """Credentials from ``MEGABUS_NATS_USER``/``MEGABUS_NATS_PASSWORD``, or from the
    file named by ``MEGABUS_CREDENTIALS``; ``None`` when the environment has neither.

    Raises:
        SecurityError: the named file is bad, or a user without a password.
    """
    user = environ.get(ENV_USER, "")
    if user:
        if ENV_PASSWORD not in environ:
            raise SecurityError(f"{ENV_USER} is set but {ENV_PASSWORD} is not")
        return Credentials(user, environ[ENV_PASSWORD], source="the environment")
    path = environ.get(ENV_CREDENTIALS, "")
    return read_credentials(path) if path else None


def role_file(auth_dir: str | os.PathLike[str], role: str) -> str:
    """The credentials file of ``role`` in a node's auth directory."""
    return os.path.join(os.fspath(auth_dir), f"{role}.json")


def local_credentials(auth_dir: str | os.PathLike[str], role: str) -> Credentials | None:
    """The role's generated credentials in ``auth_dir``, or ``None`` when there are none.

    Raises:
        SecurityError: the file exists but cannot be read (say, another user's 0600 file).
    """
    path = role_file(auth_dir, role)
    if not os.path.exists(path):
        return None
    return read_credentials(path)


def ensure_local_credentials(auth_dir: str | os.PathLike[str]) -> dict[str, Credentials]:
    """Every role's credentials in ``auth_dir``, generated the first time only.

    The directory is made 0700 and each file 0600 (created with that mode, so
    there is no moment where it is readable by others). Files already there
    are kept, so a restarted node and its clients keep their passwords.

    Raises:
        SecurityError: a file cannot be written, or one that exists is bad.
    """
    import secrets  # only a node generating credentials pays for it

    folder = os.fspath(auth_dir)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
    except OSError as err:
        raise SecurityError(f"cannot create {folder}: {(err.strerror or '').lower()}") from None
    out: dict[str, Credentials] = {}
    for role in ROLES:
        path = role_file(folder, role)
        if not os.path.exists(path):
            body = {"user": role, "password": secrets.token_urlsafe(24), "role": role}
            _write_secret(path, json.dumps(body, indent=2) + "\n")
        out[role] = read_credentials(path)
    return out


def _write_secret(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        # A rename never leaves a half-written file, and keeps a file that a
        # second node of the same base wrote first (link fails if it exists).
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    except OSError as err:
        raise SecurityError(f"cannot write {path}: {(err.strerror or '').lower()}") from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def refused_text(credentials: Credentials | None) -> str:
    """Why a server refused a login, in words a user can act on."""
    if credentials is None:
        return (
            "authorization refused: the server requires credentials and none were found "
            f"(-credentials FILE, {ENV_CREDENTIALS}, or the local node's base directory)"
        )
    return f"authorization refused for {credentials.describe()}: wrong user or password"


# --- roles ------------------------------------------------------------------------


def watched_subjects(prefix: str) -> list[str]:
    """What a watcher may subscribe to: events, status, logs, heartbeats, VLANs."""
    root = Subjects(prefix).root
    return [f"{root}.{family}.>" for family in ("event", "status", "log", "hb", "vlans")]


#: Subjects outside the prefix that a node uses: JetStream's API, acks and flow
#: control, the KV and object store subjects, micro discovery, and reply inboxes.
NODE_SYSTEM_SUBJECTS = ("$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>", "$O.>", "$SRV.>", "_INBOX.>")


def permissions(role: str, prefix: str) -> dict[str, object]:
    """The nats-server ``permissions`` map of ``role`` for subjects of ``prefix``.

    Raises:
        ValueError: an unknown role, or a bad prefix.
    """
    subjects = Subjects(prefix)
    root = subjects.root
    if role == WATCHER:
        return {"publish": {"deny": [">"]}, "subscribe": {"allow": watched_subjects(prefix)}}
    if role == OPERATOR:
        # _INBOX.> lets an operator read replies to others too; an operator can
        # run `shell` as root on every node, so that hides nothing from it.
        return {
            "publish": {
                "allow": [f"{root}.node.*.cmd", f"{root}.node.*.schema", subjects.any_cmd()]
            },
            "subscribe": {"allow": [*watched_subjects(prefix), "_INBOX.>"]},
        }
    if role == NODE:
        allowed = [f"{root}.>", *NODE_SYSTEM_SUBJECTS]
        return {"publish": {"allow": allowed}, "subscribe": {"allow": allowed}}
    raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")


def server_users(creds: Mapping[str, Credentials], prefix: str) -> list[dict[str, object]]:
    """The ``authorization.users`` entries of a server for credentials by role."""
    return [
        {"user": c.user, "password": c.password, "permissions": permissions(role, prefix)}
        for role, c in creds.items()
    ]


def password_variable(role: str) -> str:
    """The environment variable a site's nats-server reads a role's password from."""
    return f"MEGABUS_{role.upper()}_PASSWORD"


def authorization_conf(prefix: str) -> str:
    """An ``authorization`` block for a nats-server config file (``ops/nats/secure``).

    Users are named after their roles; each password is a variable of the
    server's environment (:func:`password_variable`), so the file holds no
    secret. ``python -m megabus.bus.security PREFIX`` prints it.
    """
    lines = [
        f"# megabus's roles for subject prefix {prefix!r}, as nats-server permissions.",
        f"# Made by `python -m megabus.bus.security {prefix}` (bus/security.py); do not edit.",
        "# Each password comes from the server's environment: "
        + ", ".join(password_variable(r) for r in ROLES)
        + ".",
        "authorization {",
        "  users: [",
    ]
    for role in ROLES:
        perms = json.dumps(permissions(role, prefix))
        lines.append(
            f'    {{"user": "{role}", "password": ${password_variable(role)}, '
            f'"permissions": {perms}}}'
        )
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    print(authorization_conf(sys.argv[1] if len(sys.argv) > 1 else "mb"), end="")


# --- TLS --------------------------------------------------------------------------------


class TlsFiles:
    """Certificate files of a TLS client: the CA to trust, and our own certificate.

    Any may be empty: without ``ca`` the system's trust store verifies the
    server; without ``cert`` the client presents no certificate.
    """

    __slots__ = ("ca", "cert", "key")

    def __init__(self, ca: str = "", cert: str = "", key: str = "") -> None:
        self.ca = ca
        self.cert = cert
        self.key = key

    def __repr__(self) -> str:
        return f"TlsFiles(ca={self.ca!r}, cert={self.cert!r}, key={self.key!r})"

    def __bool__(self) -> bool:
        return bool(self.ca or self.cert or self.key)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the server (hostname included).

        Raises:
            SecurityError: a file is missing or not a certificate or key.
        """
        import ssl

        if self.key and not self.cert:
            raise SecurityError("TLS: a client key without a client certificate")
        try:
            ctx = ssl.create_default_context(cafile=self.ca or None)
            if self.cert:
                ctx.load_cert_chain(self.cert, self.key or None)
        except FileNotFoundError as err:
            raise SecurityError(f"TLS: no such file {err.filename or self.ca}") from None
        except (OSError, ssl.SSLError) as err:
            raise SecurityError(f"TLS: cannot load {self._names()}: {err}") from None
        return ctx

    def _names(self) -> str:
        return ", ".join(f for f in (self.ca, self.cert, self.key) if f)


def tls_error_text(err: BaseException) -> str:
    """A TLS failure in words (``certificate verify failed: self-signed ...``).

    Looks at the error's attributes rather than its class, so that callers on
    the one-shot path need not import ``ssl`` to describe one.
    """
    verify = getattr(err, "verify_message", "")
    if verify:
        return f"certificate verify failed: {verify} (the server's CA: -tls-ca FILE)"
    reason = getattr(err, "reason", "")
    if isinstance(reason, str) and reason:
        return reason.lower().replace("_", " ")
    return str(err) or type(err).__name__


def is_tls_error(err: BaseException) -> bool:
    """Whether ``err`` is an ``ssl.SSLError`` (without importing ``ssl``)."""
    return any(c.__module__ == "ssl" and c.__name__ == "SSLError" for c in type(err).__mro__)


__all__ = [
    "AUTH_DIR",
    "NODE",
    "OPERATOR",
    "ROLES",
    "WATCHER",
    "Credentials",
    "TlsFiles",
    "authorization_conf",
    "ensure_local_credentials",
    "env_credentials",
    "is_tls_error",
    "local_credentials",
    "password_variable",
    "permissions",
    "read_credentials",
    "refused_text",
    "role_file",
    "server_users",
    "tls_error_text",
    "watched_subjects",
]
