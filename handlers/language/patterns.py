"""Parse minicli pattern strings into items.

A pattern such as ``vm net <bond,> <vm target> [qinq,]`` is a sequence of
items (minimega 2.8 section 1.1): literals, required strings ``<key doc...>``,
choices ``<a,b>`` (a one-option choice ``<create,>`` acts like a literal that
also sets a bool arg), optional strings and choices ``[...]``, lists
``<key>...`` and ``[key]...``, and a nested command ``(command)``. The key of a
string or list item is the first word inside the brackets. Optional items,
lists and commands must be the last item, as minicli enforces.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from megabus.handlers.language.lexer import is_space

logger = logging.getLogger(__name__)


class Kind(Enum):
    """What an item matches."""

    LITERAL = "literal"
    STRING = "string"
    CHOICE = "choice"
    LIST = "list"
    COMMAND = "command"


@dataclass(frozen=True, slots=True)
class PatternItem:
    """One item of a pattern.

    ``key`` is the argument name (the literal text for a literal), ``options``
    the choices of a choice item, ``text`` everything between the brackets.
    """

    kind: Kind
    key: str
    text: str = ""
    options: tuple[str, ...] = ()
    optional: bool = False

    @property
    def type_bits(self) -> int:
        """minicli's type bit-flags: optional=1 literal=2 command=4 string=8 choice=16 list=32."""
        bits = {
            Kind.LITERAL: 2,
            Kind.COMMAND: 4,
            Kind.STRING: 8,
            Kind.CHOICE: 16,
            Kind.LIST: 32,
        }[self.kind]
        return bits | (1 if self.optional else 0)

    def __str__(self) -> str:
        if self.kind is Kind.LITERAL:
            return self.key
        if self.kind is Kind.COMMAND:
            return f"({self.text})"
        if self.kind is Kind.CHOICE and not self.optional and len(self.options) == 1:
            return self.options[0]
        open_, close = ("[", "]") if self.optional else ("<", ">")
        suffix = "..." if self.kind is Kind.LIST else ""
        return f"{open_}{self.text}{close}{suffix}"


_CLOSERS = {"<": ">", "[": "]", "(": ")"}


def _parse_bracketed(body: str, opener: str, suffix: str, pattern: str) -> PatternItem:
    closer = _CLOSERS[opener]
    if any(ch in body for ch in "<[("):
        raise ValueError(f"cannot nest items: {pattern!r}")
    if suffix not in ("", "..."):
        raise ValueError(f"invalid trailing characters after {closer}: {pattern!r}")
    optional = opener == "["
    if opener == "(":
        if suffix:
            raise ValueError(f"invalid trailing characters after {closer}: {pattern!r}")
        key = body.split()[0] if body.split() else ""
        if not key:
            raise ValueError(f"empty nested command item: {pattern!r}")
        return PatternItem(Kind.COMMAND, key, body)
    words = body.split()
    first = words[0] if words else ""
    if "," in first and len(words) == 1:
        if suffix:
            raise ValueError(f"a choice cannot be a list: {pattern!r}")
        # a trailing comma ("<create,>") makes a one-option choice
        options = tuple(opt for opt in body.split(",") if opt)
        parts = body.split(",")
        if any(not opt for opt in parts[:-1]):
            raise ValueError(f"empty choice option: {pattern!r}")
        return PatternItem(Kind.CHOICE, options[0], body, options, optional)
    if "," in first:
        raise ValueError(f"spaces not allowed in multiple choice: {pattern!r}")
    if not first:
        raise ValueError(f"empty item: {pattern!r}")
    kind = Kind.LIST if suffix else Kind.STRING
    return PatternItem(kind, first, body, (), optional)


def _split_tokens(pattern: str) -> list[str]:
    """Split a pattern into tokens, keeping bracketed spans (with spaces) whole."""
    tokens: list[str] = []
    current: list[str] = []
    closer = ""
    for ch in pattern:
        if ch in "\"'":
            raise ValueError(f"single and double quotes are not allowed: {pattern!r}")
        if closer:
            current.append(ch)
            if ch == closer:
                closer = ""
            continue
        if is_space(ch):
            if current:
                tokens.append("".join(current))
                current = []
            continue
        if ch in _CLOSERS:
            if current:
                # "foo<bar>": a literal glued to an item
                tokens.append("".join(current))
                current = []
            closer = _CLOSERS[ch]
        current.append(ch)
    if closer:
        raise ValueError(f"missing terminal {closer}: {pattern!r}")
    if current:
        tokens.append("".join(current))
    return tokens


def parse_pattern(text: str) -> list[PatternItem]:
    """Parse one pattern string; raise ``ValueError`` when it is malformed."""
    items: list[PatternItem] = []
    for token in _split_tokens(text):
        opener = token[0]
        if opener in _CLOSERS:
            closer = _CLOSERS[opener]
            end = token.find(closer)
            items.append(_parse_bracketed(token[1:end], opener, token[end + 1 :], text))
        elif any(ch in token for ch in ">])"):
            raise ValueError(f"unexpected closing bracket in {token!r}: {text!r}")
        else:
            items.append(PatternItem(Kind.LITERAL, token, token))
    for i, item in enumerate(items):
        must_be_last = item.optional or item.kind in (Kind.LIST, Kind.COMMAND)
        if must_be_last and i != len(items) - 1:
            raise ValueError(f"trailing characters when EOF expected: {text!r}")
    if not items:
        raise ValueError("empty pattern")
    return items


def pattern_string(items: list[PatternItem]) -> str:
    """The canonical text of parsed items (minicli ``PatternItems.String``)."""
    return " ".join(str(item) for item in items)
