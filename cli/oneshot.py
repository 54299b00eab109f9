"""``megabus -e`` and ``megabus read FILE``: send command lines, print the replies.

Output follows minimega 2.8's ``-e`` (``miniclient.RunAndPrint``): each batch's
rendered text plus a newline on stdout when it is not empty, then the batch's
errors as ``Error (<host>): <msg>`` lines on stderr. Exit status: 0, 1 when any
response carried an error, 2 when no node answered or the connection failed.

This is the fast path: it talks NATS through :mod:`megabus.bus.rawclient`
(standard library only) and builds the request JSON by hand instead of
importing msgspec and the message classes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable

from megabus.bus.errors import SecurityError
from megabus.bus.rawclient import (
    ERROR,
    ConnectError,
    IdleTimeoutError,
    NoRespondersError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RawClient,
    RawClientError,
)
from megabus.bus.subjects import Subjects
from megabus.cli.args import Target

# ``typing`` costs the one-shot path a few ms; the names are for the type
# checker only (mypy treats any ``TYPE_CHECKING`` name as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

#: Tag of ``CommandRequest`` (``megabus.bus.messages``), kept in step by a test.
REQUEST_TAG = "megabus.cmd.v1.request"
SCHEMA_HEADER = "Mb-Schema"

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_UNREACHABLE = 2


class UnreachableError(Exception):
    """No node answered or the bus failed; the message is for users."""


def request_payload(line: str, namespace: str = "", client: str = "megabus -e") -> bytes:
    """The JSON of a ``CommandRequest`` for ``line``."""
    msg = {"type": REQUEST_TAG, "line": line, "namespace": namespace, "client": client}
    return json.dumps(msg).encode()


def batch_errors(reply: dict[str, Any]) -> list[str]:
    """``Responses.Error()`` of one reply: ``Error (<host>): <msg>`` per failed response."""
    if reply.get("type") == ERROR:
        return [f"Error ({reply.get('node') or '?'}): {reply.get('error', '')}"]
    out = []
    for resp in reply.get("responses") or []:
        if isinstance(resp, dict) and resp.get("error"):
            out.append(f"Error ({resp.get('host', '')}): {resp['error']}")
    return out


class Session:
    """One connection to the bus, sending lines to one node."""

    def __init__(self, target: Target, client: str = "megabus -e") -> None:
        self.target = target
        self.client_name = client
        self.subject = Subjects(target.prefix).node_cmd(target.node)
        self._conn: RawClient | None = None

    def connect(self) -> RawClient:
        """Connect now, or reconnect when the server dropped an idle connection.

        Raises:
            UnreachableError: no server of the target's list answered.
        """
        if self._conn is not None and self._conn.alive():
            return self._conn
        self.close()
        t = self.target
        try:
            self._conn = RawClient.connect(
                t.urls, timeout=min(t.timeout, 5), credentials=t.credentials, tls=t.tls
            )
        except (ConnectError, SecurityError) as err:
            raise UnreachableError(str(err)) from None
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run(self, line: str) -> Iterable[dict[str, Any]]:
        """Send ``line``; yield each decoded reply (``CommandReply`` or ``ErrorReply``).

        Raises:
            UnreachableError: nobody serves the node's subject, the node went quiet
                for the idle timeout, or the connection broke.
        """
        conn = self.connect()
        t = self.target
        payload = request_payload(line, t.namespace, self.client_name)
        try:
            yield from conn.request_stream(
                self.subject, payload, {SCHEMA_HEADER: REQUEST_TAG}, t.timeout
            )
        except PayloadTooLargeError as err:
            # Nothing was sent and the connection is fine: this line failed, as a command would.
            yield {"type": ERROR, "node": t.node, "error": str(err)}
        except PermissionDeniedError as err:
            self.close()
            # The server names the subject refused (the request's, or the reply
            # inbox's, which a watcher is refused first); the user wants the why.
            who = f"user {conn.user!r}" if conn.user else "a client without credentials"
            raise UnreachableError(
                f"permission denied: {who} may not run commands on node {t.node!r} "
                f"(refused: {err.subject}); commands need an operator's credentials "
                "(-credentials FILE)"
            ) from None
        except NoRespondersError:
            raise UnreachableError(
                f"no node {t.node!r} answers on {t.url_text} (prefix {t.prefix!r}); "
                "is 'megabus node' running there? (-node, -nats)"
            ) from None
        except IdleTimeoutError as err:
            self.close()
            what = "stopped answering" if err.got_any else "did not answer"
            raise UnreachableError(
                f"node {t.node!r} on {t.url_text} {what} within {t.timeout:g}s (-timeout)"
            ) from None
        except RawClientError as err:
            self.close()
            raise UnreachableError(f"{t.url_text}: {err}") from None


def go_response(resp: dict[str, Any]) -> dict[str, Any]:
    """A response as minimega's JSON mode writes it (Go's field names, no flags)."""
    return {
        "Host": resp.get("host", ""),
        "Response": resp.get("response", ""),
        "Header": resp.get("header"),
        "Tabular": resp.get("tabular"),
        "Error": resp.get("error", ""),
        "Data": resp.get("data"),
    }


def print_reply(
    reply: dict[str, Any],
    *,
    as_json: bool = False,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> bool:
    """Print one reply as ``minimega -e`` does; True when it carried an error."""
    out = out or sys.stdout
    err = err or sys.stderr
    if as_json:
        if reply.get("type") != ERROR:
            out.write(json.dumps([go_response(r) for r in reply.get("responses") or []]) + "\n")
    else:
        rendered = reply.get("rendered") or ""
        if rendered:
            out.write(rendered + "\n")
    errors = batch_errors(reply)
    if errors:
        out.flush()  # keep stdout before stderr when both are one terminal
        err.write("\n".join(errors) + "\n")
        err.flush()
    return bool(errors)


def run_line(target: Target, line: str, *, as_json: bool = False) -> int:
    """``megabus -e``: run one line, print it, return the exit status."""
    session = Session(target)
    try:
        failed = False
        for reply in session.run(line):
            failed = print_reply(reply, as_json=as_json) or failed
        return EXIT_ERRORS if failed else EXIT_OK
    except UnreachableError as exc:
        return _unreachable(exc)
    finally:
        sys.stdout.flush()
        session.close()


def run_file(target: Target, path: str, *, as_json: bool = False) -> int:
    """``megabus read FILE``: run each non-empty line of FILE, printing output as it comes.

    Unlike ``-e`` this keeps going after a command fails (the exit status is 1
    then), but stops at once when the node cannot be reached.
    """
    try:
        fh = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        sys.stderr.write(f"megabus: cannot read {path}: {exc.strerror}\n")
        return EXIT_UNREACHABLE
    session = Session(target, client="megabus read")
    failed = False
    try:
        with fh:
            for raw in fh:
                line = raw.strip()
                if not line:
                    continue
                for reply in session.run(line):
                    failed = print_reply(reply, as_json=as_json) or failed
                sys.stdout.flush()
    except UnreachableError as exc:
        return _unreachable(exc)
    except UnicodeDecodeError:
        sys.stderr.write(f"megabus: {path} is not a UTF-8 text file\n")
        return EXIT_UNREACHABLE
    finally:
        session.close()
    return EXIT_ERRORS if failed else EXIT_OK


def _unreachable(exc: Exception) -> int:
    sys.stdout.flush()
    sys.stderr.write(f"megabus: {exc}\n")
    return EXIT_UNREACHABLE
