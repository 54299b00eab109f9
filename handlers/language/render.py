"""Turn responses into text exactly as minimega 2.8 prints them.

:func:`render` is minicli's ``Responses.String()`` (minimega 2.8 section 2.2):
the first response's flags decide the mode; JSON mode is Go's
``json.Marshal`` of the responses; otherwise tables go through the tabwriter
(or Go's CSV writer) and simple responses are printed, compressed by host
range, with ``host: `` prefixes when annotating; the result is trimmed of
surrounding whitespace. Errors never appear in it: :func:`error_text` and
:func:`minitest` give them as ``minimega -e`` and minitest print them.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from megabus.bus.messages import Flags, Response
from megabus.handlers.language.lexer import is_space, trim_space
from megabus.handlers.language.ranges import unsplit
from megabus.handlers.language.tabwriter import table, tabwrite

logger = logging.getLogger(__name__)


class _RenderError(Exception):
    """A response set that minicli renders as an error text instead of a table."""


def render(responses: Sequence[Response], defaults: Flags) -> str:
    """``Responses.String()``: the rendered text of one batch of responses."""
    if not responses:
        return ""
    flags = responses[0].flags or defaults
    if flags.mode == "json":
        return go_json(list(responses))
    try:
        header = _header(responses)
        tabular = _valid_tabular(responses, header)
    except _RenderError as err:
        return str(err)
    rows = sum(len(r.tabular or ()) for r in responses)
    if tabular and rows > 0:
        text = _tabular(responses, header or [], flags)
    elif flags.compress and len(responses) > 1:
        text = _compressed(responses, flags.annotate)
    else:
        text = "".join(
            (f"{r.host}: " if flags.annotate else "") + r.response + "\n"
            for r in responses
            if not r.error and r.response
        )
    return trim_space(text)


def errors(responses: Sequence[Response]) -> list[str]:
    """The error texts of ``responses``, in order."""
    return [r.error for r in responses if r.error]


def error_text(responses: Sequence[Response]) -> str:
    """``Responses.Error()``: one ``Error (<host>): <msg>`` line per error."""
    return "\n".join(f"Error ({r.host}): {r.error}" for r in responses if r.error)


def minitest(responses: Sequence[Response], defaults: Flags) -> str:
    """What minitest records for a batch: sorted ``E: <msg>`` lines, then the text."""
    out = [f"E: {msg}\n" for msg in sorted(errors(responses))]
    text = render(responses, defaults)
    if text:
        out.append(text + "\n")
    return "".join(out)


# --- validity checks ------------------------------------------------------------


def _header(responses: Sequence[Response]) -> list[str] | None:
    first = next((r for r in responses if not r.error and r.header is not None), None)
    if first is None or first.header is None:
        return None
    for r in responses:
        if r.error:
            continue
        if r.header != first.header:
            raise _RenderError(f"header mismatch, hosts: {first.host}, {r.host}")
    return first.header


def _valid_tabular(responses: Sequence[Response], header: list[str] | None) -> bool:
    simple = tabular = False
    for r in responses:
        if r.error:
            continue
        if r.tabular is not None:
            tabular = True
            if header is not None:
                for i, row in enumerate(r.tabular):
                    if len(row) != len(header):
                        raise _RenderError(f"tabular width mismatch, host: {r.host}, row: {i}")
        elif r.response:
            simple = True
    if simple and tabular:
        raise _RenderError("responses mix simple and tabular data")
    return tabular


# --- tables -------------------------------------------------------------------------


def _go_atoi(text: str) -> int | None:
    """Go's ``strconv.Atoi`` on 64-bit: optional sign, ASCII digits, in range."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    value = int(text)
    if not -(2**63) <= value < 2**63:
        return None
    return value


def _row_cmp(a: list[str], b: list[str]) -> int:
    for x, y in zip(a, b, strict=False):
        if x != y:
            vx, vy = _go_atoi(x), _go_atoi(y)
            if vx is not None and vy is not None:
                return -1 if vx < vy else (1 if vx > vy else 0)
            # Go compares strings byte-wise: UTF-8 byte order equals code point order
            return -1 if x < y else 1
    return 0


def sort_rows(rows: list[list[str]]) -> list[list[str]]:
    """Rows sorted as minicli sorts tables: column by column, ints numerically."""
    key = _column_keys(rows)
    if key is not None:
        return sorted(rows, key=key)
    return sorted(rows, key=functools.cmp_to_key(_row_cmp))


def _canonical_int(text: str) -> bool:
    # "7" but not "07", "+7" or "-0": two texts of one value would compare
    # equal as ints, where the pairwise comparison stops at that column
    value = _go_atoi(text)
    return value is not None and str(value) == text


#: The first character of every text Go's Atoi accepts.
_INT_START = frozenset("+-0123456789")


