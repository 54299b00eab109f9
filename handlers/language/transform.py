"""The ``.filter`` and ``.columns`` output modifiers over responses.

Both work on copies: the input responses are never changed. Texts of errors
are minicli's (``builtins.go``): ``invalid filter, see help``,
``ambiguous column `x` ``, ``no such column `x` ``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import msgspec

from megabus.bus.messages import Response
from megabus.handlers.language.command import LanguageError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Filter:
    """One parsed ``.filter`` spec; ``column`` may be a prefix of the real name."""

    column: str
    value: str
    negate: bool = False
    fuzzy: bool = False

    def match(self, cell: str) -> bool:
        """Whether a cell passes the filter (case-insensitive)."""
        cell = cell.lower()
        # lists and objects ("[a b]", "{k:v}") are matched by substring
        fuzzy = (
            self.fuzzy
            or (cell.startswith("[") and cell.endswith("]"))
            or (cell.startswith("{") and cell.endswith("}"))
        )
        found = cell == self.value or (fuzzy and self.value in cell)
        return self.negate != found


# the negated operators come first so that "a!=b" is not read as "a!" = "b"
_OPERATORS = (
    ("!~", True, True),
    ("~", False, True),
    ("!=", True, False),
    ("=", False, False),
)


def parse_filter(spec: str) -> Filter:
    """Parse ``col=val``, ``col!=val``, ``col~val`` or ``col!~val``."""
    for sep, negate, fuzzy in _OPERATORS:
        parts = spec.split(sep)
        if len(parts) == 2:
            return Filter(parts[0].lower(), parts[1].lower(), negate, fuzzy)
    raise LanguageError("invalid filter, see help")


def find_column(header: list[str], column: str) -> int:
    """Index of ``column`` in ``header`` by prefix (an exact name wins)."""
    found = -1
    for i, name in enumerate(header):
        lowered = name.lower()
        if lowered == column:
            return i
        if not lowered.startswith(column):
            continue
        if found >= 0:
            raise LanguageError(f"ambiguous column `{column}`")
        found = i
    if found < 0:
        raise LanguageError(f"no such column `{column}`")
    return found


def _copy(resp: Response, **changes: object) -> Response:
    return msgspec.structs.replace(resp, **changes)


def filter_responses(responses: list[Response], spec: str) -> list[Response]:
    """Apply ``.filter <spec>`` to one batch of responses.

    Column ``host`` keeps or drops whole responses by host; other columns
    filter the rows of tabular responses and leave simple ones alone.
    """
    filt = parse_filter(spec)
    out: list[Response] = []
    for resp in responses:
        if filt.column == "host":
            if filt.match(resp.host):
                out.append(_copy(resp))
            continue
        if resp.header is None or resp.tabular is None:
            out.append(_copy(resp))
            continue
        index = find_column(resp.header, filt.column)
        # a short row (a handler bug) counts as an empty cell rather than crashing
        rows = [
            list(row) for row in resp.tabular if filt.match(row[index] if index < len(row) else "")
        ]
        out.append(_copy(resp, header=list(resp.header), tabular=rows))
    return out


def select_columns(responses: list[Response], columns: list[str]) -> list[Response]:
    """Apply ``.columns <c1,c2,...>``: keep and reorder those columns.

    Columns are matched by prefix like ``.filter`` (but case-sensitively on
    the typed name, as minicli does); the header takes the full names. A
    response with a header but no rows gets the typed names as header.
    """
    out: list[Response] = []
    for resp in responses:
        if resp.header is None:
            out.append(_copy(resp))
            continue
        if resp.tabular is None:
            out.append(_copy(resp, header=list(columns)))
            continue
        names: list[str] = []
        indexes: list[int] = []
        for col in columns:
            index = find_column(resp.header, col)
            indexes.append(index)
            names.append(resp.header[index])
        rows = [[row[i] if i < len(row) else "" for i in indexes] for row in resp.tabular]
        out.append(_copy(resp, header=names, tabular=rows))
    return out
