"""The driver interface: bytes from any transport in, typed driver events out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from typing import ClassVar

from gateway.core.blocks import DriverEvent


class Driver(ABC):
    """Knows one kind of device; knows nothing of transports, streams' storage or vendors.

    A driver is fed the bytes a transport delivered and returns events in order. It never
    raises on bad input: it counts it in `counters` and drops it.
    """

    name: ClassVar[str]

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()

    @abstractmethod
    def feed(self, data: bytes, arrival: float) -> list[DriverEvent]:
        """Consume bytes that arrived at wall time `arrival`; return the events they complete."""

    @abstractmethod
    def link_lost(self) -> list[DriverEvent]:
        """The transport lost the link: drop partial frames; return any events that completes."""