def _column_keys(rows: list[list[str]]) -> Callable[[list[str]], list[Any]] | None:
    """A sort key equal to :func:`_row_cmp`'s order, or ``None`` when there is none.

    There is one when every row has the same length and each column holds
    either only canonical integers (compared as ints) or no integer at all
    (compared as strings): then the pairwise comparison is a plain list
    order. A key sorts 100 rows several times faster than ``cmp_to_key``.
    """
    if not rows:
        return None
    width = len(rows[0])
    if any(len(row) != width for row in rows):
        return None
    numeric: list[bool] = []
    for column in zip(*rows, strict=True):
        # only a text starting with a sign or a digit may be an int
        maybe = [text for text in column if text[:1] in _INT_START]
        if len(maybe) == len(column):
            if not all(_canonical_int(text) for text in column):
                return None
            numeric.append(True)
        elif any(_go_atoi(text) is not None for text in maybe):
            return None
        else:
            numeric.append(False)
    ints = [j for j, n in enumerate(numeric) if n]

    def key(row: list[str]) -> list[Any]:
        out: list[Any] = list(row)
        for j in ints:
            out[j] = int(row[j])
        return out

    return key


def _tabular(responses: Sequence[Response], header: list[str], flags: Flags) -> str:
    if flags.annotate:
        header = ["host", *header]
    data: list[list[str]] = []
    for r in responses:
        for row in r.tabular or ():
            data.append([r.host, *row] if flags.annotate else list(row))
    if flags.sort:
        data = sort_rows(data)
    if flags.mode == "csv":
        return go_csv(([header] if flags.headers else []) + data)
    lines = [header] if flags.headers else []
    lines.extend(data)
    fast = table(lines, "| ", minwidth=5)
    if fast is not None:
        return fast
    return tabwrite("".join("\t| ".join(line) + "\n" for line in lines), minwidth=5, tabwidth=0)


def _compressed(responses: Sequence[Response], annotate: bool) -> str:
    groups: dict[str, list[str]] = {}
    for r in responses:
        if not r.error and r.response:
            groups.setdefault(r.response, []).append(r.host)
    keyed: dict[str, str] = {}
    for text, hosts in groups.items():
        keyed[hosts[0] if len(hosts) == 1 else unsplit(hosts)] = text
    out: list[str] = []
    # Go sorts the host strings byte-wise
    for folded in sorted(keyed, key=lambda h: h.encode()):
        out.append((f"{folded}: " if annotate else "") + keyed[folded] + "\n")
    return "".join(out)


# --- Go encoding/csv --------------------------------------------------------------


def _csv_needs_quotes(field: str) -> bool:
    if field == "":
        return False
    if field == "\\.":
        return True
    if any(ch in field for ch in ',"\r\n'):
        return True
    return is_space(field[0])


def go_csv(records: Sequence[Sequence[str]]) -> str:
    """Go's ``csv.Writer`` output (comma, ``\\n`` line ends)."""
    out: list[str] = []
    for record in records:
        fields = []
        for field in record:
            if _csv_needs_quotes(field):
                fields.append('"' + field.replace('"', '""') + '"')
            else:
                fields.append(field)
        out.append(",".join(fields) + "\n")
    return "".join(out)


# --- Go encoding/json ---------------------------------------------------------------


def go_json(responses: list[Response]) -> str:
    """Go's ``json.Marshal`` of minicli responses, one line."""
    parts = []
    for r in responses:
        parts.append(
            "{"
            + ",".join(
                [
                    '"Host":' + _json_str(r.host),
                    '"Response":' + _json_str(r.response),
                    '"Header":' + _json_value(r.header),
                    '"Tabular":' + _json_value(r.tabular),
                    '"Error":' + _json_str(r.error),
                    '"Data":' + _json_value(r.data),
                ]
            )
            + "}"
        )
    return "[" + ",".join(parts) + "]"


_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    # Go escapes these for safe embedding in HTML and JavaScript
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _json_str(text: str) -> str:
    out = ['"']
    for ch in text:
        esc = _JSON_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            # a lone surrogate is invalid UTF-8; Go writes the replacement rune
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _json_float(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"json: unsupported value: {value}")
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    absv = abs(value)
    if 1e-6 <= absv < 1e21:
        text = repr(value)
        if "e" in text or "E" in text:
            text = format(value, "f")
        return text[:-2] if text.endswith(".0") else text
    mant, _, exp = repr(value).partition("e")
    sign = "-" if exp.startswith("-") else "+"
    digits = exp.lstrip("+-").lstrip("0") or "0"
    if len(digits) < 2:
        digits = "0" + digits
    mant = mant[:-2] if mant.endswith(".0") else mant
    return f"{mant}e{sign}{digits}"


def _json_value(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        # Go marshals []byte as base64
        return _json_str(base64.b64encode(bytes(value)).decode())
    if isinstance(value, dict):
        # a dict stands for a Go map, whose keys Go sorts
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(_json_str(k) + ":" + _json_value(v) for k, v in items) + "}"
    if isinstance(value, list | tuple | set | frozenset):
        seq = sorted(value) if isinstance(value, set | frozenset) else value
        return "[" + ",".join(_json_value(v) for v in seq) + "]"
    if isinstance(value, msgspec.Struct):
        # a struct keeps its declaration order, as a Go struct does
        fields = value.__struct_fields__
        return _json_object((name, getattr(value, name)) for name in fields)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _json_object((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
    return _json_value(msgspec.to_builtins(value))


def _json_object(pairs: Any) -> str:
    return "{" + ",".join(_json_str(k) + ":" + _json_value(v) for k, v in pairs) + "}"
