"""VM tags through the agent: interface byte counters and the daemon's recent log.

2.8's minirouter pushed ``minirouter_<if>_rx_bytes`` / ``_tx_bytes`` and a
``minirouter_log`` tag (its last 20 log lines) through ``miniccc -tag``. Ours
speaks the agent's local control socket (``<agent path>/miniccc``, one JSON
line ``{"tag": [key, value]}``, answer ``ok``) directly: starting a Python
agent per tag would cost more than the tags are worth. Counters go every
``-stats`` seconds and only when they changed; the log goes at most once a
second. With no agent listening nothing is sent and nothing fails.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections import deque

from megabus.router import ifaces
from megabus.router.lines import LineError
from megabus.router.options import Options

logger = logging.getLogger(__name__)

#: 2.8's LOG_TAG_SIZE.
LOG_LINES = 20
#: The agent's control socket name (``megabus.agent.client.CONTROL_SOCKET``).
AGENT_SOCKET = "miniccc"


def send_tag(agent: str, key: str, value: str, timeout: float = 2.0) -> bool:
    """Set one tag through the agent at ``agent``; whether it said ok."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(os.path.join(agent, AGENT_SOCKET))
            sock.sendall(json.dumps({"tag": [key, value]}).encode() + b"\n")
            answer = sock.recv(256)
    except OSError:
        return False
    return answer.strip() == b"ok"


class LogTail(logging.Handler):
    """Keeps the last :data:`LOG_LINES` formatted records for the ``minirouter_log`` tag."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=LOG_LINES)
        self.changed = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            return
        self.changed.set()


class Tagger(threading.Thread):
    """The background job: counters every ``-stats`` seconds, the log when it changed."""

    def __init__(self, opts: Options, log: LogTail) -> None:
        super().__init__(name="minirouter-tags", daemon=True)
        self.opts = opts
        self.log = log
        self.stopping = threading.Event()
        self._sent: dict[str, str] = {}

    def run(self) -> None:
        elapsed = self.opts.stats
        while not self.stopping.wait(1.0):
            try:
                if self.log.changed.is_set():
                    self.log.changed.clear()
                    self._push("minirouter_log", "\n".join(self.log.lines))
                elapsed += 1.0
                if self.opts.stats > 0 and elapsed >= self.opts.stats:
                    elapsed = 0.0
                    self._counters()
            except Exception:  # the tags are a nicety: never the daemon's end
                logger.debug("tags", exc_info=True)

    def _counters(self) -> None:
        try:
            names = ifaces.names(self.opts.sysfs)
        except LineError:
            return
        for name in names:
            for what in ("rx_bytes", "tx_bytes"):
                path = os.path.join(self.opts.sysfs, "class", "net", name, "statistics", what)
                try:
                    with open(path) as fh:
                        value = fh.read().strip()
                except OSError:
                    continue
                self._push(f"minirouter_{name}_{what}", value)

    def _push(self, key: str, value: str) -> None:
        if self._sent.get(key) == value:
            return
        if send_tag(self.opts.agent, key, value):
            self._sent[key] = value
