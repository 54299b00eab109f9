"""The published schema: every subject, who sends on it, and the JSON Schema of its messages.

A program in any language reads this document (``megabus schema`` prints it;
a node serves it on ``<prefix>.v1.node.<node>.schema``) and speaks the bus
with a plain NATS client and JSON: subjects are templates with ``{name}``
placeholders, messages are JSON Schema (made by msgspec from the structs in
:mod:`megabus.bus.messages`), and a message's ``type`` tag says its version.

:data:`SUBJECTS` describes each subject builder of
:class:`~megabus.bus.subjects.Subjects` once; a test holds the two together,
so a new subject cannot go unpublished.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import msgspec

from megabus.bus import cc_messages, messages
from megabus.bus.codec import SCHEMA_HEADER
from megabus.bus.messages import CommandSpec, Schema, SchemaRequest, SubjectSpec
from megabus.bus.security import NODE, OPERATOR, WATCHER
from megabus.bus.stored import CcRecord, VlanAlias, VlanClaim, VlanRangeValue
from megabus.bus.subjects import VERSION, Subjects

#: Grows by one with each added field of :class:`Schema` or entry of :data:`SUBJECTS`.
SCHEMA_VERSION = 1

TOKEN_ENCODING = (
    "Each {placeholder} is one subject token: characters of [A-Za-z0-9_-] stay, every "
    "other character becomes %XX per byte of its UTF-8 encoding (uppercase hex); the "
    "empty name is '%'. The prefix is 'mb' unless the node was given another."
)

# (builder, kind, direction, senders, messages, replies, doc)
_Entry = tuple[str, str, str, tuple[str, ...], tuple[Any, ...], tuple[Any, ...], str]
_COMMAND_REPLIES = (messages.CommandReply, messages.CommandWorking, messages.ErrorReply)

#: Every subject, by the :class:`Subjects` method that builds it.
SUBJECTS: tuple[_Entry, ...] = (
    (
        "node_cmd",
        "request",
        "client -> node",
        (OPERATOR, NODE),
        (messages.CommandRequest,),
        _COMMAND_REPLIES,
        "A command line for one node. Replies go to the request's reply subject: "
        "CommandWorking keep-alives while it runs, then CommandReply batches until one "
        "has more=false (use an idle timeout, not a deadline). ErrorReply: not served.",
    ),
    (
        "any_cmd",
        "request",
        "client -> any node",
        (OPERATOR, NODE),
        (messages.CommandRequest,),
        _COMMAND_REPLIES,
        "A command for whichever node takes it (cluster-wide state).",
    ),
    (
        "node_info",
        "request",
        "client -> node",
        (NODE,),
        (),
        (),
        "The node's micro-service info endpoint: a JSON object (name, nats_url, prefix, "
        "version, uptime, cmd, running).",
    ),
    (
        "node_schema",
        "request",
        "client -> node",
        (OPERATOR, NODE),
        (SchemaRequest,),
        (Schema,),
        "This document, with the node's command table. The node reads no payload.",
    ),
    (
        "node_launch",
        "request",
        "node -> node",
        (NODE,),
        (messages.LaunchRequest,),
        (messages.LaunchReply, messages.ErrorReply),
        "VMs the scheduler placed on a node.",
    ),
    (
        "node_pipe",
        "publish",
        "node -> node",
        (NODE,),
        (messages.PipeMessage,),
        (),
        "Pipe writes for the node that hosts a pipe's via.",
    ),
    (
        "file_info",
        "request",
        "node -> all",
        (NODE,),
        (messages.FileInfoRequest,),
        (messages.FileInfoReply,),
        "Who has a path (file, directory or glob)? Every other node answers with what it "
        "has (2.8's iomeshage INFO); the asker gathers replies until its wait ends.",
    ),
    (
        "file_whohas",
        "request",
        "node -> all",
        (NODE,),
        (messages.FilePartQuery,),
        (messages.FilePartHave,),
        "Who has one part of one version of a file (2.8's WHOHAS)? Every other node "
        "answers, has=false included.",
    ),
    (
        "node_file",
        "request",
        "node -> node",
        (NODE,),
        (messages.FileChunkRequest,),
        (messages.FileChunk, messages.ErrorReply),
        "Bytes of a file one node serves; refused when the file changed since its info.",
    ),
    (
        "heartbeat",
        "publish",
        "node -> all",
        (NODE,),
        (messages.Heartbeat,),
        (),
        "Every heartbeat interval; a node silent for three intervals is gone.",
    ),
    (
        "status",
        "publish",
        "node -> all",
        (NODE,),
        (messages.StatusUpdate,),
        (),
        "Progress of long-running commands.",
    ),
    ("log", "publish", "node -> all", (NODE,), (messages.LogRecord,), (), "Log records."),
    (
        "vlans",
        "publish",
        "node -> all",
        (NODE,),
        (messages.VlanAliasEvent,),
        (),
        "VLAN alias changes of a namespace (the KV bucket holds the truth).",
    ),
    (
        "event",
        "publish",
        "node -> all",
        (NODE,),
        (messages.Event,),
        (),
        "VM (kind 'vm': detail action launch/state/flush, state, old) and cc client "
        "(kind 'cc': action connect/disconnect) lifecycle events.",
    ),
    (
        "cc",
        "stream",
        "node -> node",
        (NODE,),
        (CcRecord, cc_messages.ResponseEvent),
        (),
        "A namespace's cc traffic: '.s.>' is its JetStream command stream, "
        "'.resp.<id>.<uuid>' publishes each response as it arrives.",
    ),
    (
        "pipe",
        "publish",
        "node -> node",
        (NODE,),
        (messages.PipeMessage,),
        (),
        "One pipe's traffic; {kind} is data, readers or via.",
    ),
)

#: Builders that name no subject of their own: wildcards over one above, queue
#: groups, stream and bucket names, the micro service name.
NOT_SUBJECTS = {
    "heartbeats": "heartbeat",
    "statuses": "status",
    "logs": "log",
    "all_vlans": "vlans",
    "events": "event",
    "pipes": "pipe",
    "node_queue": "",
    "all_queue": "",
    "bucket": "",
    "service_name": "",
}

#: Stored values (KV buckets) a program may read; published beside the messages.
STORED = (VlanClaim, VlanAlias, VlanRangeValue)

#: Who may subscribe to which subject family (nats-server permissions).
WATCHED = ("event", "status", "log", "heartbeat", "vlans")


def _template(builder: str) -> str:
    """The subject of ``builder`` with ``{parameter}`` for each argument."""
    method = getattr(Subjects("PREFIXMARK"), builder)
    params = list(inspect.signature(method).parameters.values())
    args = [f"MARK{p.name.upper()}MARK" for p in params if p.kind is not p.VAR_POSITIONAL]
    subject: str = method(*args)
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            subject += ".>"
        else:
            subject = subject.replace(f"MARK{p.name.upper()}MARK", "{" + p.name + "}")
    return subject.replace("PREFIXMARK", "{prefix}")


def _names(types: Iterable[Any]) -> list[str]:
    out: list[str] = []
    for t in types:
        for arg in getattr(t, "__args__", None) or (t,):
            out.append(getattr(arg, "__name__", str(arg)))
    return out


def message_schemas() -> dict[str, Any]:
    """JSON Schema of every message on the bus and every stored value, by name."""
    types: list[Any] = [t for entry in SUBJECTS for t in (*entry[4], *entry[5])]
    types.extend(STORED)
    _, components = msgspec.json.schema_components(types, ref_template="#/messages/{name}")
    return dict(sorted(components.items()))


def subject_specs() -> list[SubjectSpec]:
    """:data:`SUBJECTS` as the schema publishes them."""
    out = []
    for builder, kind, direction, senders, sent, replies, doc in SUBJECTS:
        readers = [WATCHER, OPERATOR] if builder in WATCHED else []
        out.append(
            SubjectSpec(
                name=builder,
                subject=_template(builder),
                kind=kind,
                direction=direction,
                messages=_names(sent),
                replies=_names(replies),
                senders=list(senders),
                doc=doc + (f" Readable by {', '.join(readers)}." if readers else ""),
            )
        )
    return out


def build_schema(
    *, megabus: str, commands: list[CommandSpec] | None = None, node: str = ""
) -> Schema:
    """The whole document; ``commands`` is the node's command table when there is one."""
    return Schema(
        schema_version=SCHEMA_VERSION,
        subject_version=VERSION,
        megabus=megabus,
        token_encoding=TOKEN_ENCODING,
        schema_header=SCHEMA_HEADER,
        subjects=subject_specs(),
        messages=message_schemas(),
        commands=commands or [],
        node=node,
    )


__all__ = ["NOT_SUBJECTS", "SCHEMA_VERSION", "SUBJECTS", "build_schema", "message_schemas"]
