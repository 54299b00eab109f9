"""Running commands in the guest: foreground, background (tracked), kills, test-conn."""

# Python 3.9 in guests: asyncio.TimeoutError is not TimeoutError there.
# ruff: noqa: UP041

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Awaitable

from megabus.bus import cc_messages as wire

logger = logging.getLogger(__name__)

#: 2.8 dials each attempt of ``cc test-conn`` with this timeout (and waits as long for a UDP reply).
CONN_TEST_TIMEOUT = 0.5


def _clip(data: bytes) -> str:
    text = data.decode(errors="replace")
    if len(text) > wire.MAX_OUTPUT:
        return text[: wire.MAX_OUTPUT] + f"\n[megabus agent: output cut at {wire.MAX_OUTPUT} bytes]"
    return text


#: Output as a response carries it (cut at ``MAX_OUTPUT``), for :mod:`megabus.agent.pipes`.
clip = _clip


class Processes:
    """The agent's processes: foreground runs and the background ones it keeps track of."""

    def __init__(self, files_dir: str) -> None:
        self.files_dir = files_dir
        self._background: dict[int, tuple[list[str], asyncio.subprocess.Process]] = {}
        self._waiters: set[asyncio.Task[None]] = set()

    def _argv(self, command: list[str]) -> list[str]:
        """2.8's lookup: ``$PATH`` first, then the agent's files directory."""
        if not command:
            return command
        exe = shutil.which(command[0])
        if exe is None:
            candidate = os.path.join(self.files_dir, command[0])
            if os.path.isfile(candidate):
                exe = candidate
        return [exe or command[0], *command[1:]]

    async def run(self, command: list[str]) -> tuple[str, str, int]:
        """Run to completion; (stdout, stderr, exit code), exit code -1 if it did not start."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(command),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as err:
            return "", str(err), -1
        out, errout = await proc.communicate()
        code = proc.returncode if proc.returncode is not None else -1
        return _clip(out), _clip(errout), code

    async def start(self, command: list[str]) -> tuple[str, int]:
        """Start in the background; (error text, pid)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(command),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as err:
            return str(err), -1
        self._background[proc.pid] = (list(command), proc)
        task = asyncio.ensure_future(self._reap(proc))
        self._waiters.add(task)
        task.add_done_callback(self._waiters.discard)
        return "", proc.pid

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        self._background.pop(proc.pid, None)
        logger.info("background process %d exited: %s", proc.pid, proc.returncode)

    def argv(self, command: list[str]) -> list[str]:
        """The argv to start ``command`` with (2.8's lookup, see ``_argv``)."""
        return self._argv(command)

    def track(
        self, command: list[str], proc: asyncio.subprocess.Process, finish: Awaitable[None]
    ) -> None:
        """Keep a background process started elsewhere (cc stdio); ``finish`` ends with it."""
        self._background[proc.pid] = (list(command), proc)

        async def reap() -> None:
            try:
                await finish
            finally:
                self._background.pop(proc.pid, None)

        task = asyncio.ensure_future(reap())
        self._waiters.add(task)
        task.add_done_callback(self._waiters.discard)

    def listing(self) -> list[wire.Process]:
        return [
            wire.Process(pid=pid, command=cmd)
            for pid, (cmd, _p) in sorted(self._background.items())
        ]

    def kill(self, pid: int) -> None:
        """Kill one background process, or all of them (-1)."""
        for p, (_cmd, proc) in list(self._background.items()):
            if pid == -1 or p == pid:
                self._signal(proc)

    def kill_all(self, name: str) -> None:
        """Kill every background process whose command line holds ``name``."""
        for _p, (cmd, proc) in list(self._background.items()):
            if name in " ".join(cmd):
                self._signal(proc)

    @staticmethod
    def _signal(proc: asyncio.subprocess.Process) -> None:
        try:
            proc.send_signal(getattr(signal, "SIGKILL", signal.SIGTERM))
        except ProcessLookupError:
            pass

    async def close(self) -> None:
        """Kill every background process and wait for them (agent exit)."""
        self.kill(-1)
        if self._waiters:
            await asyncio.wait(list(self._waiters), timeout=5.0)


async def conn_test(test: wire.ConnTest) -> str:
    """2.8's ``cc test-conn``: ``<ip>:<port> | pass`` or ``| fail``."""
    scheme, _, rest = test.endpoint.partition("://")
    host, _, port_text = rest.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        return f"{rest} | fail"
    deadline = time.monotonic() + max(test.wait, 0.0)
    while True:
        ok = await (_try_udp(host, port, test.packet) if scheme == "udp" else _try_tcp(host, port))
        if ok or time.monotonic() >= deadline:
            return f"{rest} | {'pass' if ok else 'fail'}"
        await asyncio.sleep(min(CONN_TEST_TIMEOUT, max(0.0, deadline - time.monotonic())))


async def _try_tcp(host: str, port: int) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), CONN_TEST_TIMEOUT
        )
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


async def _try_udp(host: str, port: int, packet: bytes) -> bool:
    return await asyncio.to_thread(_udp_blocking, host, port, packet)


def _udp_blocking(host: str, port: int, packet: bytes) -> bool:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return False
    family, kind, proto, _name, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.settimeout(CONN_TEST_TIMEOUT)
        try:
            s.connect(addr)
            s.send(packet)
            return len(s.recv(65535)) >= 1
        except OSError:
            return False
