"""Pipe names and pipeline productions, as 2.8's plumber reads them.

A pipe's full name is ``<namespace>//<pipe>`` (``minimega//p0``); a name
without ``//`` belongs to the namespace the command runs in. The name becomes
subject tokens (:func:`megabus.bus.subjects.token` encodes what NATS would
split on), but ``.``, ``*`` and ``>`` are refused outright: a user who writes
them most likely means NATS subjects, and a pipe named ``a.b`` would silently
be a different thing from what a NATS client subscribing ``...a.b`` expects.
"""

from __future__ import annotations

import shutil

from megabus.bus.errors import CommandError
from megabus.bus.subjects import NameTooLongError, bounded_token

#: Separates a pipe's namespace from its name (2.8's ``fqnsPipe``).
SEPARATOR = "//"
_REFUSED = (".", "*", ">")


class PipeNameError(CommandError):
    """A pipe name that cannot be a pipe (a subject wildcard or separator in it)."""


def check(name: str) -> str:
    """``name`` when it can name a pipe.

    Raises:
        PipeNameError: empty, too long for a subject, or holding ``.``, ``*`` or ``>``.
    """
    namespace, pipe = split(name)
    if not pipe:
        raise PipeNameError(f"invalid pipe name {name!r}: empty")
    try:
        # both become subject tokens: a server drops a client whose protocol line
        # passes its limit, so a longer name must never reach the bus
        bounded_token(pipe, "pipe name")
        bounded_token(namespace, "namespace name")
    except NameTooLongError as err:
        raise PipeNameError(str(err)) from None
    bad = sorted({c for c in name if c in _REFUSED})
    if bad:
        chars = " ".join(f"'{c}'" for c in bad)
        raise PipeNameError(
            f"invalid pipe name {name!r}: {chars} not allowed (a pipe is a family of NATS "
            "subjects, where '.' separates tokens and '*' and '>' are wildcards)"
        )
    return name


def qualify(namespace: str, name: str) -> str:
    """2.8's ``fqnsPipe``: ``<namespace>//<name>`` unless ``name`` names its namespace.

    Raises:
        PipeNameError: see :func:`check`.
    """
    check(name)
    if SEPARATOR in name:
        return name
    return f"{namespace}{SEPARATOR}{name}"


def split(full: str) -> tuple[str, str]:
    """(namespace, pipe) of a full name; the namespace is empty when there is none."""
    ns, sep, rest = full.partition(SEPARATOR)
    return (ns, rest) if sep else ("", full)


def fields(text: str) -> list[str]:
    """2.8's ``fieldsQuoteEscape``: split on white space, keeping ``"quoted words"`` together."""
    out: list[str] = []
    tracing = False
    temp = ""
    for word in text.split():
        if tracing:
            if '"' in word:
                tracing = False
                temp += " " + word.replace('"', "")
                out.append(temp)
            else:
                temp += " " + word
        elif '"' in word:
            temp = word.replace('"', "")
            if word.endswith('"'):
                out.append(temp)
            else:
                tracing = True
        else:
            out.append(word)
    return out


def program(element: str) -> list[str] | None:
    """The argv of a production element that names a program in ``$PATH``, else None."""
    argv = fields(element)
    if not argv:
        return None
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    return [exe, *argv[1:]]


def production(namespace: str, elements: list[str]) -> list[str]:
    """2.8's ``cliPlumbLocal``: every element that is no program becomes a full pipe name.

    An element already of the form ``<ns>//<pipe>`` stays as it is, as does
    anything whose first word is found in ``$PATH``.

    Raises:
        PipeNameError: an element that is a pipe has a name no pipe can have.
    """
    out: list[str] = []
    for element in elements:
        if program(element) is not None:
            out.append(element)
        else:
            out.append(qualify(namespace, element))
    return out


def go_list(items: list[str]) -> str:
    """Go's ``%v`` of a ``[]string``: ``[a b c]``."""
    return "[" + " ".join(items) + "]"


__all__ = [
    "SEPARATOR",
    "PipeNameError",
    "check",
    "fields",
    "go_list",
    "production",
    "program",
    "qualify",
    "split",
]
