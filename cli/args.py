"""Command-line parsing and finding the node: what every front end shares.

Flags follow Go's ``flag`` package, as minimega's do: ``-x`` and ``--x`` are
the same, values go as ``-x v`` or ``-x=v``, and parsing stops at the first
argument that is not a flag. This module is on the one-shot path: standard
library's light modules only.
"""

from __future__ import annotations

import json
import os
import socket

from megabus.bus.errors import SecurityError
from megabus.bus.security import (
    OPERATOR,
    Credentials,
    TlsFiles,
    env_credentials,
    local_credentials,
    read_credentials,
)

# ``typing``/``collections.abc`` cost the one-shot path; the names are for the
# type checker only (mypy treats any ``TYPE_CHECKING`` name as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_BASE = "/tmp/megabus"
DEFAULT_NATS = "nats://127.0.0.1:4222"
DEFAULT_PREFIX = "mb"
DEFAULT_TIMEOUT = 10.0


class UsageError(Exception):
    """A bad command line; the message says what is wrong."""


# --- Go-style flag parsing ----------------------------------------------------

#: Client flags: spelling -> (destination, takes a value).
CLIENT_FLAGS: dict[str, tuple[str, bool]] = {
    "nats": ("nats", True),
    "node": ("node", True),
    "base": ("base", True),
    "prefix": ("prefix", True),
    "namespace": ("namespace", True),
    "timeout": ("timeout", True),
    "json": ("json", False),
    "count": ("count", True),
    "credentials": ("credentials", True),
    "tls-ca": ("tls_ca", True),
    "tls-cert": ("tls_cert", True),
    "tls-key": ("tls_key", True),
    "e": ("e", False),
    "attach": ("attach", False),
    "h": ("help", False),
    "help": ("help", False),
}

#: Node flags: spelling -> (Settings attribute, takes a value).
NODE_FLAGS: dict[str, tuple[str, bool]] = {
    "name": ("name", True),
    "nats": ("nats", True),
    "base": ("base", True),
    "filepath": ("filepath", True),
    "prefix": ("prefix", True),
    "vlanrange": ("vlan_range", True),
    "vlan-range": ("vlan_range", True),
    "heartbeat": ("heartbeat", True),
    "level": ("level", True),
    "logfile": ("logfile", True),
    "log-node": ("log_node", True),
    "headnode": ("log_node", True),
    "nats-port": ("nats_port", True),
    "accel": ("accel", True),
    "max-requests": ("max_requests", True),
    "max-waiting": ("max_waiting", True),
    "credentials": ("credentials", True),
    "tls-ca": ("tls_ca", True),
    "tls-cert": ("tls_cert", True),
    "tls-key": ("tls_key", True),
    "tls-server-cert": ("tls_server_cert", True),
    "tls-server-key": ("tls_server_key", True),
    "config": ("config", True),
    "recover": ("recover", False),
    "hashfiles": ("hash_files", False),
    "hash-files": ("hash_files", False),
    "v": ("verbose", False),
    "verbose": ("verbose", False),
    "h": ("help", False),
    "help": ("help", False),
}

_TRUE = {"1", "t", "true", "yes"}
_FALSE = {"0", "f", "false", "no"}


def parse_flags(
    args: list[str], spec: dict[str, tuple[str, bool]]
) -> tuple[dict[str, str | bool], list[str]]:
    """Parse leading flags of ``args`` as Go's ``flag`` package does.

    Returns the flags given (by destination) and the arguments after them.

    Raises:
        UsageError: an unknown flag, a missing value or a bad boolean.
    """
    out: dict[str, str | bool] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name = arg.lstrip("-")
        value: str | None = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name not in spec:
            raise UsageError(f"flag provided but not defined: -{name}")
        dest, takes_value = spec[name]
        if takes_value:
            if value is None:
                if i + 1 >= len(args):
                    raise UsageError(f"flag needs an argument: -{name}")
                i += 1
                value = args[i]
            out[dest] = value
        elif value is None or value.lower() in _TRUE:
            out[dest] = True
        elif value.lower() in _FALSE:
            out[dest] = False
        else:
            raise UsageError(f"invalid boolean value {value!r} for flag -{name}")
        i += 1
    return out, args[i:]


def parse_interspersed(
    args: list[str], spec: dict[str, tuple[str, bool]]
) -> tuple[dict[str, str | bool], list[str]]:
    """Like :func:`parse_flags`, but flags may also follow positional arguments.

    Used after a verb (``events hb -count 1``), where there is no command
    text that could be mistaken for flags.
    """
    flags: dict[str, str | bool] = {}
    positional: list[str] = []
    while args:
        found, args = parse_flags(args, spec)
        flags.update(found)
        if args:
            positional.append(args[0])
            args = args[1:]
    return flags, positional


