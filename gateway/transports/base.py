"""The transport interface: bytes in, and when the link comes and goes; nothing about devices."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator


class LinkEvent:
    """A marker a transport yields between chunks of bytes."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


LINK_UP = LinkEvent("link up")
LINK_DOWN = LinkEvent("link down")


class Transport(ABC):
    """Yields chunks of bytes as they arrive, LINK_UP after each (re)connect, LINK_DOWN after each loss.

    A transport reconnects by itself and never raises for a lost link; it ends only when
    closed.
    """

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.connected = False

    @property
    @abstractmethod
    def address(self) -> str:
        """Where this transport reads from, for logs and status."""

    @abstractmethod
    def stream(self) -> AsyncIterator[bytes | LinkEvent]:
        """The chunks and link events, until close()."""

    @abstractmethod
    async def close(self) -> None:
        """Stop reading and release the link."""
