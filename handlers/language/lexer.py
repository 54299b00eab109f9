"""Split a command line into words, exactly as minicli's input lexer does.

Rules (minicli ``input.go``): whitespace separates words; ``"..."`` and
``'...'`` quote (an empty quoted string is still a word, and quotes may sit in
the middle of a word: ``a"b c"`` is one word ``ab c``); the escapes ``\\r \\n
\\t \\\\ \\" \\' \\#`` work inside and outside quotes, any other escape is an
error; an unquoted ``#`` anywhere ends the input (the rest is a comment).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from megabus.handlers.language.command import LanguageError

logger = logging.getLogger(__name__)

#: Starts a comment that runs to the end of the input.
COMMENT_LEADER = "#"

_ESCAPES = {
    "r": "\r",
    "n": "\n",
    "t": "\t",
    "\\": "\\",
    '"': '"',
    "'": "'",
    COMMENT_LEADER: COMMENT_LEADER,
}

# Python's str.isspace() also accepts the ASCII separators 0x1c-0x1f, which Go's
# unicode.IsSpace does not; a word containing them must stay one word.
_NOT_GO_SPACE = frozenset("\x1c\x1d\x1e\x1f")


def is_space(ch: str) -> bool:
    """Whether ``ch`` is whitespace by Go's ``unicode.IsSpace``."""
    return ch.isspace() and ch not in _NOT_GO_SPACE


def trim_space(text: str) -> str:
    """Go's ``strings.TrimSpace``: strip leading and trailing Go whitespace."""
    start, end = 0, len(text)
    while start < end and is_space(text[start]):
        start += 1
    while end > start and is_space(text[end - 1]):
        end -= 1
    return text[start:end]


@dataclass(frozen=True, slots=True)
class Item:
    """One word of input.

    ``quote`` is the quote character used for (part of) the word, or ``""``
    when it was typed bare; it lets callers tell ``"#"`` from a comment and
    ``""`` from nothing.
    """

    value: str
    quote: str = ""


def lex(line: str) -> list[Item]:
    """Split ``line`` into words; raise :class:`LanguageError` on bad input.

    A line that is empty or only a comment gives ``[]``.
    """
    items: list[Item] = []
    content: list[str] = []
    quote = ""
    # set by a closing quote so that "" still makes a word
    force = False
    in_quote = ""
    i, n = 0, len(line)

    def emit() -> None:
        nonlocal force, quote
        if content or force:
            items.append(Item("".join(content), quote))
            content.clear()
            force = False
            quote = ""

    while i < n:
        ch = line[i]
        i += 1
        if ch == "\\":
            if i >= n:
                raise LanguageError("expected escape character")
            esc = line[i]
            i += 1
            try:
                content.append(_ESCAPES[esc])
            except KeyError:
                raise LanguageError(f"unexpected escaped character: {esc}") from None
            continue
        if in_quote:
            if ch == in_quote:
                in_quote = ""
                force = True
            else:
                content.append(ch)
            continue
        if ch in ('"', "'"):
            in_quote = ch
            quote = ch
        elif ch == COMMENT_LEADER:
            break
        elif is_space(ch):
            emit()
        else:
            content.append(ch)
    if in_quote:
        raise LanguageError(f"missing terminal {in_quote}")
    emit()
    return items


def quote_word(word: str) -> str:
    """Re-quote ``word`` as minicli does when it rebuilds a line from words.

    Words with whitespace get Go's ``%q`` (``strconv.Quote``); others stay bare.
    """
    if not any(is_space(ch) for ch in word):
        return word
    return go_quote(word)


_GO_SHORT_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote``: double-quoted, printable runes kept as they are."""
    out = ['"']
    for ch in text:
        short = _GO_SHORT_ESCAPES.get(ch)
        if short is not None:
            out.append(short)
        elif ch == " " or ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            if code < 0x10000:
                # Go writes \xNN below 0x80 only for bytes; for runes it uses \u
                out.append(f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def join_items(items: list[Item]) -> str:
    """Rebuild a line from words, re-quoting words that contain whitespace."""
    return " ".join(quote_word(item.value) for item in items)
