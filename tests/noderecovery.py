"""Node processes started through ``ops/mm-recover.sh``, as ``-recover`` tests need them.

Also what those tests do with such a node: run lines on it, read ``vm info``,
wait, and clean up what a failed test left (containers, mounts, cgroups).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from pathlib import Path

from megabus.bus.connection import Bus
from megabus.handlers.net._ovs import find_db
from megabus.handlers.vms._container_cgroup import ROOT, node_key
from megabus.handlers.vms._container_net import NETNS_DIR

REPO = Path(__file__).resolve().parent.parent
MEGABUS = str(Path(os.environ.get("VIRTUAL_ENV") or REPO / ".venv") / "bin" / "megabus")
SCRIPT = REPO / "ops" / "mm-recover.sh"
NODE = "rec"
#: Bounded waits: this many tries, POLL seconds apart.
TRIES = 300
POLL = 0.1
#: Seconds a helper program may take.
CALL_TIMEOUT = 30.0
#: :func:`until`'s bound: containers and their agents may take a while.
UNTIL_TRIES = 400


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def start(
    base: Path, url: str, *, recover: bool, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """A node process through ops/mm-recover.sh; returns once it answers.

    ``url`` empty: the node starts its own server. ``env`` goes over the
    script's settings (``MEGABUS``: another program to start).
    """
    info = base / "megabus.json"
    with contextlib.suppress(FileNotFoundError):
        info.unlink()  # a killed node leaves its own behind
    env = {
        **os.environ,
        "MEGABUS": MEGABUS,
        "MM_BASE": str(base),
        "MM_NAME": NODE,
        "MM_NATS": url,
        "MM_LOGLEVEL": "error",
        "MM_RECOVER": "true" if recover else "false",
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        "sh", str(SCRIPT), env=env, stdin=asyncio.subprocess.DEVNULL
    )
    for _ in range(TRIES):
        if info.exists() or proc.returncode is not None:
            break
        await asyncio.sleep(POLL)
    assert info.exists(), f"node did not start (status {proc.returncode})"
    return proc


async def run(bus: Bus, line: str) -> list[list[str]]:
    """The rows of a command (header first); fails on any error."""
    # a loaded machine may keep a node from its keep-alives for a while
    replies = await bus.command(NODE, ".annotate false " + line, idle_timeout=CALL_TIMEOUT)
    responses = [r for rep in replies for r in rep.responses]
    assert [r.error for r in responses if r.error] == [], line
    rows: list[list[str]] = []
    for r in responses:
        if r.header:
            rows += [list(r.header), *(r.tabular or [])]
    return rows


async def info(bus: Bus) -> dict[str, dict[str, str]]:
    """``vm info`` as name -> column -> value, without uptime and vnc_port (new after -recover)."""
    rows = await run(bus, "vm info")
    header = rows[0]
    return {
        row[1]: {c: v for c, v in zip(header, row, strict=True) if c not in ("uptime", "vnc_port")}
        for row in rows[1:]
    }


async def until(check: object, what: str, tries: int = UNTIL_TRIES) -> None:
    """Poll the coroutine function ``check`` until it returns true (``tries`` looks)."""
    assert callable(check)
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(POLL)
    raise AssertionError(f"gave up waiting for {what}")


async def cc_active(bus: Bus, *names: str, want: str = "true", tries: int = UNTIL_TRIES) -> None:
    async def check() -> bool:
        vms = await info(bus)
        return all(vms[n]["cc_active"] == want for n in names)

    await until(check, f"cc_active={want} on {names}", tries)


def vsctl(*args: str) -> subprocess.CompletedProcess[str]:
    """``ovs-vsctl`` on the switch the node uses."""
    db, _ = find_db()
    return subprocess.run(
        ["ovs-vsctl", f"--db={db}", *args], capture_output=True, text=True, check=False
    )


def cleanup(base: Path, pids: list[int], bridge: str) -> None:
    """Whatever a failed test left: processes, mounts, netns links, cgroups, the bridge."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    key = node_key(str(base))
    for sub in ("freezer", "memory", "devices", "cpu"):
        node_dir = Path(ROOT, sub, "megabus", key)
        for leaf in node_dir.glob("*") if node_dir.is_dir() else []:
            if leaf.is_dir():
                with contextlib.suppress(OSError):
                    (leaf / "freezer.state").write_text("THAWED")
                procs = (leaf / "cgroup.procs").read_text().split()
                for pid in map(int, procs):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
    for inst in base.glob("[0-9]*"):
        for _ in range(20):
            if not os.path.ismount(inst / "fs"):
                break
            subprocess.run(["umount", str(inst / "fs")], check=False, capture_output=True)
    for name in os.listdir(NETNS_DIR) if os.path.isdir(NETNS_DIR) else []:
        path = os.path.join(NETNS_DIR, name)
        if name.startswith("meganet_") and os.path.islink(path) and not os.path.exists(path):
            os.unlink(path)
    for sub in ("freezer", "memory", "devices", "cpu"):
        node_dir = Path(ROOT, sub, "megabus", key)
        for leaf in node_dir.glob("*") if node_dir.is_dir() else []:
            with contextlib.suppress(OSError):
                leaf.rmdir()
        with contextlib.suppress(OSError):
            node_dir.rmdir()
    vsctl("--if-exists", "del-br", bridge)


def netns_of(pid: int) -> str:
    """The ``/var/run/netns`` name that leads to ``pid``'s network namespace."""
    for name in os.listdir(NETNS_DIR):
        with contextlib.suppress(OSError):
            if os.readlink(os.path.join(NETNS_DIR, name)) == f"/proc/{pid}/ns/net":
                return name
    raise AssertionError(f"no netns link for {pid}")


async def sh(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), CALL_TIMEOUT)
    return proc.returncode or 0, out.decode(errors="replace")


async def ping(pid: int, ip: str) -> bool:
    for _ in range(10):  # the userspace datapath may need a moment for new ports
        code, _ = await sh(
            "ip", "netns", "exec", netns_of(pid), "ping", "-c", "2", "-i", "0.2", "-W", "1", ip
        )
        if code == 0:
            return True
    return False
