"""What a command gives back: typed replies, rows with their columns as fields, cc responses.

A tabular response becomes rows of a struct made for its header (cached per
header), so ``vm info`` rows have ``.name``, ``.state``, ``.vlan``... and
``vlans`` rows ``.alias`` and ``.vlan``, whatever columns a node's command
has or ``.columns`` chose. Values stay the strings minimega prints.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec

from megabus.bus.errors import MegabusError
from megabus.bus.messages import Response
from megabus.client._methods import identifier


class Row(msgspec.Struct, frozen=True):
    """Base of every row; each header gets its own subclass, one field per column.

    ``host`` is the node that answered (unless the table has a column of that name).
    """

    def get(self, column: str, default: str = "") -> str:
        """A value by the column's name as minimega prints it (``cc_active``, ``ip6``...)."""
        fields = type(self).__struct_fields__
        for name, field in zip(_columns(type(self)), fields, strict=True):
            if name == column:
                return str(getattr(self, field))
        return default

    def as_dict(self) -> dict[str, str]:
        """Column name -> value (2.8's ``as_dict`` of one row)."""
        return {
            name: str(getattr(self, field))
            for name, field in zip(_columns(type(self)), type(self).__struct_fields__, strict=True)
        }


_COLUMNS: dict[type, tuple[str, ...]] = {}


def _columns(cls: type) -> tuple[str, ...]:
    return _COLUMNS[cls]


def _field(column: str, taken: set[str]) -> str:
    name = identifier(column.strip().lower())
    while name in taken or name in ("get", "as_dict"):
        name += "_"
    taken.add(name)
    return name


@functools.cache
def row_type(header: tuple[str, ...]) -> type[Row]:
    """The row struct of a header (``host`` first when the header has none)."""
    columns = header if "host" in header else ("host", *header)
    taken: set[str] = set()
    fields = [(_field(c, taken), str) for c in columns]
    cls: type[Row] = msgspec.defstruct("Row", fields, bases=(Row,), frozen=True)  # type: ignore[assignment]
    _COLUMNS[cls] = columns
    return cls


class Reply(msgspec.Struct, frozen=True):
    """One node's response to a command."""

    host: str
    #: The text of a simple response.
    text: str
    #: The header of a tabular response (empty for a simple one).
    header: tuple[str, ...]
    rows: tuple[Row, ...]
    error: str
    #: The typed payload some commands add (``cc exec`` gives the command's ID).
    data: Any = None


def reply_of(resp: Response) -> Reply:
    header = tuple(resp.header or ())
    rows: tuple[Row, ...] = ()
    if resp.tabular is not None:
        cls = row_type(header)
        with_host = "host" not in header
        rows = tuple(cls(*((resp.host, *r) if with_host else r)) for r in resp.tabular)
    return Reply(resp.host, resp.response, header, rows, resp.error, resp.data)


class CcResponse(msgspec.Struct, frozen=True):
    """One file of a cc response (``cc responses``): a client's stdout or stderr, or a file."""

    id: int
    #: The client (its UUID).
    uuid: str
    #: ``stdout``, ``stderr`` or the path of a file the client sent.
    file: str
    text: str


# 2.8's getResponses: "<id>/<uuid>/<file>:\n<data>\n" per file, in lexical order
_RESPONSE_HEAD = re.compile(r"^(\d+)/([^/\n]+)/([^\n]+):\n", re.M)


class Result(msgspec.Struct, frozen=True):
    """Everything a command gave: each node's :class:`Reply`."""

    #: The node the command went to.
    node: str
    line: str
    replies: tuple[Reply, ...]

    @property
    def rows(self) -> list[Row]:
        """The rows of every tabular reply, in order."""
        return [row for reply in self.replies for row in reply.rows]

    @property
    def text(self) -> str:
        """The simple responses' texts, one per line."""
        return "\n".join(r.text for r in self.replies if r.text)

    @property
    def data(self) -> list[Any]:
        """The typed payloads, where replies carry one."""
        return [r.data for r in self.replies if r.data is not None]

    @property
    def errors(self) -> list[tuple[str, str]]:
        """``(host, error)`` of each reply that failed."""
        return [(r.host, r.error) for r in self.replies if r.error]

    def cc_responses(self) -> list[CcResponse]:
        """The files of a ``cc responses`` reply (not ``raw``), typed."""
        out: list[CcResponse] = []
        for reply in self.replies:
            heads = list(_RESPONSE_HEAD.finditer(reply.text))
            for i, head in enumerate(heads):
                end = heads[i + 1].start() if i + 1 < len(heads) else len(reply.text)
                body = reply.text[head.end() : end]
                out.append(
                    CcResponse(
                        int(head.group(1)),
                        head.group(2),
                        head.group(3),
                        body[:-1] if body.endswith("\n") else body,
                    )
                )
        return out


class CommandFailedError(MegabusError):
    """A command a node answered with an error; the text names the node(s).

    Attributes:
        result: everything the command gave (other nodes may have succeeded).
        node: the first node that failed.
        error: its error text (minimega's, e.g. ``alias already in use``).
    """

    def __init__(self, result: Result) -> None:
        errors = result.errors
        super().__init__("; ".join(f"{host or result.node}: {text}" for host, text in errors))
        self.result = result
        self.node = errors[0][0] or result.node
        self.error = errors[0][1]


__all__ = ["CcResponse", "CommandFailedError", "Reply", "Result", "Row", "reply_of", "row_type"]
