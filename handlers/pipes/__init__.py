"""Pipes on the bus: 2.8's plumber (``plumb``, ``pipe``) with readers and writers on any node.

A node has one :class:`Plumber`: its pipes (a subject family each on the
bus), its ``plumb`` pipelines, and the readers and writers that pipelines and
cc agents (``cc exec stdin=<pipe> ...``) open. Pipe names are full names,
``<namespace>//<pipe>``; :func:`qualify` and :func:`production` turn what a
user typed into them, refusing names that cannot be subject tokens.

Other packages import from here, never from the modules.
"""

from __future__ import annotations

from megabus.handlers.pipes._names import (
    SEPARATOR,
    PipeNameError,
    check,
    fields,
    go_list,
    production,
    program,
    qualify,
    split,
)
from megabus.handlers.pipes._plumber import (
    MAX_MESSAGE,
    MODES,
    PipeInfo,
    Plumber,
    Reader,
    Writer,
)

__all__ = [
    "MAX_MESSAGE",
    "MODES",
    "SEPARATOR",
    "PipeInfo",
    "PipeNameError",
    "Plumber",
    "Reader",
    "Writer",
    "check",
    "fields",
    "go_list",
    "production",
    "program",
    "qualify",
    "split",
]
