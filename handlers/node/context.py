"""What a handler gets besides its command: the node, the namespace, the bus.

Handlers never reach for globals; everything comes through the
:class:`Context`, which makes one command's run self-contained (each request
runs in its own task) and lets a test build a node without a process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from megabus.bus.messages import Response

if TYPE_CHECKING:
    from megabus.bus.connection import Bus
    from megabus.handlers.language.command import Command
    from megabus.handlers.node.state import Namespace, NodeState

#: Runs a compiled command (in a namespace) and returns its batches of responses.
RunCommand = Callable[["Command", str], Awaitable[list[list[Response]]]]
#: Runs a line (in a namespace) and returns its batches of responses.
RunLine = Callable[[str, str], Awaitable[list[list[Response]]]]
#: Sends one batch of responses ahead of the handler's return value.
Emit = Callable[[list[Response]], Awaitable[None]]


@dataclass
class Context:
    """The world of one command run."""

    state: NodeState
    #: The namespace this command runs in (name).
    namespace: str
    #: The bus, when the node is connected (always, outside unit tests).
    bus: Bus | None
    run_command: RunCommand
    run_line: RunLine
    emit: Emit
    #: minicli ``Source`` of the command being run.
    source: str = ""

    @property
    def host(self) -> str:
        """This node's name, the ``host`` of every response it makes."""
        return self.state.name

    @property
    def ns(self) -> Namespace:
        """The namespace object this command runs in."""
        return self.state.namespace(self.namespace)

    def respond(self, text: str = "") -> Response:
        """A simple response from this node."""
        return Response(host=self.host, response=text)

    def table(self, header: list[str], rows: list[list[str]]) -> Response:
        """A tabular response from this node."""
        return Response(host=self.host, header=header, tabular=rows)

    def error(self, text: str) -> Response:
        """An error response from this node."""
        return Response(host=self.host, error=text)
