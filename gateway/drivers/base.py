"""The driver interface: bytes from any transport in, typed driver events out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from datetime import tzinfo
from typing import ClassVar

from gateway.core.blocks import DriverEvent


# Counter names that mean "a frame (or what looked like one) was refused".
BAD_FRAME_COUNTERS = ("crc_errors", "bad_headers", "unsupported_version", "truncated_frames")


def bad_frames(counters: Counter[str] | dict[str, int]) -> int:
    """Frames refused for any reason: bad CRC, header, version, truncation or impossible fields."""
    return sum(v for k, v in counters.items() if k in BAD_FRAME_COUNTERS or k.startswith("bad_frame:"))


class Driver(ABC):
    """Knows one kind of device; knows nothing of transports, streams' storage or vendors.

    A driver is fed the bytes a transport delivered and returns events in order. It never
    raises on bad input: it counts it in `counters` and drops it.
    """

    name: ClassVar[str]
    # Over BLE: the characteristics whose notifications carry the device's byte stream, in order.
    ble_notify: ClassVar[tuple[str, ...]] = ()
    # Over BLE: characteristics read once per connection, before the notifications (identity, time).
    ble_read: ClassVar[tuple[str, ...]] = ()
    # What the device sends in a second at its usual settings: the daemon bounds what a transport
    # may hold unread by the core to a fraction of journal_interval of it.
    bytes_per_second: ClassVar[int] = 1024

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.local_zone: tzinfo | None = None  # the gateway's time zone, for device times without an offset

    @abstractmethod
    def feed(self, data: bytes, arrival: float) -> list[DriverEvent]:
        """Consume bytes that arrived at wall time `arrival`; return the events they complete."""

    @abstractmethod
    def link_lost(self) -> list[DriverEvent]:
        """The transport lost the link: drop partial frames; return any events that completes."""
