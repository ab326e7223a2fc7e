"""The transport interface: bytes in, and when the link comes and goes; nothing about devices.

A transport puts what it reads into its `Inbox`; the core takes everything there at each tick
(gateway/ingest.py). The inbox is bounded in bytes: a transport that can stop reading (serial)
stops at the bound and leaves the rest in the kernel, so what has left the kernel and is not
yet durable never exceeds what the journal's bound allows.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Callable


class LinkEvent:
    """A marker a transport yields between chunks of bytes."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Notification(bytes):
    """The bytes of one BLE notification (or read), tagged with the characteristic that carried them.

    It is bytes, so a driver of a byte stream reads it like serial data; a driver of several
    characteristics dispatches on `characteristic`.
    """

    characteristic: str

    def __new__(cls, data: bytes, characteristic: str) -> "Notification":
        obj = super().__new__(cls, data)
        obj.characteristic = characteristic.lower()
        return obj


LINK_UP = LinkEvent("link up")
LINK_DOWN = LinkEvent("link down")

DEFAULT_INBOX_BYTES = 1 << 16


class Inbox:
    """What a transport has read and the core has not taken yet: (item, arrival) in order.

    `limit` bounds the bytes held; `room()` is what a transport may still read. `on_ready` is
    the core's wake-up (called when something arrives into an empty inbox); `on_room` is the
    transport's (called when a take frees room after the transport stopped at the limit).
    """

    __slots__ = ("items", "bytes", "limit", "on_ready", "on_room", "_full")

    def __init__(self, limit: int = DEFAULT_INBOX_BYTES) -> None:
        self.items: list[tuple[bytes | LinkEvent, float]] = []
        self.bytes = 0
        self.limit = limit
        self.on_ready: Callable[[], None] | None = None
        self.on_room: Callable[[], None] | None = None
        self._full = False

    def room(self) -> int:
        """Bytes a transport may still put before the core takes."""
        room = self.limit - self.bytes
        if room <= 0:
            self._full = True
            return 0
        return room

    def put(self, item: bytes | LinkEvent, arrival: float | None = None) -> None:
        """Append bytes or a link event (bytes arrived at `arrival`, wall time, default now)."""
        was_empty = not self.items
        self.items.append((item, time.time() if arrival is None else arrival))
        if not isinstance(item, LinkEvent):
            self.bytes += len(item)
        if was_empty and self.on_ready is not None:
            self.on_ready()

    def take(self) -> list[tuple[bytes | LinkEvent, float]]:
        """Everything held, oldest first; the inbox is empty after."""
        items, self.items, self.bytes = self.items, [], 0
        if self._full:
            self._full = False
            if self.on_room is not None:
                self.on_room()
        return items


class Transport(ABC):
    """Reads a link into `inbox`: chunks of bytes (BLE: one Notification each) as they arrive,
    LINK_UP after each (re)connect, LINK_DOWN after each loss, never a byte dropped between.

    A transport reconnects by itself and never raises for a lost link; `run()` ends only when
    closed.
    """

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.connected = False
        self.down_reason: str | None = "not connected yet"  # why the link is down, for the status page
        self.inbox = Inbox()

    @property
    @abstractmethod
    def address(self) -> str:
        """Where this transport reads from, for logs and status."""

    @abstractmethod
    async def run(self) -> None:
        """Connect, read into the inbox, reconnect after losses, until close()."""

    @abstractmethod
    async def close(self) -> None:
        """Stop reading and release the link; run() returns after what it read is in the inbox."""

    async def stream(self) -> AsyncIterator[bytes | LinkEvent]:
        """The inbox as an async iterator (for tools and tests): run() in a task, items as they arrive."""
        ready = asyncio.Event()
        self.inbox.on_ready = ready.set
        task = asyncio.create_task(self.run(), name=f"transport {self.address}")
        try:
            while True:
                ready.clear()
                for item, _ in self.inbox.take():
                    yield item
                if task.done():
                    for item, _ in self.inbox.take():
                        yield item
                    task.result()
                    return
                if not self.inbox.items:
                    waiter = asyncio.ensure_future(ready.wait())
                    try:
                        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
        finally:
            self.inbox.on_ready = None
            if not task.done():
                await self.close()
                try:
                    await asyncio.wait_for(task, 10.0)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    task.cancel()
