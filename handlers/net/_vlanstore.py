"""VLAN aliases, ranges and the blacklist, shared by every node through JetStream KV.

minimega 2.8 kept this table in each daemon and broadcast new aliases with
``mesh send`` (so an alias added by hand never reached other nodes, bug
#1645). Here the KV bucket ``<prefix>_vlans`` is the truth and every node
keeps a cache fed by a KV watcher, so an alias made on any node prints on all.

Allocation never asks a head node: a node claims the VLAN number with
create-if-absent (``vlan.<N>``), then the alias with create-if-absent
(``alias.<ns>.<alias>``). Whoever loses the VLAN race tries the next number;
whoever loses the alias race gives its VLAN back and uses the winner's. So two
nodes allocating at once never share a VLAN.

Keys (user text goes through :func:`encode_token`, which keeps a key inside
KV's ``[-/_=.a-zA-Z0-9]`` alphabet, one token per name)::

    vlan.<N>              claim: {"ns", "alias"} or {"blacklist": true}
    alias.<ns>.<alias>    {"vlan": N}
    range.<ns>            {"min", "max"} of a namespace's own range
    global                {"min", "max"}: cluster-wide override of the global range

The node's ``-vlanrange`` default is the global range when ``global`` is
absent, so ``clear vlans all`` (which drops everything) restores it instead of
2.8's hard-coded 101-4096.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import msgspec
import nats.errors
import nats.js.errors

from megabus.bus.codec import encode
from megabus.bus.election import through_election, until_answered
from megabus.bus.errors import CommandError
from megabus.bus.messages import VlanAliasEvent
from megabus.bus.stored import VlanAlias, VlanClaim, VlanRangeValue
from megabus.bus.subjects import MAX_TOKEN_BYTES, NameTooLongError

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from megabus.bus.subjects import Subjects

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Separates a namespace from an alias (``foo//DMZ``), as 2.8's ``AliasSep``.
ALIAS_SEP = "//"
#: VLAN IDs are 12 bits.
MAX_VLAN = 4096
#: Seconds to wait for a KV answer or for the watcher to see our own write.
TIMEOUT = 5.0
#: Copies of the bucket in a NATS cluster (R3 survives the loss of one server).
REPLICAS = 3

_NUMBER = re.compile(r"[+-]?[0-9]+")
_KEEP = re.compile(r"[A-Za-z0-9-]")
_INT64_MAX = 2**63 - 1


class BusLike(Protocol):
    """What the store needs of :class:`megabus.bus.connection.Bus`."""

    @property
    def nc(self) -> Client: ...
    @property
    def js(self) -> JetStreamContext: ...
    @property
    def subjects(self) -> Subjects: ...
    @property
    def node(self) -> str: ...


@dataclass(frozen=True)
class VlanRange:
    """One allocation range, half-open ``[min, max)``; ``next`` as 2.8 shows it."""

    min: int
    max: int
    next: int


def encode_token(text: str) -> str:
    """Encode any text as one KV key token: ``[A-Za-z0-9-]`` kept, the rest ``_XX``.

    The empty text becomes ``=``, so it stays a token of its own.
    """
    if not text:
        return "="
    out: list[str] = []
    for ch in text:
        if _KEEP.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"_{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def decode_token(token: str) -> str:
    """Invert :func:`encode_token`."""
    if token == "=":
        return ""
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "_":
            raw.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            raw += token[i].encode()
            i += 1
    return raw.decode("utf-8", "surrogatepass")


def parse_alias(namespace: str, text: str) -> tuple[str, str]:
    """Split ``ns//alias`` (the first ``//`` counts); plain text is in ``namespace``."""
    ns, sep, value = text.partition(ALIAS_SEP)
    if not sep:
        return namespace, text
    return ns, value


def parse_number(text: str) -> int | None:
    """Go's ``strconv.Atoi``: a signed decimal in int64 range, else ``None``."""
    if not _NUMBER.fullmatch(text):
        return None
    value = int(text)
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        return None
    return value


