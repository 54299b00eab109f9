"""The cc wire: frames between a node and its guest agents, and their framing.

This module runs inside guests too, on Python 3.9 or later with msgspec as its
only dependency, so it imports nothing else and its annotations use
``Optional``/``List``/``Dict`` (msgspec evaluates them at run time, where
``X | None`` fails before 3.10).

A connection starts with magic bytes in both directions (:data:`MAGIC`; the
reader skips anything before them, which is how a virtio-serial port left
with stale bytes by an earlier session resynchronises), then carries frames:
a 4-byte big-endian length and that many bytes of msgpack, one tagged
:class:`Frame`. A frame longer than :data:`MAX_FRAME` is refused before it is
read. Tags are versioned (``megabus.cc.v1.<kind>``); a new field always has a
default, and unknown fields are ignored, so an agent one version apart keeps
working. :data:`PROTOCOL` changes only when that is no longer true; a node
tells an agent older than :data:`MIN_PROTOCOL` so, once (:class:`TooOld`).
"""

# The agent runs on Python 3.9: keep typing's spellings.
# ruff: noqa: UP006, UP007, UP035, UP045

from __future__ import annotations

import asyncio
import struct
from typing import Dict, List, Optional, Union

import msgspec

#: Bytes each side writes first (2.8 wrote ``RON``; ours carry the framing's version).
MAGIC = b"MBCC1\n"
#: The protocol this side speaks, and the oldest one a node still accepts.
PROTOCOL = 1
MIN_PROTOCOL = 1
#: Largest frame either side accepts (bytes of msgpack after the length).
MAX_FRAME = 8 * 1024 * 1024
#: Size of a file chunk in a :class:`FileData` frame.
CHUNK_SIZE = 1024 * 1024
#: Largest stdout or stderr a response carries; the rest is cut with a note.
MAX_OUTPUT = 4 * 1024 * 1024
#: Seconds between heartbeats (both ways), and the silence after which an
#: agent drops its connection and redials (2.8: round(2.5 x 5 s)).
HEARTBEAT_RATE = 5.0
SILENCE_TIMEOUT = 13.0
#: The default TCP port of ``cc listen`` and of agents (2.8's miniccc).
DEFAULT_PORT = 9002
#: Feature of agents and nodes that carry cc stdio in :class:`Pipe` frames.
FEATURE_PIPES = "pipes"
#: Feature of agents and nodes that acknowledge responses (:class:`ResponseAck`): an
#: agent keeps each response until the node has it on disk, and sends it again after
#: a redial, since bytes written to a node that dies before reading them are lost.
FEATURE_ACKS = "acks"
#: Largest piece of pipe data in one :class:`Pipe` frame (well under :data:`MAX_FRAME`).
PIPE_PIECE = 1024 * 1024

_LENGTH = struct.Struct(">I")


class FrameError(Exception):
    """A frame that cannot be read: too long, truncated or not a frame."""


class FrameTooLargeError(FrameError):
    """A frame longer than :data:`MAX_FRAME`: the stream cannot be trusted after it."""


class ResponseEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A response as the node publishes it on ``<root>.cc.<namespace>.resp.<id>.<uuid>``."""

    namespace: str
    id: int
    uuid: str
    node: str = ""
    hostname: str = ""
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0


class Frame(msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=True):
    """Base of every frame: tagged, keyword-only."""


# --- parts ------------------------------------------------------------------


class Process(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A background process of the agent."""

    pid: int
    command: List[str] = []


class ClientInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What an agent says about itself (2.8's ``ron.Client``)."""

    uuid: str
    hostname: str = ""
    arch: str = ""
    os: str = ""
    #: The agent's package version.
    version: str = ""
    ips: List[str] = []
    macs: List[str] = []
    #: Tags set in the guest (``megabus agent --tag k v``); the node applies them to the VM.
    tags: Dict[str, str] = {}
    processes: List[Process] = []


class ConnTest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``cc test-conn``: dial ``endpoint`` (``tcp://ip:port``) until ``wait`` seconds pass."""

    endpoint: str
    wait: float = 0.0
    #: UDP only: the packet to send, which must get at least one byte back.
    packet: bytes = b""


class Command(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One cc command as an agent runs it (2.8's ``ron.Command``, less node-side fields)."""

    id: int
    background: bool = False
    command: List[str] = []
    #: Files to fetch first, relative to the node's files directory.
    files_send: List[str] = []
    #: Guest paths to send back after the command ran.
    files_recv: List[str] = []
    conn_test: Optional[ConnTest] = None
    #: A background PID to kill; -1 kills them all; 0 kills none.
    pid: int = 0
    #: Kill background processes whose command line holds this text.
    kill_all: str = ""
    #: A new agent log level (``debug`` ... ``fatal``).
    level: str = ""
    once: bool = False
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""


# --- agent -> node ------------------------------------------------------------


class Hello(Frame, tag="megabus.cc.v1.hello"):
    """The agent's first frame."""

    client: ClientInfo
    protocol: int = PROTOCOL
    #: The last command this agent ran, and the node's command epoch it came from,
    #: so a redial does not run anything twice.
    last_command_id: int = 0
    epoch: str = ""
    #: What this agent can do beyond the protocol (:data:`FEATURE_PIPES`); older agents send none.
    features: List[str] = []


class Info(Frame, tag="megabus.cc.v1.info"):
    """The agent's heartbeat: its client info now."""

    client: ClientInfo


class Response(Frame, tag="megabus.cc.v1.response"):
    """The outcome of one command (2.8's ``ron.Response``)."""

    id: int
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    #: Foreground commands record their exit code on the node (``cc exitcode``).
    record_exit_code: bool = False


class FileRequest(Frame, tag="megabus.cc.v1.file_request"):
    """The agent asks for a file of the node's files directory (``cc send``)."""

    id: int
    name: str


# --- both ways ------------------------------------------------------------------


class FileData(Frame, tag="megabus.cc.v1.file_data"):
    """A chunk of a file: node -> agent for ``cc send``, agent -> node for ``cc recv``.

    ``error`` set means the file cannot be had; the transfer ends there.
    """

    id: int
    name: str
    offset: int = 0
    data: bytes = b""
    perm: int = 0o644
    eof: bool = False
    error: str = ""


class Tunnel(Frame, tag="megabus.cc.v1.tunnel"):
    """One stream of ``cc tunnel``/``cc rtunnel``: open, data, close.

    The side that accepted a TCP connection opens the stream (``host`` and
    ``port`` name where the other side must dial); ``data`` flows both ways;
    ``close`` (with ``error`` when dialing failed) ends it.
    """

    stream: int
    op: str
    host: str = ""
    port: int = 0
    data: bytes = b""
    error: str = ""


class Heartbeat(Frame, tag="megabus.cc.v1.heartbeat"):
    """Liveness; carries nothing."""


class Error(Frame, tag="megabus.cc.v1.error"):
    """A frame that was refused, or a failure the other side should log."""

    error: str


class Pipe(Frame, tag="megabus.cc.v1.pipe"):
    """cc stdio through the node's pipes (2.8's ``MESSAGE_PIPE``); only with :data:`FEATURE_PIPES`.

    agent -> node: ``new_reader`` / ``close_reader`` (a program's ``stdin=``),
    ``new_writer`` / ``close_writer`` (``stdout=``, ``stderr=``), ``data`` (a
    line the program wrote). node -> agent: ``data`` (input for the readers'
    programs, at most :data:`PIPE_PIECE` bytes a frame), ``close_reader`` (the
    pipe is gone: the programs' stdin ends). ``pipe`` is the name the command
    gave; the node puts it in the agent's namespace.
    """

    pipe: str
    op: str
    data: str = ""


# --- cc mount: the guest's filesystem, one operation per frame pair ----------------


class FsStat(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``lstat`` of a guest path (times in nanoseconds)."""

    mode: int
    ino: int = 0
    nlink: int = 1
    uid: int = 0
    gid: int = 0
    size: int = 0
    rdev: int = 0
    blocks: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0


class FsRequest(Frame, tag="megabus.cc.v1.fs_request"):
    """node -> agent: one filesystem operation for ``cc mount`` (also FUSE helper -> node).

    ``op`` is a FUSE operation (``getattr``, ``readdir``, ``read``, ``write``,
    ``create``, ``rename``...); ``path`` is absolute in the guest, ``path2``
    the second path of ``rename``/``link``/``symlink``. The agent answers
    every request with an :class:`FsReply` of the same ``mount`` and ``id``.
    """

    mount: int
    id: int
    op: str
    path: str = "/"
    path2: str = ""
    offset: int = 0
    size: int = 0
    data: bytes = b""
    mode: int = 0
    flags: int = 0
    uid: int = -1
    gid: int = -1
    atime_ns: int = -1
    mtime_ns: int = -1


class FsReply(Frame, tag="megabus.cc.v1.fs_reply"):
    """agent -> node: the outcome of an :class:`FsRequest`; ``errno`` 0 is success."""

    mount: int
    id: int
    errno: int = 0
    stat: Optional[FsStat] = None
    names: List[str] = []
    data: bytes = b""
    target: str = ""
    size: int = 0
    statfs: Dict[str, int] = {}


# --- node -> agent ----------------------------------------------------------------


class Welcome(Frame, tag="megabus.cc.v1.welcome"):
    """The node accepted the agent's hello."""

    protocol: int = PROTOCOL
    heartbeat: float = HEARTBEAT_RATE
    #: The node's name, for the agent's log.
    node: str = ""
    #: What this node can do beyond the protocol (:data:`FEATURE_PIPES`); older nodes send none.
    features: List[str] = []


class ResponseAck(Frame, tag="megabus.cc.v1.response_ack"):
    """The node recorded response ``id``; only to agents with :data:`FEATURE_ACKS`."""

    id: int


class TooOld(Frame, tag="megabus.cc.v1.too_old"):
    """The agent's protocol is no longer spoken; sent once, then the node hangs up."""

    error: str


class Commands(Frame, tag="megabus.cc.v1.commands"):
    """New commands for this agent, in ID order."""

    epoch: str = ""
    commands: List[Command] = []


class ListenTunnel(Frame, tag="megabus.cc.v1.listen_tunnel"):
    """``cc rtunnel``: listen on ``port`` in the guest; each connection dials ``host:dst``."""

    port: int
    host: str
    dst: int


AnyFrame = Union[
    Hello,
    Info,
    Response,
    FileRequest,
    FileData,
    Tunnel,
    Heartbeat,
    Error,
    Welcome,
    ResponseAck,
    TooOld,
    Commands,
    ListenTunnel,
    FsRequest,
    FsReply,
    Pipe,
]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyFrame)


def encode(frame: Frame) -> bytes:
    """The frame with its length prefix, ready to write."""
    body = _encoder.encode(frame)
    if len(body) > MAX_FRAME:
        raise FrameTooLargeError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return _LENGTH.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    """The body length announced by a 4-byte header.

    Raises:
        FrameError: longer than :data:`MAX_FRAME`.
    """
    (length,) = _LENGTH.unpack(header)
    if length > MAX_FRAME:
        raise FrameTooLargeError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    return int(length)


def decode(body: bytes) -> AnyFrame:
    """One frame from its body (without the length).

    Raises:
        FrameError: not a frame this version knows.
    """
    try:
        frame: AnyFrame = _decoder.decode(body)
        return frame
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        raise FrameError(f"bad frame: {err}") from err


HEADER_SIZE = _LENGTH.size


async def read_frame(reader: asyncio.StreamReader) -> AnyFrame:
    """The next frame of ``reader``.

    Raises:
        asyncio.IncompleteReadError: the stream ended (mid-frame or between frames).
        FrameTooLargeError: the announced length is over the limit (nothing more is read).
        FrameError: the body is not a frame; the stream stays usable.
    """
    header = await reader.readexactly(HEADER_SIZE)
    body = await reader.readexactly(frame_length(header))
    return decode(body)


async def expect_magic(reader: asyncio.StreamReader, limit: int = 1024 * 1024) -> None:
    """Read until :data:`MAGIC`, skipping whatever came before it (at most ``limit`` bytes).

    Raises:
        asyncio.IncompleteReadError: the stream ended first.
        FrameError: ``limit`` bytes went by without the magic.
    """
    window = b""
    skipped = 0
    while True:
        byte = await reader.readexactly(1)
        window = (window + byte)[-len(MAGIC) :]
        if window == MAGIC:
            return
        skipped += 1
        if skipped > limit:
            raise FrameError(f"no {MAGIC!r} in the first {limit} bytes")
