"""One router: applies a config (the node's minirouter lines) and says what failed.

Lines run in order, as 2.8's minirouter ran them through its minicli: ``ip``
lines act at once, ``dnsmasq``/``bird`` lines fill a pending config that their
``commit`` line renders and (re)starts, ``route`` and ``log`` lines act at
once, and ``fw`` lines are collected and loaded at the end of the config
(:mod:`.fw`). A line that fails is reported with its number, its text and the
reason, and the next line runs anyway; nothing a line holds can stop the
daemon. Configs are bounded (:data:`MAX_BYTES`, :data:`MAX_LINES`): a larger
one is refused whole.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from megabus.router import lines, programs, routes
from megabus.router.bird import Bird
from megabus.router.dnsmasq import Dnsmasq
from megabus.router.fw import Firewall
from megabus.router.ip import Addresses
from megabus.router.lines import LineError
from megabus.router.options import Options
from megabus.router.tags import LogTail

logger = logging.getLogger(__name__)

#: Largest config the daemon accepts (2.8's node writes a few KB).
MAX_BYTES = 1 << 20
#: Most command lines in one config.
MAX_LINES = 20000
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}


@dataclass
class Failure:
    line: int
    text: str
    error: str

    def __str__(self) -> str:
        error = _printable(self.error, 2000)
        if self.line <= 0:
            return error
        return f"line {self.line}: {_printable(self.text.strip())}: {error}"


def _printable(text: str, limit: int = 200) -> str:
    """A line as the reply shows it: control characters escaped, long lines cut."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return shown + ("..." if len(text) > limit else "")


class TooLargeError(Exception):
    """A config past the bounds; nothing of it was applied."""


class Router:
    """The router's parts, and the lock that keeps two configs from interleaving."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.addresses = Addresses(opts)
        self.dnsmasq = Dnsmasq(opts)
        self.bird = Bird(opts)
        self.fw = Firewall(opts)
        self.lock = threading.Lock()

    def apply(
        self, text: str, report: Callable[[Failure], None] | None = None
    ) -> tuple[int, list[Failure]]:
        """Run every line of ``text``; (lines run, failures), each failure also to ``report``."""
        if len(text.encode(errors="replace")) > MAX_BYTES:
            raise TooLargeError(f"config larger than {MAX_BYTES} bytes; nothing applied")
        numbered = list(enumerate(text.splitlines(), start=1))
        if sum(1 for _, line in numbered if line.strip()) > MAX_LINES:
            raise TooLargeError(f"config of more than {MAX_LINES} lines; nothing applied")
        failures: list[Failure] = []

        def fail(f: Failure) -> None:
            logger.error("%s", f)
            failures.append(f)
            if report is not None:
                report(f)

        with self.lock:
            done = 0
            self.fw.begin()
            for lineno, line in numbered:
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                done += 1
                try:
                    self.line(lines.split(line), lineno, line)
                except (LineError, programs.ProgramError) as err:
                    fail(Failure(lineno, line, str(err)))
                except Exception as err:  # a bug must not take the daemon down
                    logger.exception("line %d: %s", lineno, line)
                    fail(Failure(lineno, line, f"internal error: {err!r}"))
            try:
                fw_failures = self.fw.finish()
            except Exception as err:
                logger.exception("fw")
                fw_failures = [(0, f"firewall: internal error: {err!r}")]
            texts = dict(numbered)
            for lineno, error in fw_failures:
                fail(Failure(lineno, texts.get(lineno, "fw"), error))
        return done, failures

    def line(self, words: list[str], lineno: int, text: str) -> None:
        """One command line."""
        if not words:
            return
        family = words[0]
        logger.debug("line %d: %s", lineno, " ".join(words))
        if family == "ip":
            self.addresses.handle(words)
        elif family == "dnsmasq":
            self.dnsmasq.handle(words)
        elif family == "bird":
            self.bird.handle(words)
        elif family == "route":
            routes.handle(words)
        elif family == "fw":
            self.fw.handle(words, lineno, text)
        elif family == "log":
            lines.want(words, 3)
            if words[1] != "level":
                raise LineError("want 'log level <debug|info|warn|error|fatal>'")
            level = lines.choice(words[2], "log level", tuple(LEVELS))
            root = logging.getLogger()
            root.setLevel(LEVELS[level])
            # 2.8 sets every logger's level, the minirouter_log tag's included
            for handler in root.handlers:
                if isinstance(handler, LogTail):
                    handler.setLevel(LEVELS[level])
        else:
            shown = family if len(family) <= 40 else family[:40] + "..."
            raise LineError(
                f"unknown command {shown!r} (minirouter knows ip, dnsmasq, bird, route, fw, log)"
            )

    def stop(self) -> None:
        """Daemon shutdown: stop the services it runs (dhclients keep their leases)."""
        self.dnsmasq.stop()
        self.bird.stop()
