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


class Transport(ABC):
    """Yields chunks of bytes (BLE: one Notification each) as they arrive, LINK_UP after each
    (re)connect, LINK_DOWN after each loss.

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
