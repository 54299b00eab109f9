"""megabus's exceptions: one root, :class:`MegabusError`, and its tree.

Every error megabus raises on purpose descends from :class:`MegabusError`, so a
program that drives megabus catches one class. The leaves say what went wrong
in words a user can act on; where a lower-level error caused one, it is kept
as ``__cause__`` (``raise ... from err``) when it helps the user, and dropped
(``from None``) only when the message already says everything::

    MegabusError
     ├── CommandError          a command failed; the text is minimega's, shown as
     │    │                    ``E: <text>`` (Response.error) and matched by scripts
     │    ├── LanguageError    (handlers.language) a line that does not lex or match
     │    └── QemuMissingError (handlers.model) no QEMU binary to ask
     ├── OvsError              (handlers.net) ovs-vsctl failed or Open vSwitch is missing
     ├── CgroupError           (handlers.vms) the host's cgroups cannot hold a container
     ├── SettingsError         (config) a bad setting in a file, the environment or a flag
     └── BusError              the bus failed
     ├── BusDecodeError        a message is not what its subject promises
     ├── BusConnectError       no NATS server of the list could be reached
     ├── BusTimeoutError       nothing arrived within the (idle) timeout
     │                         (also a built-in TimeoutError)
     ├── NoRespondersError     nobody subscribes the request's subject
     ├── PayloadTooLargeError  a message exceeds the server's max payload
     ├── RemoteError           the far side answered with an ErrorReply
     ├── ServerStartError      the embedded nats-server did not come up
     ├── SecurityError         a credentials or certificate file is missing or bad
     ├── AuthorizationError    the server refused these credentials (or their absence)
     │                         (also a BusConnectError)
     ├── PermissionDeniedError the server refused a publish or subscribe to this role
     └── RawClientError        (bus.rawclient) the one-shot client's own failures;
                               its NoRespondersError, AuthorizationError and
                               PermissionDeniedError are also the ones above

Two kinds stand apart on purpose, because they run where this module is not
shipped: the guest agent's errors (``agent``, and ``bus.cc_messages``'s
``FrameError``, which the agent bundle carries alone).
"""

from __future__ import annotations


class MegabusError(Exception):
    """Root of every error megabus raises on purpose."""


class CommandError(MegabusError):
    """A command failed: its handler answers with this text as ``E: <text>``.

    minimega's texts are kept exactly (``alias already in use``), since users
    and scripts match on them. Engines raise it too, for failures a user sees
    as the command's error.
    """


class BusError(MegabusError):
    """Root of every bus error."""


class BusDecodeError(BusError):
    """A message could not be decoded; the text is msgspec's, with the JSON path."""


class BusConnectError(BusError):
    """Could not connect to any of the given NATS servers."""


class BusTimeoutError(BusError, TimeoutError):
    """No message arrived within the timeout."""


class NoRespondersError(BusError):
    """No subscriber serves the subject a request went to."""


class PayloadTooLargeError(BusError):
    """A message is larger than the connected server accepts."""


class RemoteError(BusError):
    """The serving node answered with an :class:`~megabus.bus.messages.ErrorReply`.

    Attributes:
        node: the node that answered (may be empty).
    """

    def __init__(self, message: str, *, node: str = "") -> None:
        super().__init__(message)
        self.node = node


class ServerStartError(BusError):
    """The embedded nats-server failed to start; the text holds its error lines."""


class SecurityError(BusError):
    """A credentials or certificate file is missing, unreadable or malformed."""


class AuthorizationError(BusConnectError):
    """The NATS server refused the connection's credentials (or their absence)."""


class PermissionDeniedError(BusError):
    """The NATS server refused to let this connection publish or subscribe to a subject.

    Attributes:
        subject: the subject refused (may be empty when the server did not name it).
    """

    def __init__(self, message: str, *, subject: str = "") -> None:
        super().__init__(message)
        self.subject = subject


__all__ = [
    "AuthorizationError",
    "BusConnectError",
    "BusDecodeError",
    "BusError",
    "BusTimeoutError",
    "CommandError",
    "MegabusError",
    "NoRespondersError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RemoteError",
    "SecurityError",
    "ServerStartError",
]