def quote_args(args: list[str]) -> str:
    """Join ``-e`` arguments into one line, re-quoting those with spaces (minimega -e)."""
    out = []
    for arg in args:
        if any(c.isspace() for c in arg) or arg == "":
            out.append(json.dumps(arg))
        else:
            out.append(arg)
    return " ".join(out)


# --- where the node is ------------------------------------------------------------


class Target:
    """The node a client talks to and how to reach it.

    A plain class rather than a dataclass: ``dataclasses`` imports
    ``inspect``, which alone costs the one-shot path about 10 ms.
    """

    __slots__ = ("base", "credentials", "namespace", "node", "prefix", "timeout", "tls", "urls")

    def __init__(
        self,
        node: str,
        urls: list[str],
        prefix: str = DEFAULT_PREFIX,
        namespace: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        base: str = DEFAULT_BASE,
        credentials: Credentials | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.node = node
        self.urls = urls
        self.prefix = prefix
        self.namespace = namespace
        self.timeout = timeout
        self.base = base
        #: Who to log in as, and the TLS files; ``None`` when there are none.
        self.credentials = credentials
        self.tls = tls

    def __repr__(self) -> str:
        return f"Target(node={self.node!r}, urls={self.urls!r}, prefix={self.prefix!r})"

    @property
    def url_text(self) -> str:
        return ",".join(self.urls)


def read_node_file(base: str) -> dict[str, object]:
    """The local node's ``<base>/megabus.json``, or ``{}`` when absent or unreadable."""
    try:
        with open(os.path.join(base, "megabus.json"), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_target(
    flags: dict[str, str | bool],
    environ: dict[str, str] | None = None,
    *,
    role: str = OPERATOR,
) -> Target:
    """Combine flags, environment and ``<base>/megabus.json`` into a :class:`Target`.

    Args:
        role: whose generated credentials to take from the local node's base
            (``operator`` to run commands, ``watcher`` to follow the bus).

    Raises:
        UsageError: a bad ``-timeout``, or a credentials file that cannot be read.
    """
    env = os.environ if environ is None else environ
    base = str(flags.get("base") or env.get("MEGABUS_BASE") or DEFAULT_BASE)
    local = read_node_file(base)
    chosen = str(flags.get("nats") or env.get("MEGABUS_NATS") or "")
    nats = chosen or str(local.get("nats_url") or "")
    urls = [u.strip() for u in nats.split(",") if u.strip()] or [DEFAULT_NATS]
    # The local node's credentials and files only go to the local node's server.
    is_local = bool(local) and (not chosen or chosen == local.get("nats_url"))
    try:
        credentials = _credentials(flags, env, local if is_local else {}, role)
    except SecurityError as err:
        raise UsageError(str(err)) from None
    tls = _tls_files(flags, env, local if is_local else {})
    node = str(flags.get("node") or local.get("name") or socket.gethostname().split(".")[0])
    prefix = str(
        flags.get("prefix") or env.get("MEGABUS_PREFIX") or local.get("prefix") or DEFAULT_PREFIX
    )
    raw_timeout = str(flags.get("timeout") or env.get("MEGABUS_TIMEOUT") or DEFAULT_TIMEOUT)
    try:
        timeout = float(raw_timeout)
    except ValueError:
        raise UsageError(f"invalid timeout {raw_timeout!r}: expected seconds") from None
    if timeout <= 0:
        raise UsageError(f"invalid timeout {raw_timeout!r}: must be positive")
    return Target(
        node=node,
        urls=urls,
        prefix=prefix,
        namespace=str(flags.get("namespace") or ""),
        timeout=timeout,
        base=base,
        credentials=credentials,
        tls=tls,
    )


def _credentials(
    flags: dict[str, str | bool], env: Mapping[str, str], local: dict[str, object], role: str
) -> Credentials | None:
    """``-credentials FILE``, else the environment, else the local node's ``<auth>/<role>.json``."""
    path = flags.get("credentials")
    if path and path is not True:
        return read_credentials(str(path))
    found = env_credentials(env)
    if found is not None:
        return found
    auth = local.get("auth")
    if isinstance(auth, str) and auth:
        return local_credentials(auth, role)
    return None


def _tls_files(
    flags: dict[str, str | bool], env: Mapping[str, str], local: dict[str, object]
) -> TlsFiles | None:
    """The TLS files of flags, else the environment, else the local node's, each on its own."""
    values = []
    for key in ("ca", "cert", "key"):
        value = (
            flags.get(f"tls_{key}")
            or env.get(f"MEGABUS_TLS_{key.upper()}")
            or local.get(f"tls_{key}")
        )
        values.append(str(value) if value and value is not True else "")
    files = TlsFiles(*values)
    return files if files else None
