"""A compiled command: which handler matched and the arguments it got.

This is minicli's ``Command``. The language package is pure (no I/O, no bus),
so the node imports it; the handler a command matched is an opaque object
chosen by whoever registered the patterns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from megabus.bus.errors import CommandError


class LanguageError(CommandError, ValueError):
    """A line that does not lex or compile; the message is minimega's text."""


@dataclass
class Command:
    """A line compiled against one pattern.

    Argument keys follow minicli: ``<foo bar>`` is stored under ``foo`` (the
    first word), a choice ``<a,b>`` sets ``bool_args[option] = True``,
    ``<foo>...``/``[foo]...`` fill ``list_args["foo"]``, and ``(command)``
    fills ``subcommand``.
    """

    #: The trimmed raw input (for a nested command: rebuilt from its tokens).
    original: str
    #: The pattern string that matched, e.g. ``vlans <add,> <alias> <vlan>``.
    pattern: str = ""
    #: The opaque handler object registered with the pattern.
    handler: Any = None
    string_args: dict[str, str] = field(default_factory=dict)
    bool_args: dict[str, bool] = field(default_factory=dict)
    list_args: dict[str, list[str]] = field(default_factory=dict)
    subcommand: Command | None = None
    #: Record the line in history.
    record: bool = True
    #: Run the preprocessor on string and list arguments.
    preprocess: bool = True
    #: minicli ``Source``: "" typed by a user, "meshage", or a namespace for fan-out.
    source: str = ""
    #: The column names a ``.columns`` around this command keeps, as typed; a
    #: table handler may leave out columns none of them can select.
    columns: list[str] | None = None

    def arg(self, key: str, default: str = "") -> str:
        """The string argument ``key``, or ``default`` when absent."""
        return self.string_args.get(key, default)

    def flag(self, key: str) -> bool:
        """Whether the choice option ``key`` was chosen."""
        return self.bool_args.get(key, False)

    def items(self, key: str) -> list[str]:
        """The list argument ``key`` (empty when absent)."""
        return self.list_args.get(key, [])

    def clone(self) -> Command:
        """A copy that shares nothing mutable with this one (handlers and the
        preprocessor change arguments in place); several times cheaper than
        ``copy.deepcopy``, which walks the handler object too."""
        return Command(
            original=self.original,
            pattern=self.pattern,
            handler=self.handler,
            string_args=dict(self.string_args),
            bool_args=dict(self.bool_args),
            list_args={key: list(values) for key, values in self.list_args.items()},
            subcommand=self.subcommand.clone() if self.subcommand is not None else None,
            record=self.record,
            preprocess=self.preprocess,
            source=self.source,
            columns=list(self.columns) if self.columns is not None else None,
        )
