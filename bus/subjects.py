"""Subject and bucket names, built in one place.

Every subject is ``<prefix>.v1.<family>...``; the prefix (``mb`` by default)
lets two experiments share one NATS server. Names that come from users (node
names, namespaces, topics) pass through :func:`token`, which keeps them a
single NATS subject token whatever characters they hold.
"""

from __future__ import annotations

import re

from megabus.bus.errors import CommandError

DEFAULT_PREFIX = "mb"
VERSION = "v1"

_SAFE = re.compile(r"[A-Za-z0-9_\-]")
_PREFIX_OK = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


def token(name: str) -> str:
    """Encode ``name`` as one subject token.

    Characters outside ``[A-Za-z0-9_-]`` become ``%XX`` (UTF-8 bytes), so
    ``a.b`` and ``a b`` can never split or merge subjects and the mapping is
    reversible by :func:`untoken`. The empty name becomes ``%``.
    """
    if not name:
        return "%"
    out = []
    for ch in name:
        if _SAFE.match(ch):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode())
    return "".join(out)


def untoken(tok: str) -> str:
    """Invert :func:`token`."""
    if tok == "%":
        return ""
    raw = bytearray()
    i = 0
    while i < len(tok):
        if tok[i] == "%" and i + 3 <= len(tok):
            raw += bytes([int(tok[i + 1 : i + 3], 16)])
            i += 3
        else:
            raw += tok[i].encode()
            i += 1
    return raw.decode()


#: Longest name, encoded by :func:`token`, that may go into a subject or a KV
#: key. A NATS server takes protocol lines of at most 4096 bytes and drops a
#: client that sends a longer one, and nats-py then stays closed for good (a
#: 5000-character VLAN alias disconnected a node: ops/fuzz.py found it). Two
#: such tokens and the rest of a subject still fit.
MAX_TOKEN_BYTES = 1000
#: Longest subject :class:`~megabus.bus.connection.Bus` publishes on.
MAX_SUBJECT_BYTES = 3072


class NameTooLongError(CommandError, ValueError):
    """A name too long to be part of a NATS subject; the text says which and how long."""


def bounded_token(name: str, what: str = "name") -> str:
    """:func:`token` of ``name``, refusing one longer than :data:`MAX_TOKEN_BYTES`.

    Raises:
        NameTooLongError: ``<what> too long: ...``.
    """
    tok = token(name)
    if len(tok) > MAX_TOKEN_BYTES:
        raise NameTooLongError(
            f"{what} too long: {len(name)} characters "
            f"({len(tok)} bytes in a subject, at most {MAX_TOKEN_BYTES})"
        )
    return tok


class Subjects:
    """Subject builders for one prefix.

    Args:
        prefix: the experiment's prefix, one or more dot-separated tokens.

    Raises:
        ValueError: the prefix is not a valid subject prefix.
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not _PREFIX_OK.match(prefix):
            raise ValueError(f"invalid subject prefix {prefix!r}: want tokens of [A-Za-z0-9_-]")
        self.prefix = prefix
        self.root = f"{prefix}.{VERSION}"

    # commands
    def node_cmd(self, node: str) -> str:
        """Commands for one node, served in that node's queue group."""
        return f"{self.root}.node.{token(node)}.cmd"

    def node_info(self, node: str) -> str:
        """A node's micro-service ``info`` endpoint (where its commands go)."""
        return f"{self.root}.node.{token(node)}.info"

    def node_schema(self, node: str) -> str:
        """A node's published schema: subjects, messages and its command table."""
        return f"{self.root}.node.{token(node)}.schema"

    def node_launch(self, node: str) -> str:
        """Where a node takes VMs scheduled onto it by another node."""
        return f"{self.root}.node.{token(node)}.launch"

    def any_cmd(self) -> str:
        """Commands any node may serve (cluster-wide state)."""
        return f"{self.root}.cmd"

    def node_queue(self, node: str) -> str:
        """Queue group of one node's command handlers."""
        return f"{self.prefix}-node-{token(node)}"

    def all_queue(self) -> str:
        """Queue group of every node, for :meth:`any_cmd`."""
        return f"{self.prefix}-nodes"

    # presence
    def heartbeat(self, node: str) -> str:
        return f"{self.root}.hb.{token(node)}"

    def heartbeats(self) -> str:
        return f"{self.root}.hb.*"

    # status updates
    def status(self, node: str, topic: str) -> str:
        return f"{self.root}.status.{token(node)}.{token(topic)}"

    def statuses(self) -> str:
        return f"{self.root}.status.>"

    # logs
    def log(self, node: str, level: str) -> str:
        return f"{self.root}.log.{token(node)}.{token(level)}"

    def logs(self) -> str:
        return f"{self.root}.log.>"

    # VLAN alias publications
    def vlans(self, namespace: str) -> str:
        return f"{self.root}.vlans.{token(namespace)}"

    def all_vlans(self) -> str:
        return f"{self.root}.vlans.*"

    # lifecycle events
    def event(self, namespace: str, kind: str) -> str:
        return f"{self.root}.event.{token(namespace)}.{token(kind)}"

    def events(self) -> str:
        return f"{self.root}.event.>"

    # cc
    def cc(self, namespace: str, *rest: str) -> str:
        tail = "".join(f".{token(r)}" for r in rest)
        return f"{self.root}.cc.{token(namespace)}{tail}"

    # pipes (2.8's miniplumber): one subject family per pipe
    def pipe(self, namespace: str, name: str, kind: str) -> str:
        """Traffic of one kind (``data``, ``readers``, ``via``) of pipe ``<namespace>//<name>``."""
        return f"{self.root}.pipe.{token(namespace)}.{token(name)}.{token(kind)}"

    def pipes(self) -> str:
        """Every pipe's traffic (a node listens to all of it, as 2.8 broadcast it)."""
        return f"{self.root}.pipe.>"

    def node_pipe(self, node: str) -> str:
        """Pipe writes for one node: the host of a pipe's ``via``."""
        return f"{self.root}.node.{token(node)}.pipe"

    # files (2.8's iomeshage)
    def file_info(self) -> str:
        """Info requests: every node answers with what it has of a path."""
        return f"{self.root}.file.info"

    def file_whohas(self) -> str:
        """Part queries: every node says whether it has a part (2.8's WHOHAS)."""
        return f"{self.root}.file.whohas"

    def node_file(self, node: str) -> str:
        """Chunk requests for the files one node serves."""
        return f"{self.root}.node.{token(node)}.file"

    # JetStream names (streams, buckets: [A-Za-z0-9_-] only)
    def bucket(self, name: str) -> str:
        """A KV bucket or stream name of this prefix, e.g. ``mb_vlans``."""
        return f"{self.prefix.replace('.', '_')}_{name}"

    def service_name(self) -> str:
        """The NATS micro service name nodes register under."""
        return f"megabus-{self.prefix.replace('.', '-')}"
