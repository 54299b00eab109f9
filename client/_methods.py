"""Methods from the node's command table, named and dispatched as 2.8's pyapigen did.

One method per distinct name: the literal words of a pattern and its
one-option choices, joined by ``_`` (``-`` becomes ``_``): ``vm_info``,
``vlans_add``, ``cc_exec``, ``tap_create_bridge_ip``. Patterns with the same
name are one method with several variants, and a trailing optional item
makes two variants (with it and without). Arguments are the patterns'
strings (by key), lists, nested commands, and multi-option choices named
``a_or_b``; required ones first, the others default to ``None``.

A call picks the variant with the most arguments whose arguments are
exactly the ones given (2.8 took the first whose arguments were all given and
dropped any other silently). Values are checked against their types here;
2.8 joined them with spaces unquoted, so a value with a space split in two:
here a string argument is always one word, quoted when it must be.
"""

from __future__ import annotations

import inspect
import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from megabus.bus.messages import CommandSpec
from megabus.handlers.language.lexer import is_space
from megabus.handlers.language.patterns import Kind, PatternItem, parse_pattern

#: Handlers 2.8's pyapigen left out besides the ``.`` builtins; the client's own
#: :meth:`~megabus.client.Client.namespace` takes the namespace's place.
SKIPPED = frozenset({"help", "namespace", "clear namespace"})

_WEIRD = re.compile(r"[-:/]")
_NOT_IDENT = re.compile(r"\W")

#: Annotation of a string argument: any scalar, sent as its ``str``.
Scalar = str | int | float
#: Annotation of a list argument: a sequence of words, or a line sent as it is.
Words = str | Sequence[str | int | float]


class ArgumentError(TypeError, ValueError):
    """A generated method called with arguments no pattern takes."""


def identifier(text: str) -> str:
    """``text`` as a Python identifier (pyapigen's cleaning, then whatever Python still needs)."""
    name = _NOT_IDENT.sub("_", _WEIRD.sub("_", text))
    if not name or name[0].isdigit():
        name = "_" + name
    return name + "_" if keyword.iskeyword(name) else name


@dataclass(frozen=True)
class Arg:
    """One argument of a method."""

    name: str
    kind: Kind
    options: tuple[str, ...] = ()
    optional: bool = False

    def annotation(self) -> Any:
        if self.kind is Kind.CHOICE:
            return Literal[self.options]
        if self.kind is Kind.LIST:
            return Words
        if self.kind is Kind.COMMAND:
            return str
        return Scalar


@dataclass(frozen=True)
class Variant:
    """One pattern of a method: its words, with ``None`` where an argument goes."""

    pattern: str
    words: tuple[tuple[str, Arg | None], ...]

    @property
    def args(self) -> tuple[Arg, ...]:
        return tuple(arg for _, arg in self.words if arg is not None)

    def line(self, values: dict[str, Any]) -> str:
        """The command line for ``values`` (checked by :meth:`Method.bind`)."""
        out: list[str] = []
        for text, arg in self.words:
            if arg is None:
                out.append(text)
            elif arg.kind is Kind.COMMAND:
                out.append(str(values[arg.name]))
            elif arg.kind is Kind.LIST:
                value = values[arg.name]
                if isinstance(value, str):
                    out.append(value)  # a line fragment, as typed
                else:
                    out.extend(quote(str(v)) for v in value)
            else:
                out.append(quote(str(values[arg.name])))
        return " ".join(out)


