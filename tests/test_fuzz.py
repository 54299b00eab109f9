"""Property-based fuzzing, CI-sized (issue 15, part 3): garbage in, the documented error out.

Each parser and decoder that reads what a user or the network sends is fed
arbitrary and near-valid input; the property is that it returns a value or
raises its documented error type, never another exception and never a hang:

- the lexer, grammar compile and name ranges: :class:`LanguageError`;
- net, bond and disk specs: :class:`CommandError`;
- every bus message (``bus/messages.py``) through the codec: :class:`BusDecodeError`;
- every stored record (``bus/stored.py``) as the stores decode them: ``msgspec.DecodeError``;
- every cc frame, and the framing of a byte stream: :class:`FrameError` (or the
  stream's end, ``asyncio.IncompleteReadError``).

The run is short (``MEGABUS_FUZZ_EXAMPLES`` examples per property, 200 by
default: a few seconds each at most); ``ops/fuzz.py`` is the long run against
a live node. Hypothesis keeps no example database here, so a run leaves no
files behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import string
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nodes import ensure_grammar

from megabus.bus import cc_messages, messages, stored
from megabus.bus.codec import decode, encode
from megabus.bus.errors import BusDecodeError, CommandError
from megabus.handlers.language import LanguageError, expand, lex, unsplit
from megabus.handlers.language.grammar import Grammar
from megabus.handlers.language.ranges import MAX_NAMES
from megabus.handlers.model.bondspec import parse_bondspec
from megabus.handlers.model.config import VMConfig
from megabus.handlers.model.diskspec import parse_diskspec
from megabus.handlers.model.netspec import parse_netspec
from megabus.handlers.node import dispatch

EXAMPLES = int(os.environ.get("MEGABUS_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# --- input that looks like what users type ----------------------------------------------

#: Characters that mean something to the lexer, ranges and specs, weighted in.
SPECIAL = "\"'\\#[]-,:/. \t\n\r\x00*{}="
line_chars = st.characters(codec="utf-8") | st.sampled_from(SPECIAL)


def words_of_the_language() -> list[str]:
    """Every literal word of the registered patterns (``vm``, ``launch``, ``kvm``...)."""
    ensure_grammar()
    grammar = dispatch.load_grammar()
    words: set[str] = set()
    for _, pattern in grammar.patterns():
        for token in pattern.split():
            words.update(w for w in token.strip("<>[](){},").split(",") if w.isidentifier())
    return sorted(words)


@st.composite
def command_lines(draw: st.DrawFn) -> str:
    """A line of the language's words, mixed with garbage and ranges."""
    vocabulary = words_of_the_language()
    parts = draw(
        st.lists(
            st.sampled_from(vocabulary)
            | st.text(line_chars, max_size=12)
            | st.from_regex(r"[a-z]{1,4}\[[0-9,\-]{0,12}\]?", fullmatch=True)
            | st.integers(-5, 5000).map(str),
            max_size=8,
        )
    )
    return " ".join(parts)


# --- the language -----------------------------------------------------------------------------


@FUZZ
@given(st.text(line_chars, max_size=200))
def test_the_lexer_gives_words_or_a_language_error(line: str) -> None:
    try:
        items = lex(line)
    except LanguageError:
        return
    assert all(isinstance(item.value, str) for item in items)


@FUZZ
@given(st.lists(st.text(string.ascii_letters + string.digits + "_.", min_size=1), max_size=10))
def test_plain_words_lex_back_to_themselves(words: list[str]) -> None:
    assert [item.value for item in lex(" ".join(words))] == words


@pytest.fixture(scope="module")
def grammar() -> Grammar:
    ensure_grammar()
    return dispatch.load_grammar()


@FUZZ
@given(line=command_lines() | st.text(line_chars, max_size=120))
def test_grammar_compile_gives_a_command_or_a_language_error(grammar: Grammar, line: str) -> None:
    try:
        grammar.compile(line)
    except LanguageError:
        pass
    try:
        grammar.suggest(line)
    except LanguageError:
        pass


