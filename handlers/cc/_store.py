"""A namespace's cc commands, durable in a JetStream stream.

Every node serving the namespace follows the stream with an ordered consumer,
so a command created anywhere reaches every node's agents at once, a node that
restarts replays the commands it had, and an agent that connects later still
gets the ones meant for it. Subjects (under ``<root>.cc.<ns>.s``):

* ``cmd.<id>``: the command (one message per subject; deleting writes a tombstone);
  IDs are taken with create-if-absent, so two nodes never take the same one;
* ``done.<id>.<uuid>``: a client got (and later answered) the command, which
  is how ``exec-once`` runs at most once per client, across agent and node
  restarts, and how ``cc commands`` counts responses;
* ``epoch``: ``clear cc commands`` starts a new epoch (IDs from 1 again).

Without a bus (unit tests) the store keeps the same state in memory only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec
import nats.errors
import nats.js.api
import nats.js.errors
from nats.aio.msg import Msg

from megabus.bus.cc_messages import Command
from megabus.bus.election import through_election, until_answered
from megabus.bus.stored import CcCommandRecord, CcDoneRecord, CcEpochRecord, CcRecord, Filter

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

    from megabus.bus.connection import Bus

logger = logging.getLogger(__name__)

#: Seconds allowed for one JetStream call and for the first replay.
TIMEOUT = 5.0
_WRONG_LAST_SEQUENCE = 10071
#: Copies of the stream when NATS is a cluster of three or more, so a lost
#: server loses no command (the VLAN bucket does the same).
REPLICAS = 3
#: A lone server refuses replicas (10074); a cluster short of three cannot place them.
_REPLICAS_REFUSED = (10074, 10005, 10023)


_decoder = msgspec.json.Decoder(CcRecord)


#: Longest encoded namespace in a stream name: JetStream allows 255 characters in
#: all, and the prefix and ``cc_`` come first (found by ops/fuzz.py: a long
#: namespace made every cc command an internal error).
MAX_STREAM_TOKEN = 160


def stream_token(namespace: str) -> str:
    """``namespace`` as part of a stream name ([A-Za-z0-9-] kept, the rest ``_XX``).

    One longer than :data:`MAX_STREAM_TOKEN` becomes ``_h`` and its SHA-256
    (``_h`` never starts an encoding, whose escapes are upper-case hex), so
    every node still names the namespace's stream alike.
    """
    tok = "".join(
        ch
        if ch.isascii() and (ch.isalnum() or ch == "-")
        else "".join(f"_{b:02X}" for b in ch.encode())
        for ch in namespace
    )
    if len(tok) <= MAX_STREAM_TOKEN:
        return tok
    return "_h" + hashlib.sha256(namespace.encode(errors="surrogateescape")).hexdigest()


@dataclass
class CommandState:
    """One command and who got it."""

    record: CcCommandRecord
    #: Clients that were handed the command.
    sent: set[str] = field(default_factory=set)
    #: Clients whose response came back (2.8's ``CheckedIn``), in arrival order.
    checked_in: list[str] = field(default_factory=list)


#: Called after a command appears (``True``) or goes (``False``).
ChangeHook = Callable[[CommandState, bool], None]


class CommandStore:
    """The commands of one namespace."""

    def __init__(self, namespace: str, bus: Bus | None, on_change: ChangeHook) -> None:
        self.namespace = namespace
        self._bus = bus
        self._on_change = on_change
        self.epoch = secrets.token_hex(8)
        self.commands: dict[int, CommandState] = {}
        #: Highest ID seen in this epoch, tombstones included.
        self._max_id = 0
        #: Per stream subject, the sequence applied last (replays and our own
        #: acks both apply records; only a newer one may change anything).
        self._seen: dict[str, int] = {}
        self._sub: nats.js.JetStreamContext.PushSubscription | None = None
        if bus is not None:
            root = bus.subjects.cc(namespace, "s")
            self._root = root
            self.stream = bus.subjects.bucket(f"cc_{stream_token(namespace)}")

    # -- opening and closing ------------------------------------------------------------

    async def open(self) -> None:
        """Create or find the stream and replay it (no-op without a bus)."""
        if self._bus is None:
            return
        js = self._bus.js
        config = nats.js.api.StreamConfig(
            name=self.stream,
            subjects=[f"{self._root}.>"],
            max_msgs_per_subject=1,
            storage=nats.js.api.StorageType.FILE,
        )
        info = await self._add_stream(js, config)
        last = info.state.last_seq
        await self._publish_epoch_if_absent()
        replayed = asyncio.Event()
        if last == 0:
            replayed.set()

        async def on_msg(msg: Msg) -> None:
            seq = msg.metadata.sequence.stream
            self._apply_msg(msg.subject, seq, msg.data)
            if seq >= last:
                replayed.set()

        self._sub = await until_answered(
            lambda: js.subscribe(
                f"{self._root}.>", cb=on_msg, ordered_consumer=True, stream=self.stream
            ),
            f"cc {self.namespace}",
        )
        try:
            await asyncio.wait_for(replayed.wait(), TIMEOUT)
        except TimeoutError:
            logger.warning("cc %s: stream replay did not finish in %ss", self.namespace, TIMEOUT)

    async def _add_stream(
        self, js: JetStreamContext, config: nats.js.api.StreamConfig
    ) -> nats.js.api.StreamInfo:
        what = f"cc {self.namespace}"
        for replicas in (REPLICAS, 1):
            config.num_replicas = replicas
            try:
                # JetStream answers a create once the new stream has a leader:
                # with a server of three down that took 5-8 s (a joined host's
                # first `vm start` failed); the same create again is harmless
                return await until_answered(
                    lambda: asyncio.wait_for(js.add_stream(config), TIMEOUT), what
                )
            except nats.js.errors.APIError as err:
                if replicas > 1 and err.err_code in _REPLICAS_REFUSED:
                    logger.info("cc %s: %d replicas refused, using 1", self.namespace, replicas)
                    continue
                if not isinstance(err, nats.js.errors.BadRequestError):
                    raise
                # made already (by another node, or before a restart): use it as it is
                return await until_answered(
                    lambda: asyncio.wait_for(js.stream_info(self.stream), TIMEOUT), what
                )
        raise AssertionError("unreachable")

    async def _publish_epoch_if_absent(self) -> None:
        record = CcEpochRecord(epoch=self.epoch)
        try:
            # right after a replicated stream is made its leader may not be elected yet
            await self._publish(
                f"{self._root}.epoch",
                msgspec.json.encode(record),
                headers={"Nats-Expected-Last-Subject-Sequence": "0"},
            )
        except nats.js.errors.APIError as err:
            if err.err_code != _WRONG_LAST_SEQUENCE:
                raise

    async def close(self) -> None:
        """Stop following the stream."""
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as err:
                logger.debug("cc %s: unsubscribe: %s", self.namespace, err)

    # -- applying records -----------------------------------------------------------------

    def _apply_msg(self, subject: str, seq: int, data: bytes) -> None:
        try:
            record = _decoder.decode(data)
        except msgspec.DecodeError as err:
            logger.error("cc %s: bad stream record at %d: %s", self.namespace, seq, err)
            return
        self._apply(record, subject, seq)

    def _apply(self, record: CcRecord, subject: str = "", seq: int = 0) -> None:
        if subject:
            if self._seen.get(subject, 0) >= seq:
                return
            self._seen[subject] = seq
        match record:
            case CcEpochRecord(epoch=epoch):
                if epoch != self.epoch:
                    self.epoch = epoch
                    self._reset()
            case CcCommandRecord() if record.epoch == self.epoch:
                self._max_id = max(self._max_id, record.id)
                state = self.commands.get(record.id)
                if record.deleted:
                    if state is not None:
                        del self.commands[record.id]
                        self._on_change(state, False)
                elif state is None:
                    state = self.commands[record.id] = CommandState(record)
                    self._on_change(state, True)
            case CcDoneRecord() if record.epoch == self.epoch:
                state = self.commands.get(record.id)
                if state is not None:
                    state.sent.add(record.uuid)
                    if record.responded and record.uuid not in state.checked_in:
                        state.checked_in.append(record.uuid)
            case _:
                logger.debug("cc %s: record of an old epoch skipped", self.namespace)

    def _reset(self) -> None:
        gone = list(self.commands.values())
        self.commands.clear()
        self._max_id = 0
        for subject in [s for s in self._seen if not s.endswith(".epoch")]:
            del self._seen[subject]
        for state in gone:
            self._on_change(state, False)

    # -- changes ------------------------------------------------------------------------------

    async def create(self, spec: Command, prefix: str, filt: Filter | None, node: str) -> int:
        """Add a command; returns its ID."""
        while True:
            cmd_id = self._max_id + 1
            spec.id = cmd_id
            record = CcCommandRecord(
                id=cmd_id, epoch=self.epoch, spec=spec, prefix=prefix, filter=filt, node=node
            )
            if self._bus is None:
                self._apply(record)
                return cmd_id
            subject = f"{self._root}.cmd.{cmd_id}"
            try:
                ack = await self._publish(
                    subject,
                    msgspec.json.encode(record),
                    headers={"Nats-Expected-Last-Subject-Sequence": "0"},
                )
            except nats.js.errors.APIError as err:
                if err.err_code != _WRONG_LAST_SEQUENCE:
                    raise
                # another node took this ID; our replay will catch up with it
                self._max_id = cmd_id
                continue
            self._apply(record, subject, ack.seq)
            return cmd_id

    async def delete(self, cmd_id: int) -> None:
        """Delete one command (a tombstone in the stream)."""
        state = self.commands.get(cmd_id)
        if state is None:
            return
        record = msgspec.structs.replace(state.record, deleted=True)
        await self._write(f"cmd.{cmd_id}", record)

    async def done(self, cmd_id: int, uuid: str, *, responded: bool) -> None:
        """CcRecord that ``uuid`` got (or answered) command ``cmd_id``."""
        state = self.commands.get(cmd_id)
        if state is None:
            return
        if responded and uuid in state.checked_in:
            return
        if not responded and uuid in state.sent:
            return
        record = CcDoneRecord(id=cmd_id, epoch=self.epoch, uuid=uuid, responded=responded)
        await self._write(f"done.{cmd_id}.{uuid}", record)

    async def clear(self) -> None:
        """``clear cc commands``: a new epoch, the old records purged."""
        record = CcEpochRecord(epoch=secrets.token_hex(8))
        await self._write("epoch", record)
        if self._bus is not None:
            for part in ("cmd", "done"):
                try:
                    await self._bus.js.purge_stream(self.stream, subject=f"{self._root}.{part}.>")
                except nats.js.errors.Error as err:
                    logger.warning("cc %s: purge %s: %s", self.namespace, part, err)

    async def _write(self, tail: str, record: CcRecord) -> None:
        if self._bus is None:
            self._apply(record)
            return
        subject = f"{self._root}.{tail}"
        ack = await self._publish(subject, msgspec.json.encode(record))
        self._apply(record, subject, ack.seq)

    async def _publish(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> nats.js.api.PubAck:
        """Publish to the stream, waiting out a leader election."""
        bus = self._bus
        assert bus is not None
        return await through_election(
            lambda: bus.js.publish(subject, data, timeout=TIMEOUT, headers=headers),
            f"cc {self.namespace}",
        )

    async def destroy(self) -> None:
        """Delete the namespace's stream (the namespace is being destroyed)."""
        await self.close()
        if self._bus is not None:
            try:
                await self._bus.js.delete_stream(self.stream)
            except nats.js.errors.Error as err:
                logger.warning("cc %s: delete stream: %s", self.namespace, err)
