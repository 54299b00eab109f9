"""Every message that travels on the bus, in one place.

Each top-level message is a ``msgspec.Struct`` with a versioned tag
(``megabus.<family>.v<major>.<kind>``) in the ``type`` field, encoded as JSON so
any NATS client can read it. The same tag travels in the ``Mb-Schema`` header
(see :mod:`megabus.bus.codec`), so a subscriber can route on the header alone.

Evolution rules (msgspec's schema-evolution guide): a new field always has a
default (a minor change); anything else is a new major version with a new tag
and subject. Unknown fields are ignored, never forbidden, so an older node or
agent keeps working next to a newer one.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec


class Message(msgspec.Struct, tag_field="type", kw_only=True):
    """Base of every bus message: tagged, keyword-only."""


# --- minicli's response model -------------------------------------------------


class Flags(msgspec.Struct, kw_only=True):
    """Output flags of a response (minicli ``Flags``); the first response's count.

    The global defaults are all true and mode ``default``.
    """

    annotate: bool = True
    compress: bool = True
    headers: bool = True
    sort: bool = True
    preprocess: bool = True
    #: ``default``, ``json`` or ``csv``.
    mode: str = "default"
    record: bool = True


class Response(msgspec.Struct, kw_only=True):
    """One node's answer to one command (minicli ``Response``).

    ``tabular`` wins over ``response`` when it is not ``None``. ``error`` is
    never part of the rendered text; front ends print it separately.
    """

    #: Node that produced the response.
    host: str = ""
    #: Simple text response.
    response: str = ""
    #: Column names of a tabular response.
    header: list[str] | None = None
    #: Rows of a tabular response; ``None`` for a simple response.
    tabular: list[list[str]] | None = None
    #: Error text; empty means success.
    error: str = ""
    #: Optional typed payload (JSON-compatible), shown only in JSON mode.
    data: Any = None
    #: Per-response output flags; only the first response's flags count.
    flags: Flags | None = None


# --- commands -----------------------------------------------------------------


class CommandRequest(Message, tag="megabus.cmd.v1.request", kw_only=True):
    """A command line for a node (``mb.v1.node.<node>.cmd``) or any node (``mb.v1.cmd``)."""

    #: The command in minimega's language, e.g. ``vm launch kvm foo[0-2]``.
    line: str
    #: Run the line inside this namespace (``-namespace``); empty: the node's active one.
    namespace: str = ""
    #: minicli ``Source``: empty when typed by a user, ``meshage`` when it came
    #: through ``mesh send``, or the namespace name for a fan-out copy.
    source: str = ""
    #: Record the line in the node's history.
    record: bool = True
    #: Who sent it (for logs); free text.
    client: str = ""


class CommandReply(Message, tag="megabus.cmd.v1.reply", kw_only=True):
    """One batch of responses to a :class:`CommandRequest`.

    A command that yields several batches (``read``) sends one reply per batch
    to the same reply subject; all but the last have ``more`` set.
    """

    #: The node that ran the command.
    node: str
    responses: list[Response] = []
    #: ``Responses.String()`` of this batch, as minimega renders it.
    rendered: str = ""
    #: More replies follow on the same reply subject.
    more: bool = False


class CommandWorking(Message, tag="megabus.cmd.v1.working", kw_only=True):
    """Keep-alive for a command that is still running.

    Sent to the reply subject every few seconds, so a client can use an idle
    timeout instead of a deadline that would cut off ``shell sleep 600``.
    """

    node: str
    #: Seconds since the command started.
    elapsed: float = 0.0


class ErrorReply(Message, tag="megabus.v1.error", kw_only=True):
    """Reply to a request that could not be decoded or served at all."""

    node: str = ""
    error: str


#: Everything a command's reply subject may carry.
CommandStream = CommandReply | CommandWorking | ErrorReply


# --- node presence, status, logs, events ------------------------------------


class Heartbeat(Message, tag="megabus.hb.v1", kw_only=True):
    """Published by every node on ``mb.v1.hb.<node>`` every heartbeat interval."""

    node: str
    version: str
    #: Seconds since the node started.
    uptime: float
    #: Heartbeat period in seconds; a node silent for three periods is gone.
    interval: float
    #: 1-minute load average.
    load: float = 0.0
    cpus: int = 0
    #: Memory in MB.
    mem_used: int = 0
    mem_total: int = 0
    vms: int = 0
    #: The NATS server URL the node is connected to.
    nats_url: str = ""
    #: Unix time of the heartbeat.
    ts: float = 0.0
    #: The node is stopping: the last beat, so that others forget it at once
    #: instead of after three missed beats.
    leaving: bool = False


class StatusUpdate(Message, tag="megabus.status.v1", kw_only=True):
    """Progress of a long-running command on ``mb.v1.status.<node>.<topic>``."""

    node: str
    topic: str
    #: Human text, as 2.8 prints it after ``[node]: ``.
    status: str
    #: Fraction done in [0, 1], when known.
    progress: float | None = None
    ts: float = 0.0


class LogRecord(Message, tag="megabus.log.v1", kw_only=True):
    """A log record on ``mb.v1.log.<node>.<level>``."""

    node: str
    level: str
    message: str
    logger: str = ""
    ts: float = 0.0


class VlanAliasEvent(Message, tag="megabus.vlans.v1.event", kw_only=True):
    """A VLAN alias change on ``mb.v1.vlans.<namespace>``; the KV bucket holds the truth."""

    namespace: str
    #: ``add``, ``delete``, ``range`` or ``blacklist``.
    action: str
    alias: str = ""
    vlan: int = 0
    node: str = ""


class Event(Message, tag="megabus.event.v1", kw_only=True):
    """A VM or cc-client lifecycle event on ``mb.v1.event.<namespace>.<kind>``."""

    node: str
    namespace: str
    kind: str
    name: str = ""
    detail: dict[str, str] = {}
    ts: float = 0.0


# --- scheduler ------------------------------------------------------------------


#: The type of a launch request's VM config (the node's ``VMConfig``).
C = TypeVar("C")


class LaunchRequest(Message, Generic[C], tag="megabus.sched.v1.launch", kw_only=True):
    """VMs the scheduler placed on a node (``mb.v1.node.<node>.launch``; 2.8's ``meshageVMLaunch``).

    Names are final (the scheduling node names unnamed VMs, so names stay
    unique across the namespace).
    """

    namespace: str
    #: ``kvm`` or ``container``.
    vm_type: str
    names: list[str]
    #: The ``vm config`` to launch them with: the node decodes ``LaunchRequest[VMConfig]``,
    #: so a config that does not match the model is refused with its JSON path.
    config: C
    #: The scheduling node.
    client: str = ""


class LaunchReply(Message, tag="megabus.sched.v1.reply", kw_only=True):
    """What a :class:`LaunchRequest` gave (2.8's ``meshageVMResponse``)."""

    node: str
    #: VMs launched (or attempted, as 2.8 counts them).
    launched: int = 0
    errors: list[str] = []


# --- pipes (2.8's miniplumber) ------------------------------------------------------
#
# A pipe ``<ns>//<name>`` is the subject family ``<root>.pipe.<ns>.<name>.*``
# (see :mod:`megabus.bus.subjects`); the node that hosts a pipe's ``via`` also
# takes writes on ``<root>.node.<node>.pipe``.

#: Reader key of :attr:`PipeData.values` meaning "every reader" (2.8's SCHEDULE_ALL).
PIPE_ALL_READERS = -1


class PipeData(Message, tag="megabus.pipe.v1.data", kw_only=True):
    """One message written to a pipe, on its ``data`` subject (2.8's MESSAGE_FORWARD).

    Every node that knows the pipe counts it; a node delivers the values
    whose reader is one of its own (:data:`PIPE_ALL_READERS`: all of them).
    """

    pipe: str
    #: The writing node.
    node: str
    #: Reader ID -> the value for it (per reader when the pipe has a ``via``).
    values: dict[int, str] = {}


class PipeReadersQuery(Message, tag="megabus.pipe.v1.readers_query", kw_only=True):
    """Which readers does a pipe have, on its ``readers`` subject (round-robin, random, via)."""

    pipe: str
    node: str


class PipeReaders(Message, tag="megabus.pipe.v1.readers", kw_only=True):
    """A node's answer to :class:`PipeReadersQuery`: its readers' IDs (maybe none)."""

    pipe: str
    node: str
    readers: list[int] = []


class PipeVia(Message, tag="megabus.pipe.v1.via", kw_only=True):
    """A pipe's ``via`` moved to ``host`` (empty: cleared), on its ``via`` subject."""

    pipe: str
    node: str
    host: str = ""


class PipeWrite(Message, tag="megabus.pipe.v1.write", kw_only=True):
    """A write sent to the host of the pipe's ``via`` (2.8's MESSAGE_VIA_WRITE)."""

    pipe: str
    node: str
    value: str


class PipeChunk(Message, tag="megabus.pipe.v1.chunk", kw_only=True):
    """A piece of a pipe message too large for one NATS message, on the same subject.

    The pieces of one message (same ``node`` and ``id``) travel in order on one
    connection; joined, they are the encoded message.
    """

    node: str
    id: int
    part: int
    parts: int
    data: bytes


#: Everything on a pipe's subjects and a node's pipe subject.
PipeMessage = PipeData | PipeReadersQuery | PipeReaders | PipeVia | PipeWrite | PipeChunk


__all__ = [
    "PIPE_ALL_READERS",
    "CommandReply",
    "CommandRequest",
    "CommandStream",
    "CommandWorking",
    "ErrorReply",
    "Event",
    "Flags",
    "Heartbeat",
    "LaunchReply",
    "LaunchRequest",
    "LogRecord",
    "Message",
    "PipeChunk",
    "PipeData",
    "PipeMessage",
    "PipeReaders",
    "PipeReadersQuery",
    "PipeVia",
    "PipeWrite",
    "Response",
    "StatusUpdate",
    "VlanAliasEvent",
]
