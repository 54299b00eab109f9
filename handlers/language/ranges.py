"""Name ranges: ``foo[0-2],bar`` expanded to names, and names folded back.

:func:`expand` is minimega's ``ranges.SplitList`` and :func:`unsplit` its
``ranges.UnsplitList`` (``node0 .. node4, node6`` -> ``node[0-4,6]``), with
their error texts. Leading zeros follow pkg/ranges: a subrange whose two ends
have the same number of digits is zero-padded (``[01-10]`` gives ``01``..``10``),
and the names keep one padding only when every number has the same length.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable

from megabus.handlers.language.command import LanguageError

logger = logging.getLogger(__name__)

_MAX_INT32 = 2**31 - 1
#: Most names one range may expand to. 2.8 has no bound, so ``foo[0-2147483647]``
#: would build two billion names before anything could say no; nobody names
#: more VMs or hosts than this in one command.
MAX_NAMES = 100_000


def _too_many(count: int) -> LanguageError:
    return LanguageError(f"range of {count} names exceeds the limit of {MAX_NAMES}")


def _atoi(text: str) -> int:
    """Go's ``strconv.Atoi``, raising minimega's error text."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise LanguageError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise LanguageError(f'strconv.Atoi: parsing "{text}": value out of range')
    return value


def _subrange(part: str) -> list[str]:
    limits = part.split("-")
    if len(limits) != 2:
        raise LanguageError(f"invalid subrange {part}")
    pad = len(limits[0]) if len(limits[0]) == len(limits[1]) else 0
    start, end = _atoi(limits[0]), _atoi(limits[1])
    if end - start + 1 > MAX_NAMES:
        raise _too_many(end - start + 1)
    return [f"{i:0{pad}d}" if pad else str(i) for i in range(start, end + 1)]


def _split_range(prefix: str, spec: str) -> list[str]:
    """Expand one ``prefix[...]`` word (minimega ``Range.SplitRange``)."""
    body = spec[len(prefix) :]
    if body.startswith("[") and not body.endswith("]"):
        raise LanguageError("invalid range specification")
    if not body.startswith("["):
        _atoi(body)
        return [spec]
    numbers: set[int] = set()
    pad = -1

    def note(digits: str) -> None:
        nonlocal pad
        if pad == -1:
            pad = len(digits)
        elif len(digits) != pad:
            pad = 0

    for part in body[1:-1].split(","):
        if "-" in part:
            for name in _subrange(part):
                note(name)
                numbers.add(_check(int(name)))
        else:
            note(part)
            numbers.add(_check(_atoi(part)))
        if len(numbers) > MAX_NAMES:
            raise _too_many(len(numbers))
    return [prefix + (f"{n:0{pad}d}" if pad > 0 else str(n)) for n in sorted(numbers)]


def _check(value: int) -> int:
    if value < 0 or value > _MAX_INT32:
        # sic: minimega's text
        raise LanguageError(f"value of out range: {value}")
    return value


def expand(spec: str) -> list[str]:
    """Expand ``foo[0-2],bar`` into ``["foo0", "foo1", "foo2", "bar"]``.

    Raises :class:`LanguageError` with minimega's text for a malformed range.
    """
    parts: list[str] = []
    prev = 0
    inside = False
    for i, ch in enumerate(spec):
        if ch == "[":
            if inside:
                raise LanguageError(f"nested '[' at char {i}")
            inside = True
        elif ch == "]":
            if not inside:
                raise LanguageError(f"unmatched ']' at char {i}")
            inside = False
        elif ch == "," and not inside:
            parts.append(spec[prev:i])
            prev = i + 1
    if inside:
        raise LanguageError("unterminated '['")
    if prev < len(spec):
        parts.append(spec[prev:])
    out: list[str] = []
    for part in parts:
        index = part.find("[")
        if index == -1:
            out.append(part)
        else:
            out.extend(_split_range(part[:index], part))
        if len(out) > MAX_NAMES:
            raise _too_many(len(out))
    return out


# --- folding ----------------------------------------------------------------------


def _is_number(ch: str) -> bool:
    # Go's unicode.IsNumber: any Unicode number category
    return unicodedata.category(ch).startswith("N")


def _go_atoi_or_zero(text: str) -> int:
    try:
        return _atoi(text)
    except LanguageError:
        return 0


class _Trie:
    __slots__ = ("children", "terminal")

    def __init__(self) -> None:
        self.children: dict[str, _Trie] = {}
        self.terminal = False

    def add(self, word: str) -> None:
        node = self
        for ch in word:
            node = node.children.setdefault(ch, _Trie())
        node.terminal = True

    def number_runs(self, prefix: str) -> dict[str, tuple[_Trie, bool]]:
        """Maximal digit runs that start with ``prefix``, the node after each,
        and whether that node's own numeric children belong to a longer run."""
        runs: dict[str, tuple[_Trie, bool]] = {}
        for ch, child in self.children.items():
            if _is_number(ch):
                runs.update(child.number_runs(prefix + ch))
        if not runs:
            runs[prefix] = (self, False)
        elif self.terminal or any(not _is_number(ch) for ch in self.children):
            # pkg/ranges drops a number that a longer one extends ("n1" next to
            # "n12"); keeping it, without its longer runs, loses no name
            runs[prefix] = (self, True)
        return runs

    def flatten(self, skip_numbers: bool = False) -> list[str]:
        out = [""] if self.terminal else []
        numbers: dict[int, tuple[_Trie, bool]] = {}
        for ch in sorted(self.children):
            child = self.children[ch]
            if _is_number(ch):
                if not skip_numbers:
                    for digits, found in child.number_runs(ch).items():
                        numbers[_go_atoi_or_zero(digits)] = found
                continue
            out.extend(ch + suffix for suffix in child.flatten())
        by_suffix: dict[str, list[int]] = {}
        for number, (node, partial) in numbers.items():
            for suffix in node.flatten(skip_numbers=partial):
                by_suffix.setdefault(suffix, []).append(number)
        for suffix in sorted(by_suffix):
            out.append(_unsplit_ints(by_suffix[suffix]) + suffix)
        return out


def _unsplit_ints(nums: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``[1-3,5]``; one number stays bare."""
    if len(nums) == 1:
        return str(nums[0])
    nums = sorted(nums)
    out = [f"[{nums[0]}"]
    start = prev = nums[0]
    for i in range(1, len(nums)):
        n = nums[i]
        if n - prev != 1:
            out.append(f"-{prev},{n}" if start != prev else f",{n}")
            start = n
        elif i == len(nums) - 1:
            out.append(f"-{n}")
        prev = n
    out.append("]")
    return "".join(out)


def unsplit(names: Iterable[str]) -> str:
    """Fold names into range notation, e.g. ``node[0-4,6]``."""
    trie = _Trie()
    for name in names:
        trie.add(name)
    return ",".join(trie.flatten())


_NUMBER_PARTS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders embedded numbers numerically (``foo2`` < ``foo10``)."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in _NUMBER_PARTS.split(name)
        if part
    )