@FUZZ
@given(
    st.text(line_chars, max_size=60)
    | st.from_regex(r"[a-z]{0,3}(\[[0-9,\- ]{0,20}\]?)?(,[a-z0-9\[\]-]{0,8}){0,3}", fullmatch=True)
)
def test_ranges_expand_or_raise_a_language_error(spec: str) -> None:
    try:
        names = expand(spec)
    except LanguageError:
        return
    assert all(isinstance(n, str) for n in names)


@FUZZ
@given(
    st.lists(st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8), max_size=30)
)
def test_unsplit_folds_any_names_and_expands_back(names: list[str]) -> None:
    folded = unsplit(names)
    assert isinstance(folded, str)
    if names and all(n.isalpha() for n in names):  # no numbers: nothing to fold
        assert sorted(expand(folded)) == sorted(set(names))


@FUZZ
@given(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1))
def test_huge_ranges_are_refused_not_built(low: int, high: int) -> None:
    if high - low + 1 > MAX_NAMES:
        with pytest.raises(LanguageError, match="exceeds the limit"):
            expand(f"vm[{low}-{high}]")
    else:
        assert len(expand(f"vm[{low}-{high}]")) == max(0, high - low + 1)


# --- vm config specs ----------------------------------------------------------------------

spec_parts = st.lists(
    st.sampled_from(["LAN", "mega_bridge", "100", "e1000", "virtio-net-pci", "qinq",
                     "00:11:22:33:44:55", "", "a", "writeback", "ide", "virtio", "/x.qcow2",
                     "active-backup", "balance-slb", "lacp-active", "0", "1", "fast"])
    | st.text(line_chars, max_size=10),
    max_size=6,
).map(",".join)  # fmt: skip


@FUZZ
@given(spec_parts | st.text(line_chars, max_size=60))
def test_netspecs_parse_or_raise_a_command_error(spec: str) -> None:
    try:
        parse_netspec(spec, {"e1000", "virtio-net-pci"})
    except CommandError:
        pass


@FUZZ
@given(spec_parts | st.text(line_chars, max_size=60))
def test_bondspecs_parse_or_raise_a_command_error(spec: str) -> None:
    try:
        parse_bondspec(spec)
    except CommandError:
        pass


@FUZZ
@given(spec_parts | st.text(line_chars, max_size=60))
def test_diskspecs_parse_or_raise_a_command_error(spec: str) -> None:
    try:
        parse_diskspec(spec, "/nonexistent-megabus-files")
    except CommandError:
        pass


# --- bus messages, stored records, cc frames ----------------------------------------------------


def _tagged(base: type) -> list[type]:
    out, todo = [], [base]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__struct_config__.tag is not None and not getattr(cls, "__parameters__", ()):
            out.append(cls)
    return sorted(out, key=lambda c: c.__name__)


BUS_TYPES: list[Any] = [
    *_tagged(messages.Message),
    messages.LaunchRequest[VMConfig],  # as the scheduler decodes it
    messages.CommandStream,
    *([messages.PipeMessage] if hasattr(messages, "PipeMessage") else []),
]
STORED_TYPES: list[Any] = [*_tagged(stored.Stored), stored.CcRecord]
TAGS = sorted(
    {str(c.__struct_config__.tag) for c in _tagged(messages.Message) + _tagged(stored.Stored)}
    | {str(c.__struct_config__.tag) for c in typing.get_args(cc_messages.AnyFrame)}
)


def values(ints: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    """JSON-like values (msgpack takes only 64-bit integers; JSON any)."""
    scalars = st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text(max_size=20)
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
        ),
        max_leaves=20,
    )


json_values = values(st.integers())
msgpack_values = values(st.integers(-(2**63), 2**64 - 1))
field_names = st.sampled_from(
    ["type", "line", "node", "responses", "more", "rendered", "error", "names", "config",
     "id", "epoch", "vlan", "min", "max", "ns", "alias", "spec", "data", "client", "pipe"]
)  # fmt: skip


