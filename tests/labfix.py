"""A lab of real hosts for tests: ``ops/lab.py`` itself, with names and addresses of the test's own.

:func:`lab_up` brings up a lab (each host a network namespace with its own
Open vSwitch and ``megabus node``, three NATS hubs) under a name, /24 and
ports no other test or user lab uses, and takes it down at the end;
:func:`lab_client` is a :class:`meshnodes.Cluster` speaking to its hubs.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from meshnodes import Cluster

from megabus.bus.connection import Bus

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "ops" / "lab.py"


@dataclass
class LabInfo:
    dir: Path
    urls: list[str]
    #: host name -> its ``ops/lab.py status`` entry (netns, ip, pid, base, ovs)
    hosts: dict[str, dict[str, object]]

    def lab(self, *args: str) -> str:
        """Run ``ops/lab.py --dir <dir> <args>``; its output (it must succeed)."""
        run = subprocess.run(
            [sys.executable, str(LAB), "--dir", str(self.dir), *args],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert run.returncode == 0, f"ops/lab.py {' '.join(args)}:\n{run.stdout}{run.stderr}"
        return run.stdout

    def refresh(self) -> None:
        self.hosts = json.loads(self.lab("status"))["hosts"]


def _free_ports() -> int:
    """A first port p with p..p+2 and p+100..p+102 free (hub clients and routes)."""
    for _ in range(100):
        first = random.randrange(20000, 40000)
        try:
            with contextlib.ExitStack() as stack:
                for port in (*range(first, first + 3), *range(first + 100, first + 103)):
                    s = stack.enter_context(socket.socket())
                    s.bind(("0.0.0.0", port))
        except OSError:
            continue
        return first
    raise AssertionError("no free ports for the lab's hubs")


@contextlib.contextmanager
def lab_up(
    directory: Path, count: int = 3, heartbeat: float = 1.0, accel: str = ""
) -> Iterator[LabInfo]:
    pid = os.getpid()
    name = f"t{pid % 100000}"
    net = f"10.{200 + pid % 50}.{pid // 50 % 250}"
    info = LabInfo(dir=directory, urls=[], hosts={})
    out = info.lab(
        "up", str(count), "--name", name, "--net", net, "--port", str(_free_ports()),
        "--heartbeat", str(heartbeat), "--level", os.environ.get("MEGABUS_LAB_LEVEL", "info"),
        *(["--accel", accel] if accel else []),
    )  # fmt: skip
    try:
        status = json.loads(out)
        info.urls = status["nats"].split(",")
        info.hosts = status["hosts"]
        yield info
    finally:
        subprocess.run(
            [sys.executable, str(LAB), "--dir", str(directory), "down"],
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip


@contextlib.asynccontextmanager
async def lab_client(info: LabInfo) -> AsyncIterator[Cluster]:
    bus = await Bus.connect(info.urls, name="labtest")
    try:
        yield Cluster(url=info.urls[0], client=bus)
    finally:
        await bus.close()