def quote(word: str) -> str:
    """``word`` as exactly one word of minicli's lexer."""
    if word and not any(is_space(c) or c in "\"'\\#" for c in word):
        return word
    escaped = (
        word.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _variant(items: list[PatternItem]) -> Variant:
    words: list[tuple[str, Arg | None]] = []
    seen: set[str] = set()
    for item in items:
        if item.kind is Kind.LITERAL:
            words.append((item.key, None))
            continue
        if item.kind is Kind.CHOICE and not item.optional and len(item.options) == 1:
            words.append((item.options[0], None))
            continue
        if item.kind is Kind.CHOICE:
            name = identifier("_or_".join(item.options))
        else:
            name = identifier(item.key)
        while name in seen:
            name += "_"
        seen.add(name)
        words.append(("", Arg(name, item.kind, item.options, item.optional)))
    return Variant(" ".join(str(i) for i in items), tuple(words))


def method_name(items: list[PatternItem]) -> str:
    """pyapigen's ``genName``: literals and one-option choices, joined by ``_``."""
    parts = [
        item.key if item.kind is Kind.LITERAL else item.options[0]
        for item in items
        if item.kind is Kind.LITERAL
        or (item.kind is Kind.CHOICE and not item.optional and len(item.options) == 1)
    ]
    return identifier("_".join(p.replace("-", "_") for p in parts))


def _shared_prefix(patterns: Sequence[str]) -> str:
    words = [p.split() for p in patterns]
    out: list[str] = []
    for column in zip(*words, strict=False):
        if len(set(column)) != 1 or column[0][0] in "<[(":
            break
        out.append(column[0])
    return " ".join(out)


@dataclass
class Method:
    """A generated method: its variants, merged arguments and documentation."""

    name: str
    family: str
    doc: str
    variants: list[Variant]
    args: list[Arg]

    def signature(self) -> inspect.Signature:
        params = [
            inspect.Parameter(
                a.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=None if a.optional else inspect.Parameter.empty,
                annotation=a.annotation() | None if a.optional else a.annotation(),
            )
            for a in self.args
        ]
        return inspect.Signature(params)

    def bind(self, *args: Any, **kwargs: Any) -> str:
        """The command line for a call's arguments.

        Raises:
            ArgumentError: arguments that fit no pattern, of the wrong type or
                not one of a choice's options (Python's ``TypeError`` text
                for a missing or unknown argument).
        """
        try:
            bound = self.signature().bind(*args, **kwargs)
        except TypeError as err:
            raise ArgumentError(f"{self.name}(): {err}") from None
        given = {k: v for k, v in bound.arguments.items() if v is not None}
        for arg in self.args:
            if arg.name in given:
                _check(self.name, arg, given[arg.name])
        for variant in self.variants:
            if {a.name for a in variant.args} == set(given):
                return variant.line(given)
        wanted = " | ".join(v.pattern for v in self.variants)
        raise ArgumentError(
            f"{self.name}(): invalid argument combination {sorted(given)}; patterns: {wanted}"
        )


def _check(method: str, arg: Arg, value: Any) -> None:
    if arg.kind is Kind.CHOICE:
        if value not in arg.options:
            raise ArgumentError(
                f"{method}(): invalid value {value!r} for {arg.name}: "
                f"one of {', '.join(arg.options)}"
            )
        return
    if arg.kind is Kind.LIST:
        if isinstance(value, str):
            return
        if isinstance(value, Sequence) and all(_scalar(v) for v in value):
            return
        raise ArgumentError(f"{method}(): {arg.name} wants words (a str or a list), not {value!r}")
    if arg.kind is Kind.COMMAND:
        if not isinstance(value, str):
            raise ArgumentError(f"{method}(): {arg.name} wants a command line, not {value!r}")
        return
    if not _scalar(value):
        raise ArgumentError(f"{method}(): {arg.name} wants a str or number, not {value!r}")


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def build_methods(commands: Sequence[CommandSpec]) -> dict[str, Method]:
    """Every method of a command table (pyapigen's ``main``), by name."""
    methods: dict[str, Method] = {}
    for spec in commands:
        prefix = _shared_prefix(spec.patterns)
        if prefix.startswith(".") or prefix in SKIPPED:
            continue
        for pattern in spec.patterns:
            items = parse_pattern(pattern)
            name = method_name(items)
            method = methods.get(name)
            if method is None:
                doc = spec.long or spec.short
                method = methods[name] = Method(name, spec.family, doc, [], [])
            if items[-1].optional:
                method.variants.append(_variant(items))
                items = items[:-1]
            method.variants.append(_variant(items))
    for method in methods.values():
        method.args = _merge_args(method.variants)
        # most arguments first (stable, so table order breaks ties)
        method.variants.sort(key=lambda v: -len(v.args))
        # pyapigen's docstring: the variants, then the handler's help
        variants = "".join(f"\n    {v.pattern}" for v in method.variants)
        method.doc = f"Variants:{variants}\n\n{method.doc}"
    return methods


def _merge_args(variants: list[Variant]) -> list[Arg]:
    """pyapigen's merge: optional unless every variant has it as a required argument."""
    found: dict[str, Arg] = {}
    optional: set[str] = set()
    for i, variant in enumerate(variants):
        names = set()
        for arg in variant.args:
            names.add(arg.name)
            if arg.name not in found:
                found[arg.name] = arg
                if i > 0:
                    optional.add(arg.name)
            if arg.optional:
                optional.add(arg.name)
        optional.update(set(found) - names)
    ordered = [a for a in found.values() if a.name not in optional]
    ordered += [a for a in found.values() if a.name in optional]
    return [Arg(a.name, a.kind, a.options, a.name in optional) for a in ordered]


__all__ = ["Arg", "ArgumentError", "Method", "Variant", "build_methods", "method_name", "quote"]
