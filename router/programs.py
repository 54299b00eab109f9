"""Running external programs: argument lists, never a shell; timeouts; clear errors.

:func:`run` is for tools that finish (``ip``, ``iptables-restore``, ``birdc``);
:class:`Service` supervises one long-running daemon the router owns (dnsmasq,
bird): start, check it stayed up, stop, and kill a leftover from an earlier
daemon through its pid file. A program that is not installed is a
:class:`ProgramError` saying so, never a traceback.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from typing import IO

logger = logging.getLogger(__name__)

#: Seconds a tool may take unless the caller says otherwise.
TIMEOUT = 15.0
#: Bytes of a service's log kept when it is started again.
LOG_LIMIT = 1 << 20


class ProgramError(Exception):
    """A program that is missing, timed out or failed; the message is one line."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        #: What a program that failed printed (stdout and stderr).
        self.output = output


def which(program: str) -> str | None:
    """``program``'s path on ``PATH`` (the images' init puts the sbin folders there)."""
    return shutil.which(program)


def need(program: str) -> str:
    found = which(program)
    if found is None:
        raise ProgramError(f"{program} is not installed (not found on PATH)")
    return found


def one_line(text: str, limit: int = 600) -> str:
    """Program output as one line (the reply protocol is one line per failure)."""
    flat = " | ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    if len(flat) > limit:
        flat = flat[: limit - 3] + "..."
    return flat


def run(argv: list[str], timeout: float = TIMEOUT, stdin: str | None = None) -> str:
    """Run a tool to completion; its output (stdout and stderr), ``ProgramError`` on failure."""
    exe = need(argv[0])
    shown = " ".join(argv)
    logger.debug("run: %s", shown)
    try:
        proc = subprocess.run(
            [exe, *argv[1:]],
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ProgramError(f"{shown}: no answer within {timeout:g}s") from None
    except OSError as err:
        raise ProgramError(f"{shown}: {err}") from None
    if proc.returncode != 0:
        raise ProgramError(
            f"{shown} failed (exit {proc.returncode}): {one_line(proc.stdout)}", proc.stdout
        )
    return proc.stdout


def write_file(path: str, text: str) -> None:
    """Replace ``path`` with a rename, so that no reader sees half a file."""
    folder = os.path.dirname(path) or "."
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as err:
        raise ProgramError(f"cannot write {path}: {err}") from None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def kill_stale(pid_file: str, marker: str) -> None:
    """Kill the process in ``pid_file`` if its command line holds ``marker`` (ours, left over)."""
    try:
        with open(pid_file) as fh:
            pid = int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return
    if pid <= 1 or pid == os.getpid() or not any(marker in arg for arg in cmdline(pid)):
        return
    logger.info("stopping leftover %s (pid %d)", marker, pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and pid_alive(pid) and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def tail(path: str, limit: int = 800) -> str:
    """The last ``limit`` characters of a log file, as one line."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return one_line(text, limit)


class Service:
    """One long-running daemon (foreground mode) that the router starts and stops."""

    def __init__(self, name: str, log_path: str, pid_file: str, marker: str) -> None:
        self.name = name
        self.log_path = log_path
        #: The pid file the daemon writes, and the word its command line holds: stale kills.
        self.pid_file = pid_file
        self.marker = marker
        self._proc: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, argv: list[str], settle: float = 0.3) -> None:
        """Start ``argv``; ``ProgramError`` if it is missing or dies within ``settle`` s."""
        self.stop()
        kill_stale(self.pid_file, self.marker)
        exe = need(argv[0])
        log = self._open_log()
        try:
            logger.info("starting %s: %s", self.name, " ".join(argv))
            self._proc = subprocess.Popen(
                [exe, *argv[1:]],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as err:
            raise ProgramError(f"{self.name}: {err}") from None
        finally:
            log.close()
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        if self._proc.poll() is not None:
            code = self._proc.returncode
            self._proc = None
            raise ProgramError(f"{self.name} exited at once (status {code}): {tail(self.log_path)}")

    def _open_log(self) -> IO[bytes]:
        try:
            if os.path.getsize(self.log_path) > LOG_LIMIT:
                os.truncate(self.log_path, 0)
        except OSError:
            pass
        return open(self.log_path, "ab")

    def stop(self, grace: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        logger.info("stopping %s (pid %d)", self.name, proc.pid)
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
