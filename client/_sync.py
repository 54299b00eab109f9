"""``SyncClient``: the async client for programs without an event loop (2.8's Python API style).

The client and its connection live on an event loop in one background
thread; each call hands a coroutine over and waits for its result, so a
sync program sees plain methods (``mm.vm_info().rows``) and iterators.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

from megabus.client._client import Client, Command, Subscription
from megabus.client._results import Result

T = TypeVar("T")


class _Loop:
    """An event loop running in a daemon thread until :meth:`stop`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="megabus-client", daemon=True
        )
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class SyncCommand:
    """A generated method, blocking: ``mm.vlans_add("lan", 101)``."""

    def __init__(self, loop: _Loop, command: Command) -> None:
        self._loop = loop
        self._command = command
        self.__name__ = command.__name__
        self.__doc__ = command.__doc__
        self.__signature__ = command.__signature__

    def line(self, *args: Any, **kwargs: Any) -> str:
        return self._command.line(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Result:
        return self._loop.call(self._command(*args, **kwargs))


class SyncSubscription(Generic[T]):
    """A :class:`Subscription` as a blocking iterator; ``with`` subscribes first."""

    def __init__(self, loop: _Loop, sub: Subscription[T]) -> None:
        self._loop = loop
        self._sub = sub

    def __enter__(self) -> SyncSubscription[T]:
        self._loop.call(self._sub.__aenter__())
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._loop.call(self._sub.close())

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        try:
            return self._loop.call(self._sub.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def next(self, timeout: float | None = 10.0) -> T:
        return self._loop.call(self._sub.next(timeout))


class SyncClient:
    """:class:`Client` with blocking methods; build it with :meth:`connect`."""

    def __init__(self, loop: _Loop, client: Client, owner: bool = True) -> None:
        self._loop = loop
        self.client = client
        self._owner = owner

    @classmethod
    def connect(cls, *args: Any, **kwargs: Any) -> SyncClient:
        """:meth:`Client.connect`'s arguments; the same errors."""
        loop = _Loop()
        try:
            client = loop.call(Client.connect(*args, **kwargs))
        except BaseException:
            loop.stop()
            raise
        return cls(loop, client)

    @property
    def node(self) -> str:
        return self.client.node

    def close(self) -> None:
        if self._owner:
            self._loop.call(self.client.close())
            self._loop.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def namespace(self, name: str) -> SyncClient:
        return SyncClient(self._loop, self.client.namespace(name), owner=False)

    def run(self, line: str) -> Result:
        return self._loop.call(self.client.run(line))

    def command(self, name: str) -> SyncCommand:
        return SyncCommand(self._loop, self.client.command(name))

    def __getattr__(self, name: str) -> SyncCommand:
        if name.startswith("__") or "client" not in self.__dict__:
            raise AttributeError(name)
        return self.command(name)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.client.methods})

    def events(self, kind: str = "*", namespace: str | None = None) -> SyncSubscription[Any]:
        return SyncSubscription(self._loop, self.client.events(kind, namespace))

    def heartbeats(self) -> SyncSubscription[Any]:
        return SyncSubscription(self._loop, self.client.heartbeats())


__all__ = ["SyncClient", "SyncCommand", "SyncSubscription"]
