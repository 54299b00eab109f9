"""Where each key of a TOML file is: the line of every table, key and array element.

The standard library's ``tomllib`` parses the file but keeps no positions,
and no TOML library on PyPI reports them for values; this scanner reads the
lines once more and maps each path (``("vm", 1, "net", 0)``) to its line, so
errors can point at the file. It follows what experiment files use: table
headers, arrays of tables, dotted and quoted keys, multi-line arrays (one
element per line), multi-line strings; a path it cannot place falls back to
its nearest parent.
"""

from __future__ import annotations

import re

Path = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(text: str) -> tuple[list[str], str]:
    """A dotted key at the start of ``text``: its parts and what follows it."""
    parts: list[str] = []
    rest = text.lstrip()
    while True:
        if rest[:1] in ('"', "'"):
            end = rest.find(rest[0], 1)
            if end < 0:
                return parts, ""
            parts.append(rest[1:end])
            rest = rest[end + 1 :].lstrip()
        else:
            m = _BARE.match(rest)
            if m is None:
                return parts, rest
            parts.append(m.group())
            rest = rest[m.end() :].lstrip()
        if rest[:1] != ".":
            return parts, rest
        rest = rest[1:].lstrip()


def _depth_change(text: str) -> tuple[int, str]:
    """Brackets opened minus closed in ``text`` outside strings and comments; a string
    left open at the end of the line (``'''`` or ``\"\"\"``) is returned as its delimiter."""
    depth = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "#":
            break
        if text.startswith(('"""', "'''"), i):
            end = text.find(text[i : i + 3], i + 3)
            if end < 0:
                return depth, text[i : i + 3]
            i = end + 3
            continue
        if ch in "\"'":
            end = i + 1
            while end < len(text) and text[end] != ch:
                end += 2 if ch == '"' and text[end] == "\\" else 1
            i = end + 1
            continue
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return depth, ""


def locate(text: str) -> dict[Path, int]:
    """Line (1-based) of every path the file defines."""
    lines: dict[Path, int] = {}
    counts: dict[Path, int] = {}
    table: Path = ()
    open_string = ""
    array: Path | None = None  # the multi-line array being read, and its next element
    element = 0
    depth = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if open_string:
            if open_string in raw:
                open_string = ""
            continue
        line = raw.strip()
        if array is not None:
            if line and not line.startswith(("#", "]")) and depth == 1:
                lines.setdefault((*array, element), number)
                element += 1
            change, open_string = _depth_change(line)
            depth += change
            if depth <= 0:
                array = None
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("[["):
            parts, _ = _key(line[2:])
            name: Path = tuple(parts)
            index = counts[name] = counts.get(name, -1) + 1
            table = (*name, index)
            lines.setdefault(name, number)
            lines.setdefault(table, number)
            continue
        if line.startswith("["):
            parts, _ = _key(line[1:])
            # a sub-table of an array of tables belongs to its last element
            prefix: Path = ()
            for part in parts:
                prefix = (*prefix, part)
                if prefix in counts:
                    prefix = (*prefix, counts[prefix])
            table = prefix
            lines.setdefault(table, number)
            continue
        parts, rest = _key(line)
        if not parts or not rest.startswith("="):
            continue
        path: Path = (*table, *parts)
        for i in range(len(table) + 1, len(path) + 1):
            lines.setdefault(path[:i], number)
        value = rest[1:].strip()
        change, open_string = _depth_change(value)
        if value.startswith("[") and change > 0:
            array, element, depth = path, 0, change
            # elements on the key's own line
            if value[1:].strip() and not value[1:].strip().startswith("#"):
                lines.setdefault((*path, 0), number)
                element = 1
        if value.startswith("{"):
            for inner in re.findall(r"[{,]\s*([A-Za-z0-9_-]+)\s*=", value):
                lines.setdefault((*path, inner), number)
    return lines


def line_of(lines: dict[Path, int], path: Path) -> int:
    """The line of ``path``, or of its nearest parent the file defines (0: none)."""
    for end in range(len(path), 0, -1):
        found = lines.get(path[:end])
        if found:
            return found
    return 0


__all__ = ["Path", "line_of", "locate"]