def _key_token(text: str, what: str) -> str:
    """:func:`encode_token`, refusing what would make a KV key NATS cannot carry
    (the server drops a client whose subject is too long; see ``bus/subjects.py``)."""
    tok = encode_token(text)
    if len(tok) > MAX_TOKEN_BYTES:
        raise NameTooLongError(
            f"{what} too long: {len(text)} characters "
            f"({len(tok)} bytes in a key, at most {MAX_TOKEN_BYTES})"
        )
    return tok


def _alias_key(ns: str, alias: str) -> str:
    return f"alias.{_key_token(ns, 'namespace name')}.{_key_token(alias, 'VLAN alias')}"


def _range_key(ns: str) -> str:
    return "global" if not ns else f"range.{_key_token(ns, 'namespace name')}"


async def _create_bucket_once(bus: BusLike, bucket: str, replicas: int) -> KeyValue:
    return await asyncio.wait_for(
        bus.js.create_key_value(bucket=bucket, history=1, replicas=replicas), TIMEOUT
    )


async def _create_bucket(bus: BusLike, bucket: str) -> KeyValue:
    """Create the bucket, replicated on three servers when NATS is a cluster of three or more.

    A lone server refuses replicas (10074) and a cluster short of three
    servers cannot place them (10005, 10023): those get one copy. Two nodes may
    create the bucket at once; the same config makes that idempotent.
    """
    for replicas in (REPLICAS, 1):
        try:
            return await until_answered(
                functools.partial(_create_bucket_once, bus, bucket, replicas), "VLAN bucket"
            )
        except nats.js.errors.APIError as err:
            if replicas == 1 or err.err_code not in (10074, 10005, 10023):
                raise
            logger.info("VLAN bucket: %d replicas refused (%s), using 1", replicas, err)
    raise AssertionError("unreachable")