@st.composite
def near_messages(draw: st.DrawFn, fields: st.SearchStrategy[Any] = json_values) -> dict[str, Any]:
    """A JSON object with a real tag and fields of the right names and any types."""
    obj: dict[str, Any] = draw(st.dictionaries(field_names, fields, max_size=6))
    obj["type"] = draw(st.sampled_from(TAGS) | st.text(max_size=8))
    return obj


garbage = st.binary(max_size=300) | st.text(max_size=200).map(str.encode)


@FUZZ
@given(st.sampled_from(BUS_TYPES), garbage | near_messages().map(msgspec.json.encode))
def test_every_bus_message_decodes_or_raises_bus_decode_error(kind: Any, data: bytes) -> None:
    try:
        msg = decode(data, kind)
    except BusDecodeError:
        return
    if isinstance(msg, messages.Message):
        body, _ = encode(msg)  # whatever decodes encodes again
        assert decode(body, type(msg)) == msg


@FUZZ
@given(st.sampled_from(STORED_TYPES), garbage | near_messages().map(msgspec.json.encode))
def test_every_stored_record_decodes_or_raises_a_msgspec_error(kind: Any, data: bytes) -> None:
    try:
        msgspec.json.decode(data, type=kind)
    except msgspec.DecodeError:  # ValidationError is one
        pass


@FUZZ
@given(garbage | near_messages(msgpack_values).map(msgspec.msgpack.encode))
def test_every_cc_frame_decodes_or_raises_frame_error(body: bytes) -> None:
    try:
        frame = cc_messages.decode(body)
    except cc_messages.FrameError:
        return
    assert cc_messages.decode(cc_messages.encode(frame)[cc_messages.HEADER_SIZE :]) == frame


@FUZZ
@given(
    st.lists(garbage | near_messages(msgpack_values).map(msgspec.msgpack.encode), max_size=4),
    st.binary(max_size=40),
)
def test_a_cc_byte_stream_gives_frames_or_frame_errors_and_ends(
    bodies: list[bytes], noise: bytes
) -> None:
    # well-framed bodies of anything, then noise: every read ends in a frame,
    # a FrameError (the stream stays usable), too large (stop), or the end.
    stream = b"".join(len(b).to_bytes(4, "big") + b for b in bodies) + noise

    async def drain() -> int:
        reader = asyncio.StreamReader()
        reader.feed_data(stream)
        reader.feed_eof()
        reads = 0
        while True:
            reads += 1
            try:
                await cc_messages.read_frame(reader)
            except cc_messages.FrameTooLargeError:
                return reads
            except cc_messages.FrameError:
                continue
            except asyncio.IncompleteReadError:
                return reads

    reads = asyncio.run(asyncio.wait_for(drain(), 5))
    assert reads <= len(bodies) + len(noise) + 1


@FUZZ
@given(st.binary(max_size=200))
def test_the_cc_magic_is_found_or_refused_within_its_limit(noise: bytes) -> None:
    async def find(data: bytes) -> str:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        try:
            await cc_messages.expect_magic(reader, limit=64)
        except cc_messages.FrameError:
            return "refused"
        except asyncio.IncompleteReadError:
            return "ended"
        return "found"

    got = asyncio.run(asyncio.wait_for(find(noise + cc_messages.MAGIC), 5))
    assert got == (
        "found" if len(noise) <= 64 or cc_messages.MAGIC in noise[: 64 + 6] else "refused"
    )


# --- a live node, briefly -------------------------------------------------------------------


def test_a_live_node_answers_every_fuzz_case() -> None:
    # ops/fuzz.py's CI-sized run: its own secured node, random and mutated
    # lines and messages, every one answered, nothing internal, no task left
    script = Path(__file__).resolve().parent.parent / "ops" / "fuzz.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEGABUS_")}
    done = subprocess.run(
        [sys.executable, str(script), "--cases", "400", "--seed", "7", "--concurrency", "8"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    result = json.loads(done.stdout)
    assert result["ok"], result
    assert done.returncode == 0
    assert result["answered"] == result["cases"] == 400
    assert result["running_after"] == 0
