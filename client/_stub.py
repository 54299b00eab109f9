"""A typing stub of a node's methods, for type checkers and editors (``megabus schema -pyi``).

The client makes its methods at run time, so a type checker sees them as
``Any``-like :class:`~megabus.client.Command` objects. The stub declares a
``Node`` class with every method's signature::

    from typing import cast
    from megabus_node import Node          # the saved stub
    mm = cast(Node, await Client.connect())
    await mm.vlans_add("lan", 101)          # checked: two arguments, each str | int | float
"""

from __future__ import annotations

from collections.abc import Mapping

from megabus.client._client import Client
from megabus.client._methods import Arg, Method
from megabus.handlers.language.patterns import Kind

_HEADER = '''"""megabus node methods{where}, made by ``megabus schema -pyi``. Do not edit."""

from collections.abc import Sequence
from typing import Literal

from megabus.client import Client, Result

class Node(Client):
'''


def _annotation(arg: Arg) -> str:
    if arg.kind is Kind.CHOICE:
        text = "Literal[" + ", ".join(repr(o) for o in arg.options) + "]"
    elif arg.kind is Kind.LIST:
        text = "str | Sequence[str | int | float]"
    elif arg.kind is Kind.COMMAND:
        text = "str"
    else:
        text = "str | int | float"
    return f"{text} | None = None" if arg.optional else text


def stub(methods: Mapping[str, Method], node: str = "") -> str:
    """The ``.pyi`` text of ``methods`` (a :class:`Node` subclass of the client).

    A method named like one of the client's own attributes is left out: the
    attribute wins at run time too (``client.command(name)`` reaches it).
    """
    out = [_HEADER.format(where=f" of node {node}" if node else "")]
    for name in sorted(set(methods) - set(dir(Client))):
        method = methods[name]
        params = "".join(f", {a.name}: {_annotation(a)}" for a in method.args)
        patterns = "; ".join(v.pattern for v in method.variants)
        doc = patterns.replace("\\", "\\\\").replace('"', '\\"')
        out.append(f"    async def {name}(self{params}) -> Result:\n")
        out.append(f'        """{doc}"""\n')
    return "".join(out)


__all__ = ["stub"]
