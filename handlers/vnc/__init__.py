"""The VNC engine: each KVM guest's TCP shim, kb/fb recordings and kb playback.

* :class:`VncShim`: a guest's ``vnc_port``, proxied to QEMU's VNC socket,
  handing the key and pointer events clients send to the kb recorder;
* :class:`Screens`: a node's recorders and players, one pair per namespace
  (2.8 keeps them in the namespace), which ``vnc`` and ``clear vnc`` drive;
* :mod:`.rfb`: the RFB messages and an asyncio client.

Other packages import from here, never from the modules.
"""

from __future__ import annotations

from megabus.handlers.vnc import rfb
from megabus.handlers.vnc._player import Player
from megabus.handlers.vnc._recorder import Recorder
from megabus.handlers.vnc._shim import VncShim
from megabus.handlers.vnc.rfb import Event


class Screens:
    """A node's VNC recordings and playbacks, per namespace."""

    def __init__(self) -> None:
        self.recorders: dict[str, Recorder] = {}
        self.players: dict[str, Player] = {}

    def recorder(self, namespace: str) -> Recorder:
        """The namespace's recorder, made on first use."""
        found = self.recorders.get(namespace)
        if found is None:
            found = self.recorders[namespace] = Recorder(namespace)
        return found

    def player(self, namespace: str) -> Player:
        """The namespace's player, made on first use."""
        found = self.players.get(namespace)
        if found is None:
            found = self.players[namespace] = Player(namespace)
        return found

    def route(self, namespace: str, name: str, event: Event) -> None:
        """A client of VM ``name`` sent ``event`` (the shim calls this)."""
        rec = self.recorders.get(namespace)
        if rec is not None:
            rec.route(name, event)

    def info(self, namespace: str) -> list[list[str]]:
        """``vnc``'s rows for the namespace: recordings, then playbacks."""
        rows: list[list[str]] = []
        if namespace in self.recorders:
            rows += self.recorders[namespace].info()
        if namespace in self.players:
            rows += self.players[namespace].info()
        return rows

    async def clear(self, namespace: str) -> None:
        """``clear vnc``: stop the namespace's recordings and playbacks."""
        rec = self.recorders.pop(namespace, None)
        if rec is not None:
            await rec.clear()
        player = self.players.pop(namespace, None)
        if player is not None:
            await player.clear()

    async def close(self) -> None:
        """Stop everything (node shutdown)."""
        for namespace in list(self.recorders) + list(self.players):
            await self.clear(namespace)


__all__ = ["Event", "Player", "Recorder", "Screens", "VncShim", "rfb"]
