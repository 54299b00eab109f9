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

from megabus.handlers.language.command import Command, LanguageError
from megabus.handlers.language.grammar import Grammar
from megabus.handlers.language.lexer import Item, lex
from megabus.handlers.language.patterns import PatternItem, parse_pattern
from megabus.handlers.language.ranges import expand, unsplit
from megabus.handlers.language.render import error_text, errors, minitest, render
from megabus.handlers.language.tabwriter import tabwrite
from megabus.handlers.language.transform import filter_responses, select_columns

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
