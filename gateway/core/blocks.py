"""What drivers hand to the core: device info, blocks of samples, and gaps.

Every stream is named by a `StreamId`: the device, the device's session (a power-up), and the
channel. Sample positions are the device's own running counter, unwrapped to a Python int, so
a position names one sample of one session for ever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class StreamId:
    """One channel of one device session."""

    device: str  # the device's own identity (serial number)
    session: str  # one power-up of the device (e.g. its boot id in hex)
    channel: str  # e.g. "leadI"

    @property
    def key(self) -> str:
        """A stable text form used in the spool and in idempotency keys."""
        return f"{self.device}/{self.session}/{self.channel}"

    @classmethod
    def from_key(cls, key: str) -> "StreamId":
        """Inverse of `key`."""
        device, session, channel = key.rsplit("/", 2)
        return cls(device, session, channel)


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """Rate and scaling of one channel."""

    sampling_frequency: int
    units_per_mv: float | None = None
    dtype: str = "<i2"  # how samples are held from the driver to the wire (int16 unless said)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device session began (or was first seen)."""

    device: str
    session: str
    model: str
    firmware: str
    channels: dict[str, ChannelInfo]
    extra: dict[str, Any] = field(default_factory=dict)

    def stream(self, channel: str) -> StreamId:
        """The StreamId of one of this session's channels."""
        return StreamId(self.device, self.session, channel)


@dataclass(frozen=True, slots=True)
class SampleBlock:
    """Contiguous samples of one stream, starting at device counter `first`."""

    stream: StreamId
    first: int
    samples: np.ndarray
    arrival: float  # gateway wall time (Unix s) when the bytes that finished the block arrived
    flags: int = 0

    @property
    def end(self) -> int:
        """Counter one past the last sample."""
        return self.first + len(self.samples)


@dataclass(frozen=True, slots=True)
class Gap:
    """`missing` samples of `stream` starting at counter `start` never arrived."""

    stream: StreamId
    start: int
    missing: int


DriverEvent = DeviceInfo | SampleBlock | Gap


def info_to_json(info: DeviceInfo) -> dict[str, Any]:
    """DeviceInfo as plain JSON (the spool stores it with each stream)."""
    return {"device": info.device, "session": info.session, "model": info.model, "firmware": info.firmware,
            "channels": {name: {"sampling_frequency": c.sampling_frequency, "units_per_mv": c.units_per_mv,
                                **({"dtype": c.dtype} if c.dtype != "<i2" else {})}
                         for name, c in info.channels.items()},
            "extra": info.extra}


def info_from_json(obj: dict[str, Any]) -> DeviceInfo:
    """Inverse of info_to_json."""
    return DeviceInfo(obj["device"], obj["session"], obj["model"], obj["firmware"],
                      {name: ChannelInfo(**c) for name, c in obj["channels"].items()}, obj.get("extra", {}))
