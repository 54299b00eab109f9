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


# --- files (2.8's iomeshage) ----------------------------------------------------


class FileEntry(msgspec.Struct, kw_only=True):
    """One file a node serves, as an info reply names it (2.8's INFO answer)."""

    #: Path relative to the files directory.
    name: str
    size: int
    #: Permission bits (2.8 preserves them).
    mode: int = 0o644
    #: Modification time in nanoseconds: with ``size``, what the part requests
    #: quote so that a source refuses to serve a file that changed since.
    mtime_ns: int = 0
    #: murmur3-64 of the whole file, hex (2.8's ``-hashfiles`` hash).
    hash: str = ""
    #: murmur3-64 of each part of ``PART_SIZE`` bytes, in order.
    parts: list[str] = []
    #: ``file``, ``dir`` (created, so that empty directories travel) or ``link``.
    kind: str = "file"
    #: A link's target, as it is (never followed).
    link: str = ""


class FileInfoRequest(Message, tag="megabus.file.v1.info", kw_only=True):
    """Who has ``path`` (a file, a directory or a glob)? On ``mb.v1.file.info``, to every node."""

    path: str
    #: The asking node, which does not answer itself.
    node: str = ""


class FileInfoReply(Message, tag="megabus.file.v1.info_reply", kw_only=True):
    """One node's answer: the files it has under ``path`` (none: it has nothing)."""

    node: str
    files: list[FileEntry] = []


class FileChunkRequest(Message, tag="megabus.file.v1.chunk", kw_only=True):
    """Bytes ``[offset, offset+length)`` of a file, on ``mb.v1.node.<node>.file``.

    ``size`` and ``mtime_ns`` are what the info reply said: a source whose
    file has changed since answers with an error instead of other bytes.
    """

    name: str
    offset: int
    length: int
    size: int
    mtime_ns: int
    #: The version's hash: a node still fetching that version may serve the
    #: parts it has (2.8's ``XFER`` from any node that has the part).
    hash: str = ""


class FilePartQuery(Message, tag="megabus.file.v1.whohas", kw_only=True):
    """Who has part ``part`` of version ``hash`` of ``name``? (2.8's ``WHOHAS``)

    On ``mb.v1.file.whohas``; every other node answers, with ``has`` false
    when it has not, so that the asker need not wait for silence.
    """

    name: str
    hash: str
    part: int
    node: str = ""


class FilePartHave(Message, tag="megabus.file.v1.have", kw_only=True):
    """One node's answer to :class:`FilePartQuery`."""

    node: str
    has: bool = False
    #: The whole file's size and mtime (what a chunk request quotes); 0 for a
    #: node that has the part in a transfer of its own.
    size: int = 0
    mtime_ns: int = 0


class FileChunk(Message, tag="megabus.file.v1.chunk_reply", kw_only=True):
    """The bytes of one chunk (base64 in the JSON encoding)."""

    data: bytes


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


# --- the published schema (``megabus schema``, ``mb.v1.node.<node>.schema``) ------------


class SubjectSpec(msgspec.Struct, kw_only=True):
    """One subject of the bus, as a program outside megabus needs to know it."""

    #: Short name (the :class:`~megabus.bus.subjects.Subjects` method that builds it).
    name: str
    #: The subject with ``{placeholders}``: ``{prefix}.v1.node.{node}.cmd``. Each
    #: placeholder is one token, encoded as the schema's ``token_encoding`` says.
    subject: str
    #: ``request`` (request-reply), ``publish`` (one way) or ``stream`` (JetStream records).
    kind: str
    #: Who sends and who receives, e.g. ``client -> node``.
    direction: str
    #: Names (keys of the schema's ``messages``) of what is sent on the subject.
    messages: list[str]
    #: Names of the replies of a ``request`` subject.
    replies: list[str] = []
    #: Roles allowed to send (publish or request) on it.
    senders: list[str] = []
    doc: str = ""


class CommandSpec(msgspec.Struct, kw_only=True):
    """One handler of the node's command table (2.8's ``minimega -cli`` entry)."""

    #: minicli patterns, e.g. ``vlans <add,> <alias> <vlan>``.
    patterns: list[str]
    #: The command family (module of ``handlers/commands``) that serves it.
    family: str
    short: str
    long: str = ""
    #: ``simple``, ``broadcast`` or ``vmtarget``.
    kind: str = "simple"


class SchemaRequest(Message, tag="megabus.schema.v1.request", kw_only=True):
    """Asks a node for its :class:`Schema` (the node reads nothing of it: any payload will do)."""


class Schema(Message, tag="megabus.schema.v1", kw_only=True):
    """Everything a program needs to use the bus without megabus's code.

    ``schema_version`` grows when a field is added (a minor change); a new
    major version is a new tag and a new subject version.
    """

    schema_version: int
    #: The subject version, the ``v1`` of ``mb.v1....``.
    subject_version: str
    #: The megabus version that produced it.
    megabus: str
    #: How a name becomes one subject token.
    token_encoding: str
    #: The header that repeats a message's ``type`` tag.
    schema_header: str
    subjects: list[SubjectSpec]
    #: JSON Schema of each message, by name; ``$ref`` point at ``#/messages/<name>``.
    messages: dict[str, Any]
    #: The node's command table (empty in a schema made without a node's commands).
    commands: list[CommandSpec] = []
    #: The node that served it (empty when printed by ``megabus schema``).
    node: str = ""


__all__ = [
    "PIPE_ALL_READERS",
    "CommandReply",
    "CommandRequest",
    "CommandSpec",
    "CommandStream",
    "CommandWorking",
    "ErrorReply",
    "Event",
    "FileChunk",
    "FileChunkRequest",
    "FileEntry",
    "FileInfoReply",
    "FileInfoRequest",
    "FilePartHave",
    "FilePartQuery",
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
    "Schema",
    "SchemaRequest",
    "StatusUpdate",
    "SubjectSpec",
    "VlanAliasEvent",
]
