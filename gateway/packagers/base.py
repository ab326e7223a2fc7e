"""The packager interface: windows of one stream -> vendor-shaped packages for one uplink."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import tzinfo

import numpy as np

from gateway.core.blocks import DeviceInfo, Reading, StreamId
from gateway.spool import Package


def idempotency_key(stream: StreamId, first: int, end: int) -> str:
    """Device, session, channel and sample range: the same samples always get the same key."""
    return f"{stream.key}/{first}-{end}"


class Packager(ABC):
    """Cuts one uplink's packages; knows the vendor's shape, nothing of HTTP or storage."""

    kind: str
    # Waveforms may give way, oldest first, when the spool reaches its size cap; events
    # (readings, summaries) never do. A packager says which it makes.
    evictable: bool = False
    # A packager that analyses its windows runs in the packaging worker (packagers/worker.py),
    # off the event loop; with analyse=False it must still make the package, without analysis.
    offload: bool = False

    def __init__(self, uplink: str) -> None:
        self.uplink = uplink

    @abstractmethod
    def channels(self, info: DeviceInfo) -> tuple[str, ...]:
        """The channels of this device this packager consumes."""

    @abstractmethod
    def window(self, info: DeviceInfo, channel: str) -> int:
        """Samples per full package; shorter packages are cut only at gaps and at stop."""

    @abstractmethod
    def package(self, info: DeviceInfo, stream: StreamId, first: int, samples: np.ndarray,
                start_time: float, analyse: bool = True) -> Package | None:
        """One package of `samples` (counters first..), whose first sample was taken at `start_time`;
        None when the window holds nothing this vendor takes (e.g. heart rate with no skin contact).
        With analyse=False (the analysis failed or timed out) the package leaves out what analysis adds."""

    def reading(self, reading: Reading) -> Package | None:
        """The package of one discrete reading, or None if this vendor does not take its kind."""
        return None

    def _reading_package(self, reading: Reading, kind: str, body: bytes,
                         content_type: str = "application/json") -> Package:
        """A reading's package: keyed by the reading's own key; an event, never evicted."""
        return Package(self.uplink, reading.key, kind, f"{reading.device}/{reading.kind}", 0, 0, reading.time,
                       content_type, body, False)


class TimedPackager(Packager):
    """A packager whose windows are a fixed number of seconds of one channel."""

    def __init__(self, uplink: str, recording_seconds: float, tz: tzinfo | None = None) -> None:
        super().__init__(uplink)
        if recording_seconds <= 0:
            raise ValueError("recording_seconds must be positive")
        self.recording_seconds = recording_seconds
        self.tz = tz  # the UTC offset written in the bodies' times (UTC when None)

    def window(self, info: DeviceInfo, channel: str) -> int:
        """recording_seconds of samples at the channel's rate."""
        return max(1, round(self.recording_seconds * info.channels[channel].sampling_frequency))

    def _package(self, stream: StreamId, first: int, n: int, start_time: float, body: bytes,
                 content_type: str = "application/json") -> Package:
        end = first + n
        return Package(self.uplink, idempotency_key(stream, first, end), self.kind, stream.key, first, end,
                       start_time, content_type, body, self.evictable)
