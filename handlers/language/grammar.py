"""Compile command lines against registered patterns, with minicli's rules.

Patterns go into a trie, as minicli's ``patternTrie`` does: a literal is one
edge, a choice one edge per option, a string/list/command item one edge keyed
by its argument name. An optional item also puts its pattern on the node
before it, so the pattern matches with and without it.

Matching (minimega 2.8 section 1.1): literals and choice options match by
prefix. At every node, if several children match the rest of the input, the
single one whose literal/choice words were all typed in full wins; several
full matches, or several matches and none full, make the line invalid. Every
failure reads ``invalid command: `<line>` `` (minicli gives no more detail).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from megabus.handlers.language.command import Command, LanguageError
from megabus.handlers.language.lexer import Item, join_items, lex, trim_space
from megabus.handlers.language.patterns import Kind, PatternItem, parse_pattern

logger = logging.getLogger(__name__)

# (kind, optional, value): minicli keys children by item type and value
_Key = tuple[Kind, bool, str]


@dataclass
class _Node:
    target: tuple[object, str] | None = None
    children: dict[_Key, _Node] = field(default_factory=dict)
    # literal and choice edges sorted by value, so a prefix finds its range by bisect
    _prefixed: list[tuple[str, _Key]] | None = None
    # string, list and command edges: they match any word, so they are tried every time
    _others: list[tuple[_Key, _Node]] | None = None

    def child(self, key: _Key) -> _Node:
        node = self.children.get(key)
        if node is None:
            node = self.children[key] = _Node()
            self._prefixed = None
            self._others = None
        return node

    def others(self) -> list[tuple[_Key, _Node]]:
        if self._others is None:
            self._others = [
                (key, node)
                for key, node in self.children.items()
                if key[0] not in (Kind.LITERAL, Kind.CHOICE)
            ]
        return self._others

    def prefixed(self) -> list[tuple[str, _Key]]:
        if self._prefixed is None:
            self._prefixed = sorted(
                (key[2], key) for key in self.children if key[0] in (Kind.LITERAL, Kind.CHOICE)
            )
        return self._prefixed

    def prefix_matches(self, word: str) -> list[tuple[str, _Key]]:
        """Literal/choice edges whose value starts with ``word``."""
        entries = self.prefixed()
        i = bisect.bisect_left(entries, (word,))
        out: list[tuple[str, _Key]] = []
        while i < len(entries) and entries[i][0].startswith(word):
            out.append(entries[i])
            i += 1
        return out


#: How many compiled lines a grammar keeps (a few hundred KB at most).
COMPILED_LINES = 1024


class Grammar:
    """Registered patterns and the compiler for lines written against them."""

    def __init__(self) -> None:
        self._root = _Node()
        self._patterns: list[tuple[object, str]] = []
        # Lines compiled before, by their text: users and scripts repeat the
        # same lines (polling ``vm info``), and a walk of the pattern tree
        # costs ten times a clone. Errors are not kept (they are rare and
        # cheap to find again); the whole cache is dropped when it is full.
        self._compiled: dict[str, Command] = {}

    # --- registration ----------------------------------------------------

    def add(self, handler: object, patterns: Sequence[str]) -> None:
        """Register ``handler`` under each of ``patterns``.

        Raises ``ValueError`` for a malformed pattern or one that collides
        with a pattern already registered (minicli refuses both at startup).
        """
        if isinstance(patterns, str):
            raise TypeError("patterns must be a sequence of strings, not one string")
        parsed = [(text, parse_pattern(text)) for text in patterns]
        self._compiled.clear()
        for text, items in parsed:
            self._insert(self._root, items, (handler, text))
            self._patterns.append((handler, text))

    def _insert(self, node: _Node, items: list[PatternItem], target: tuple[object, str]) -> None:
        if not items:
            self._set_target(node, target)
            return
        head, rest = items[0], items[1:]
        if head.optional:
            self._set_target(node, target)
        if head.kind is Kind.LITERAL:
            values: tuple[str, ...] = (head.key,)
        elif head.kind is Kind.CHOICE:
            values = head.options
        else:
            values = (head.key,)
        for value in values:
            self._insert(node.child((head.kind, head.optional, value)), rest, target)

    @staticmethod
    def _set_target(node: _Node, target: tuple[object, str]) -> None:
        if node.target is not None:
            raise ValueError(f"conflicting patterns: {node.target[1]!r} and {target[1]!r}")
        node.target = target

    def patterns(self) -> list[tuple[object, str]]:
        """Every registered ``(handler, pattern)``, in registration order."""
        return list(self._patterns)

    # --- compilation -----------------------------------------------------

    def compile(self, line: str) -> Command | None:
        """Compile one line; ``None`` for an empty or comment-only line.

        Raises :class:`LanguageError` with minicli's text when the line does
        not lex or matches no pattern (or several, ambiguously).
        """
        trimmed = trim_space(line)
        if not trimmed:
            return None
        known = self._compiled.get(trimmed)
        if known is not None:
            return known.clone()
        items = lex(trimmed)
        if not items:
            return None
        cmd = self._compile_items(items)
        if cmd is None:
            raise LanguageError(f"invalid command: `{trimmed}`")
        cmd.original = trimmed
        if len(self._compiled) >= COMPILED_LINES:
            self._compiled.clear()
        self._compiled[trimmed] = cmd.clone()
        return cmd

    def compile_items(self, items: list[Item]) -> Command | None:
        """Compile already-lexed words; ``original`` is rebuilt from them."""
        if not items:
            return None
        cmd = self._compile_items(items)
        if cmd is None:
            raise LanguageError(f"invalid command: `{join_items(items)}`")
        return cmd

    def _compile_items(self, items: list[Item]) -> Command | None:
        found = self._walk(self._root, items, 0)
        if found is None:
            return None
        cmd = found[0]
        cmd.original = join_items(items)
        return cmd

    def _walk(self, node: _Node, items: list[Item], pos: int) -> tuple[Command, bool] | None:
        """Match ``items[pos:]`` below ``node``: the command and whether it was exact."""
        if pos == len(items):
            if node.target is None:
                return None
            return _new_command(node.target), True
        word = items[pos].value
        found: list[tuple[Command, bool]] = []
        for value, key in node.prefix_matches(word):
            sub = self._walk(node.children[key], items, pos + 1)
            if sub is None:
                continue
            cmd, exact = sub
            if key[0] is Kind.CHOICE:
                cmd.bool_args[value] = True
            found.append((cmd, exact and len(value) == len(word)))
        for key, child in node.others():
            kind = key[0]
            if kind is Kind.STRING:
                sub = self._walk(child, items, pos + 1)
                if sub is not None:
                    sub[0].string_args[key[2]] = word
                    found.append(sub)
            elif kind is Kind.LIST:
                if child.target is None:
                    continue
                cmd = _new_command(child.target)
                cmd.list_args[key[2]] = [item.value for item in items[pos:]]
                found.append((cmd, True))
            elif kind is Kind.COMMAND:
                if child.target is None:
                    continue
                nested = self._compile_items(items[pos:])
                if nested is None:
                    continue
                cmd = _new_command(child.target)
                cmd.subcommand = nested
                found.append((cmd, True))
        if len(found) == 1:
            return found[0]
        if not found:
            return None
        exacts = [match for match in found if match[1]]
        if len(exacts) == 1:
            return exacts[0]
        if exacts:
            logger.error("found multiple exact matches for %r", join_items(items))
        else:
            logger.debug("ambiguous command, found %d possibilities", len(found))
        return None

    # --- interactive helpers ---------------------------------------------

    def suggest(self, line: str) -> list[str]:
        """Completions of the last word of ``line`` (sorted, unique).

        Only literal words and choice options are suggested; a line that does
        not lex gives nothing.
        """
        try:
            items = lex(line)
        except LanguageError:
            return []
        if line and not line[-1].isspace() and items:
            last = items[-1].value
            items = items[:-1]
        else:
            last = ""
        nodes = [self._root]
        for item in items:
            nodes = [nxt for node in nodes for nxt in _step(node, item.value)]
            if not nodes:
                return []
        words = {value for node in nodes for value, _key in node.prefix_matches(last)}
        return sorted(words)

    def help_matches(self, line: str) -> list[object]:
        """Handlers whose patterns start like ``line`` (minicli ``help``), in order."""
        items = lex(line)
        targets: set[int] = set()
        nodes = [self._root]
        for item in items:
            nxt: list[_Node] = []
            for node in nodes:
                for key, child in node.children.items():
                    if key[0] in (Kind.LIST, Kind.COMMAND):
                        if node.target is not None:
                            targets.add(id(node.target[0]))
                    elif key[0] is Kind.STRING or key[2].startswith(item.value):
                        nxt.append(child)
            nodes = nxt
        stack = list(nodes)
        while stack:
            node = stack.pop()
            if node.target is not None:
                targets.add(id(node.target[0]))
            stack.extend(node.children.values())
        out: list[object] = []
        seen: set[int] = set()
        for handler, _text in self._patterns:
            if id(handler) in targets and id(handler) not in seen:
                seen.add(id(handler))
                out.append(handler)
        return out


def _step(node: _Node, word: str) -> list[_Node]:
    """Nodes reachable from ``node`` by consuming ``word`` (for suggestions)."""
    out = [node.children[key] for _value, key in node.prefix_matches(word)]
    out.extend(child for key, child in node.others() if key[0] is Kind.STRING)
    return out


def _new_command(target: tuple[object, str]) -> Command:
    handler, pattern = target
    return Command(original="", pattern=pattern, handler=handler)