class VlanStore:
    """The cluster's VLAN table, with a local cache kept by a KV watcher.

    Use :meth:`open`; reading methods (:meth:`print_vlan`, :meth:`aliases`...)
    answer from the cache without awaiting, writing ones wait until the cache
    has seen their own write, so a node always reads what it just wrote.
    """

    def __init__(self, bus: BusLike, kv: KeyValue, bucket: str, default: tuple[int, int]) -> None:
        self._bus = bus
        self._kv = kv
        self._subject_prefix = f"$KV.{bucket}."
        self.default_range = default
        self._claims: dict[int, VlanClaim] = {}
        self._aliases: dict[tuple[str, str], int] = {}
        self._by_vlan: dict[int, tuple[str, str]] = {}
        self._ranges: dict[str, tuple[int, int]] = {}
        self._global: tuple[int, int] | None = None
        self._keys: set[str] = set()
        # Deleted keys and the revision of their delete marker: creating such a
        # key again is one conditional put on that revision, where nats-py's
        # create() takes three round trips (a refused put, a get, a put) on
        # every key that ever existed, so after `clear vlans` each allocation
        # cost twice what it did on a fresh bucket.
        self._tombstones: dict[str, int] = {}
        # Node-local: the VLAN each range handed out last (2.8's Range.Next).
        self._next: dict[str, int] = {}
        # VLANs we lost a race for and the watcher has not shown us yet.
        self._lost: set[int] = set()
        self._seen = 0
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()
        self._watcher: Any = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------

    @classmethod
    async def open(cls, bus: BusLike, default_range: tuple[int, int]) -> VlanStore:
        """Open (creating if absent) the bucket and start watching it.

        Args:
            bus: the node's bus connection.
            default_range: the node's ``-vlanrange``, the global range unless
                ``vlans range`` set a cluster-wide one.
        """
        bucket = bus.subjects.bucket("vlans")
        try:
            kv = await until_answered(
                lambda: asyncio.wait_for(bus.js.key_value(bucket), TIMEOUT), "VLAN bucket"
            )
        except nats.js.errors.BucketNotFoundError:
            kv = await _create_bucket(bus, bucket)
        store = cls(bus, kv, bucket, default_range)
        # a node started while the cluster elects a meta leader waits for it
        # (one started 5 s into the lab's 7 s election exited)
        store._watcher = await until_answered(
            lambda: asyncio.wait_for(kv.watchall(), TIMEOUT), "VLAN bucket"
        )
        store._task = asyncio.create_task(store._watch(), name=f"vlanstore-{bucket}")
        try:
            await asyncio.wait_for(store._ready.wait(), TIMEOUT)
        except TimeoutError:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        """Stop the watcher; the bucket stays."""
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        watcher = self._watcher
        try:
            async for entry in watcher:
                if entry is None:
                    self._ready.set()
                    continue
                try:
                    self._apply(entry.key, entry.value, entry.operation, entry.revision)
                except Exception:  # a foreign or corrupt key must not stop the cache
                    logger.exception("bad VLAN entry %r", entry.key)
                self._seen = max(self._seen, entry.revision or 0)
                self._ready.set()
                self._changed.set()
                self._changed = asyncio.Event()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("VLAN watcher stopped")

    def _apply(self, key: str, value: bytes | None, op: str | None, revision: int) -> None:
        deleted = op in ("DEL", "PURGE")
        if deleted:
            self._keys.discard(key)
            self._tombstones[key] = revision
        else:
            self._keys.add(key)
            self._tombstones.pop(key, None)
        parts = key.split(".")
        if parts[0] == "vlan" and len(parts) == 2:
            vlan = int(parts[1])
            self._lost.discard(vlan)
            if deleted:
                self._claims.pop(vlan, None)
            else:
                self._claims[vlan] = msgspec.json.decode(value or b"{}", type=VlanClaim)
        elif parts[0] == "alias" and len(parts) == 3:
            name = (decode_token(parts[1]), decode_token(parts[2]))
            old = self._aliases.pop(name, None)
            if old is not None and self._by_vlan.get(old) == name:
                del self._by_vlan[old]
            if not deleted:
                vlan = msgspec.json.decode(value or b"", type=VlanAlias).vlan
                self._aliases[name] = vlan
                self._by_vlan[vlan] = name
        elif parts[0] == "range" and len(parts) == 2:
            ns = decode_token(parts[1])
            if deleted:
                self._ranges.pop(ns, None)
            else:
                r = msgspec.json.decode(value or b"", type=VlanRangeValue)
                self._ranges[ns] = (r.min, r.max)
            self._next.pop(ns, None)
        elif key == "global":
            if deleted:
                self._global = None
            else:
                r = msgspec.json.decode(value or b"", type=VlanRangeValue)
                self._global = (r.min, r.max)
            self._next.pop("", None)
        else:
            logger.debug("ignoring VLAN key %r (revision %d)", key, revision)

    async def _sync(self, revision: int) -> None:
        """Wait until the watcher has applied ``revision`` (read-your-writes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while self._seen < revision:
            remaining = deadline - loop.time()
            if remaining <= 0:
                logger.warning("VLAN cache lags behind revision %d", revision)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    # -- KV primitives (each returns the stream revision it wrote) -------------

    @staticmethod
    async def _kv_call(call: Callable[[], Awaitable[_T]]) -> _T:
        """One KV call, bounded by :data:`TIMEOUT` and sent again through an election."""
        return await through_election(lambda: asyncio.wait_for(call(), TIMEOUT), "VLAN bucket")

    async def _create(self, key: str, value: msgspec.Struct) -> int | None:
        """Create ``key``; ``None`` when it already exists."""
        data = msgspec.json.encode(value)
        tombstone = self._tombstones.get(key)
        if tombstone is not None:
            try:
                return await self._kv_call(lambda: self._kv.update(key, data, last=tombstone))
            except nats.js.errors.KeyWrongLastSequenceError:
                pass  # written or deleted again since: create() sorts out which
        try:
            return await self._kv_call(lambda: self._kv.create(key, data))
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError):
            # KeyNotFound: nats-py's create lost a race with a delete of the same
            # key (seen during server failovers); the caller treats it as taken
            return None

    async def _get(self, key: str) -> KeyValue.Entry | None:
        """The entry at ``key``; ``None`` when it does not exist (or was deleted)."""
        try:
            return await self._kv_call(lambda: self._kv.get(key))
        except nats.js.errors.KeyNotFoundError:
            return None

    async def _put(self, key: str, value: msgspec.Struct) -> int:
        data = msgspec.json.encode(value)
        return await self._kv_call(lambda: self._kv.put(key, data))

    async def _delete(self, key: str, last: int = 0) -> int | None:
        """Delete ``key`` (only at revision ``last`` when given); ``None`` if it moved on."""
        headers = {"KV-Operation": "DEL"}
        if last:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(last)
        try:
            ack = await through_election(
                lambda: self._bus.js.publish(
                    self._subject_prefix + key, b"", timeout=TIMEOUT, headers=headers
                ),
                "VLAN bucket",
            )
        except nats.js.errors.APIError as err:
            if err.err_code in (10071, 10164):
                return None
            raise
        return int(ack.seq)

    async def _publish(self, namespace: str, action: str, alias: str = "", vlan: int = 0) -> None:
        event = VlanAliasEvent(
            namespace=namespace, action=action, alias=alias, vlan=vlan, node=self._bus.node
        )
        data, headers = encode(event)
        try:
            await self._bus.nc.publish(self._bus.subjects.vlans(namespace), data, headers=headers)
        except nats.errors.Error as err:  # the KV holds the truth; the event is a courtesy
            logger.warning("cannot publish VLAN event: %s", err)

    # -- reading (cache only) --------------------------------------------------

    def print_vlan(self, namespace: str, vlan: int) -> str:
        """``ALIAS (N)`` in the alias's namespace, ``ns//ALIAS (N)`` elsewhere, else ``N``."""
        name = self._by_vlan.get(vlan)
        claim = self._claims.get(vlan)
        if name is None or (claim is not None and claim.blacklist):
            return str(vlan)
        ns, alias = name
        shown = alias if ns == namespace else f"{ns}{ALIAS_SEP}{alias}"
        return f"{shown} ({vlan})"

    def alias_of(self, namespace: str, vlan: int) -> str | None:
        """The alias of ``vlan`` as seen from ``namespace`` (``ns//A`` if foreign)."""
        name = self._by_vlan.get(vlan)
        if name is None:
            return None
        ns, alias = name
        return alias if ns == namespace else f"{ns}{ALIAS_SEP}{alias}"

    def vlan_of(self, namespace: str, text: str) -> int | None:
        """The VLAN of an existing alias (``ns//A`` reaches across), without allocating."""
        return self._aliases.get(parse_alias(namespace, text))

    def aliases(self, namespace: str) -> list[tuple[str, int]]:
        """``(alias, vlan)`` of every alias in ``namespace``, sorted by alias."""
        return sorted((a, v) for (ns, a), v in self._aliases.items() if ns == namespace)

    def blacklisted(self) -> list[int]:
        """Every blacklisted VLAN, ascending."""
        return sorted(v for v, c in self._claims.items() if c.blacklist)

    def global_range(self) -> tuple[int, int]:
        """The effective global range: the cluster override, else the node default."""
        return self._global or self.default_range

    def ranges(self) -> dict[str, VlanRange]:
        """Every range by namespace; ``""`` is the global one."""
        out: dict[str, VlanRange] = {}
        for ns, (lo, hi) in [("", self.global_range()), *self._ranges.items()]:
            out[ns] = VlanRange(lo, hi, self._next.get(ns, lo))
        return out

    def namespace_range(self, namespace: str) -> tuple[int, int] | None:
        """A namespace's own range, if it has one."""
        return self._ranges.get(namespace)

    # -- writing ---------------------------------------------------------------

    async def lookup(self, namespace: str, text: str) -> int:
        """The VLAN for ``text`` in ``namespace`` (2.8 ``lookupVLAN``).

        A number ``0 <= n < 4096`` is used as is (and blacklisted when it has no
        alias); ``ns//alias`` reaches across namespaces; an existing alias is
        reused; otherwise the next free VLAN of the namespace's range is taken.

        Raises:
            CommandError: ``invalid VLAN (0 <= vlan < 4096)``, ``out of VLANs``,
                or an empty alias.
        """
        ns, alias = parse_alias(namespace, text)
        number = parse_number(alias)
        if number is not None:
            if not 0 <= number < MAX_VLAN:
                raise CommandError("invalid VLAN (0 <= vlan < 4096)")
            if number not in self._claims:
                logger.warning("blacklisting manually specified VLAN %d", number)
                rev = await self._create(f"vlan.{number}", VlanClaim(blacklist=True))
                if rev is not None:
                    await self._sync(rev)
                    await self._publish(ns, "blacklist", vlan=number)
            return number
        if not alias:
            raise CommandError(f"invalid VLAN alias: {text!r}")
        known = self._aliases.get((ns, alias))
        if known is not None:
            return known
        return await self._allocate(ns, alias)

    def _candidates(self, ns: str) -> tuple[str, int, int]:
        if ns in self._ranges:
            lo, hi = self._ranges[ns]
            return ns, lo, hi
        lo, hi = self.global_range()
        return "", lo, hi

    def _next_free(self, ns: str) -> int:
        key, lo, hi = self._candidates(ns)
        vlan = lo
        while vlan < hi:
            if vlan in self._claims or vlan in self._lost:
                vlan += 1
                continue
            if key == "":
                # the global range never hands out a VLAN reserved by a namespace
                for other_lo, other_hi in self._ranges.values():
                    if other_lo <= vlan < other_hi:
                        vlan = other_hi
                        break
                else:
                    return vlan
                continue
            return vlan
        raise CommandError("out of VLANs")

    async def _allocate(self, ns: str, alias: str) -> int:
        akey = _alias_key(ns, alias)
        while True:
            vlan = self._next_free(ns)
            claim_rev = await self._create(f"vlan.{vlan}", VlanClaim(ns=ns, alias=alias))
            if claim_rev is None:
                self._lost.add(vlan)
                continue
            alias_rev = await self._create(akey, VlanAlias(vlan=vlan))
            if alias_rev is not None:
                self._next[self._candidates(ns)[0]] = vlan
                await self._sync(alias_rev)
                logger.info("adding VLAN alias %s//%s => %d", ns, alias, vlan)
                await self._publish(ns, "add", alias, vlan)
                return vlan
            # another node made this alias first: use theirs, give our VLAN back
            entry = await self._get(akey)
            winner = (
                msgspec.json.decode(entry.value or b"", type=VlanAlias).vlan
                if entry is not None
                else None
            )
            if winner != vlan:
                await self._delete(f"vlan.{vlan}", last=claim_rev)
            if entry is None or winner is None:
                # the winner's alias is gone again (cleared, or lost in a
                # server failover) before we could read it: start over
                continue
            await self._sync(entry.revision or 0)
            return winner

    async def add_alias(self, namespace: str, alias: str, vlan: int) -> None:
        """Add ``alias`` → ``vlan`` by hand (``vlans add``).

        Raises:
            CommandError: ``alias already in use`` or ``vlan already in use``.
        """
        ns, value = parse_alias(namespace, alias)
        if (ns, value) in self._aliases:
            raise CommandError("alias already in use")
        if not value:
            raise CommandError(f"invalid VLAN alias: {alias!r}")
        akey = _alias_key(ns, value)  # a name too long fails before anything is claimed
        if vlan in self._claims:
            raise CommandError("vlan already in use")
        claim_rev = await self._create(f"vlan.{vlan}", VlanClaim(ns=ns, alias=value))
        if claim_rev is None:
            raise CommandError("vlan already in use")
        alias_rev = await self._create(akey, VlanAlias(vlan=vlan))
        if alias_rev is None:
            await self._delete(f"vlan.{vlan}", last=claim_rev)
            raise CommandError("alias already in use")
        await self._sync(alias_rev)
        logger.info("adding VLAN alias %s//%s => %d", ns, value, vlan)
        await self._publish(ns, "add", value, vlan)

    async def set_range(self, namespace: str, lo: int, hi: int) -> None:
        """Reserve ``[lo, hi)`` for ``namespace``; ``""`` sets the cluster-wide global range.

        Raises:
            CommandError: ``expected min > max`` (sic, 2.8's text) when
                ``hi <= lo``, or ``range overlaps with another namespace: X``.
        """
        if hi <= lo:
            raise CommandError("expected min > max")
        for other, (other_lo, other_hi) in sorted(self._ranges.items()):
            if other == namespace or not other:
                continue
            if lo < other_hi and other_lo <= hi:
                raise CommandError(f"range overlaps with another namespace: {other}")
        for vlan in range(max(lo, 0), min(hi, MAX_VLAN)):
            if vlan in self._claims:
                logger.warning("detected hole in VLAN range %d -> %d: %d", lo, hi, vlan)
                break
        rev = await self._put(_range_key(namespace), VlanRangeValue(min=lo, max=hi))
        await self._sync(rev)
        self._next[namespace] = lo
        logger.info("setting range for %r: [%d, %d)", namespace, lo, hi)
        await self._publish(namespace, "range", vlan=lo)

    async def blacklist(self, vlan: int) -> None:
        """Take ``vlan`` out of allocation, dropping its alias if it had one."""
        name = self._by_vlan.get(vlan)
        rev = await self._put(f"vlan.{vlan}", VlanClaim(blacklist=True))
        if name is not None:
            rev = await self._delete(_alias_key(*name)) or rev
        await self._sync(rev)
        logger.info("blacklisting %d", vlan)
        await self._publish(name[0] if name else "", "blacklist", vlan=vlan)

    async def delete(self, namespace: str, prefix: str) -> None:
        """Drop ``namespace``'s aliases starting with ``prefix`` (2.8 ``Delete``).

        With an empty prefix the namespace's own range goes too (for ``""``,
        the cluster-wide global range, so the node default applies again).
        """
        rev = 0
        doomed = [
            (a, v)
            for (ns, a), v in list(self._aliases.items())
            if ns == namespace and a.startswith(prefix)
        ]
        for alias, vlan in doomed:
            rev = max(rev, await self._delete(_alias_key(namespace, alias)) or 0)
            claim = self._claims.get(vlan)
            if claim is not None and (claim.ns, claim.alias) == (namespace, alias):
                rev = max(rev, await self._delete(f"vlan.{vlan}") or 0)
        if not prefix and _range_key(namespace) in self._keys:
            rev = max(rev, await self._delete(_range_key(namespace)) or 0)
        if not prefix:
            self._next.clear()
        await self._sync(rev)
        for alias, vlan in doomed:
            await self._publish(namespace, "delete", alias, vlan)

    async def clear_all(self) -> None:
        """Forget every alias, range and blacklist entry in the cluster (``clear vlans all``)."""
        keys = sorted(self._keys)
        rev = 0
        for start in range(0, len(keys), 64):
            revs = await asyncio.gather(*(self._delete(k) for k in keys[start : start + 64]))
            rev = max([rev, *(r or 0 for r in revs)])
        await self._sync(rev)
        self._next.clear()
        self._lost.clear()
        logger.info("resetting VLAN state")
        await self._publish("", "delete")
