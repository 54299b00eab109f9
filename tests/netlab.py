"""Network namespaces hung off a bridge by veth pairs, that ping each other."""

from __future__ import annotations

from dataclasses import dataclass

from procs import run


@dataclass
class Guest:
    """A network namespace with one veth into the bridge."""

    netns: str
    link: str
    ip: str

    async def ping(self, other: Guest) -> bool:
        # -c 3: the first frames may go while the userspace datapath learns
        code, _ = await run(
            "ip", "netns", "exec", self.netns, "ping", "-c", "3", "-i", "0.2", "-W", "1", other.ip
        )
        return code == 0
