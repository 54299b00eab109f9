"""minimega's command language: lexing, patterns, matching and rendering.

Pure code (no I/O, no bus) so that the node and every front end import it.

Modules:
    command: the compiled :class:`Command` and :class:`LanguageError`.
    lexer: ``lex(line)`` splits input as minicli does (quotes, escapes, ``#``).
    patterns: parses pattern strings (``vlans <add,> <alias> <vlan>``).
    grammar: :class:`Grammar` compiles lines against registered patterns
        with minicli's prefix and exact-match rules.
    ranges: name ranges (``foo[0-2]``) and their folding (``node[0-4,6]``).
    tabwriter: Go's ``text/tabwriter`` layout.
    render: ``Responses.String()``, JSON and CSV output, error lines.
    transform: ``.filter`` and ``.columns`` over responses.
"""

from megabus.cli.language.command import Command, LanguageError
from megabus.cli.language.grammar import Grammar
from megabus.cli.language.lexer import Item, lex
from megabus.cli.language.patterns import PatternItem, parse_pattern
from megabus.cli.language.ranges import expand, unsplit
from megabus.cli.language.render import error_text, errors, minitest, render
from megabus.cli.language.tabwriter import tabwrite
from megabus.cli.language.transform import filter_responses, select_columns

__all__ = [
    "Command",
    "Grammar",
    "Item",
    "LanguageError",
    "PatternItem",
    "error_text",
    "errors",
    "expand",
    "filter_responses",
    "lex",
    "minitest",
    "parse_pattern",
    "render",
    "select_columns",
    "tabwrite",
    "unsplit",
]
