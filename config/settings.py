"""One typed settings object for a node and for every CLI form.

Sources, later ones winning: built-in defaults, a TOML file, the environment
(``MEGABUS_<FIELD>``), command-line flags. The TOML file is ``--config FILE``,
else ``$MEGABUS_CONFIG``, else ``/etc/megabus.toml`` when it exists. A typo in
the file fails loudly (unknown keys are refused), unlike wire messages.
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from megabus.bus.errors import MegabusError

DEFAULT_NATS = "nats://127.0.0.1:4222"
DEFAULT_BASE = "/tmp/megabus"
SYSTEM_CONFIG = "/etc/megabus.toml"


class SettingsError(MegabusError, ValueError):
    """A setting has a bad value; the message names the setting and the value."""


def default_name() -> str:
    """The node name: the short host name, as minimega uses ``os.Hostname``."""
    return socket.gethostname().split(".")[0] or "localhost"


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="kebab"):
    """Node and client settings (minimega 2.8's flags, NATS-shaped)."""

    #: Node name (minimega: the hostname).
    name: str = msgspec.field(default_factory=default_name)
    #: NATS server URLs; empty means the local node's server.
    nats: list[str] = []
    #: State directory (minimega ``-base``).
    base: str = DEFAULT_BASE
    #: File root (minimega ``-filepath``); empty means ``<base>/files``.
    filepath: str = ""
    #: Subject prefix, so experiments can share one NATS server.
    prefix: str = "mb"
    #: Default VLAN range ``min-max``, half-open (minimega ``-vlanrange``).
    vlan_range: str = "101-4096"
    #: Seconds between heartbeats.
    heartbeat: float = 2.0
    #: Log level: debug, info, warn, error, fatal (minimega ``-level``).
    level: str = "error"
    #: Log file (minimega ``-logfile``); empty for none.
    logfile: str = ""
    #: Log to stderr (minimega ``-v``).
    verbose: bool = True
    #: Node that receives this node's log records (minimega ``-headnode`` for logs).
    log_node: str = ""
    #: Hash every file under the files directory and keep the hashes current
    #: (minimega ``-hashfiles``): ``file list`` gains a ``hash`` column and
    #: transfers prefer the newest version (with ``log-node``: the head node's).
    hash_files: bool = False
    #: Port of the embedded nats-server when the node starts one.
    nats_port: int = 4222
    #: Seconds a client waits for a node's reply before giving up (idle time).
    timeout: float = 10.0
    #: Rebuild VMs from the base directory at start (minimega ``-recover``).
    recover: bool = False
    #: QEMU accelerator: auto, kvm or tcg.
    accel: str = "auto"
    #: Requests a node runs at once; more wait their turn (none is dropped).
    max_requests: int = 256
    #: Requests that may wait for a turn; past that a request is refused at
    #: once with an error reply (``node busy``) rather than queued without bound.
    max_waiting: int = 10000
    #: File of this node's NATS credentials (JSON ``user``, ``password``), for a
    #: server that requires them; a node's own embedded server needs none here.
    #: Passwords never go on a command line: ``MEGABUS_NATS_USER`` and
    #: ``MEGABUS_NATS_PASSWORD`` are the environment's way.
    credentials: str = ""
    #: CA file that NATS servers' certificates are verified against (TLS).
    tls_ca: str = ""
    #: Client certificate and key presented to NATS servers that ask for one.
    tls_cert: str = ""
    tls_key: str = ""
    #: Certificate and key of the embedded nats-server: when set, it speaks TLS
    #: only (and with ``tls-ca`` set, asks clients for certificates signed by it).
    tls_server_cert: str = ""
    tls_server_key: str = ""

    def __post_init__(self) -> None:
        if self.max_requests < 1:
            raise SettingsError(f"invalid max-requests {self.max_requests}: must be at least 1")
        if self.max_waiting < 0:
            raise SettingsError(f"invalid max-waiting {self.max_waiting}: must not be negative")
        if bool(self.tls_server_cert) != bool(self.tls_server_key):
            raise SettingsError("tls-server-cert and tls-server-key go together")

    @property
    def files_dir(self) -> str:
        """The file root, following ``base`` unless set on its own."""
        return self.filepath or os.path.join(self.base, "files")

    @property
    def nats_urls(self) -> list[str]:
        """The servers to connect to; the local default when none is set."""
        return self.nats or [DEFAULT_NATS]

    def vlan_bounds(self) -> tuple[int, int]:
        """Parse ``vlan_range`` into ``(min, max)``.

        Raises:
            SettingsError: not ``min-max`` with ``0 <= min < max <= 4096``.
        """
        return parse_vlan_range(self.vlan_range)


def parse_vlan_range(text: str) -> tuple[int, int]:
    """Parse ``min-max`` as 2.8's ``-vlanrange`` does (min < max, half-open)."""
    parts = text.split("-")
    try:
        if len(parts) != 2:
            raise ValueError
        lo, hi = int(parts[0]), int(parts[1])
    except ValueError:
        raise SettingsError(f"invalid vlan range {text!r}: expected <min>-<max>") from None
    if not (0 <= lo < hi <= 4096):
        raise SettingsError(f"invalid vlan range {text!r}: need 0 <= min < max <= 4096")
    return lo, hi


_FIELDS = {f.encode_name: f.name for f in msgspec.structs.fields(Settings)}


def _env_values(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, attr in _FIELDS.items():
        env = "MEGABUS_" + attr.upper()
        if env in environ:
            raw = environ[env]
            out[key] = [u for u in raw.split(",") if u] if attr == "nats" else raw
    return out


def load(
    flags: dict[str, Any] | None = None,
    *,
    config_file: str | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build the settings from defaults, file, environment and flags.

    Args:
        flags: values given on the command line, by attribute name; ``None``
            values are ignored (the flag was not given).
        config_file: TOML file; defaults to ``$MEGABUS_CONFIG`` or ``/etc/megabus.toml``.
        environ: the environment (defaults to ``os.environ``).

    Raises:
        SettingsError: a source holds an unknown key or a bad value.
    """
    env = dict(os.environ if environ is None else environ)
    merged: dict[str, Any] = {}
    path = config_file or env.get("MEGABUS_CONFIG") or ""
    if not path and Path(SYSTEM_CONFIG).is_file():
        path = SYSTEM_CONFIG
    if path:
        try:
            with open(path, "rb") as fh:
                merged.update(tomllib.load(fh))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise SettingsError(f"config file {path}: {err}") from err
    merged.update(_env_values(env))
    for attr, value in (flags or {}).items():
        if value is not None:
            merged[attr.replace("_", "-")] = value
    if isinstance(merged.get("nats"), str):
        merged["nats"] = [u for u in merged["nats"].split(",") if u]
    try:
        settings = msgspec.convert(merged, Settings, strict=False)
    except msgspec.ValidationError as err:
        raise SettingsError(f"invalid setting: {err}") from err
    settings.vlan_bounds()
    if settings.accel not in ("auto", "kvm", "tcg"):
        raise SettingsError(f"invalid accel {settings.accel!r}: expected auto, kvm or tcg")
    return settings
