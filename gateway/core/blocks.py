"""What drivers hand to the core: device info, blocks of samples, gaps, and discrete readings.

Every stream is named by a `StreamId`: the device, the device's session (a power-up), and the
channel. Sample positions are the device's own running counter, unwrapped to a Python int, so
a position names one sample of one session for ever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


HEART_RATE_CHANNEL = "heart_rate"  # a 1 Hz stream of bpm (0: no reading), from a device that measures it


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
    """`missing` samples of `stream` starting at counter `start` never arrived.

    `at_stop`: the frame in flight when the gateway itself stopped reading (a stop, or a device
    removed by a reload); recorded like any gap, but not a fault of the link.
    """

    stream: StreamId
    start: int
    missing: int
    at_stop: bool = False


@dataclass(frozen=True, slots=True)
class Reading:
    """One discrete measurement or event of a device (a blood pressure, a tagged cardiac event).

    `key` names it for ever: a device that repeats an unconfirmed reading repeats its key, so
    the spool and the receivers keep it once.
    """

    device: str
    model: str
    kind: str  # "blood_pressure" or "cardiac_event"
    time: float  # Unix seconds when it was measured (the device's clock)
    key: str
    fields: dict[str, Any]  # blood_pressure: systolic, diastolic, mean_arterial (mmHg), pulse_rate (bpm) or
    #                         None; cardiac_event: title, note, heart_rate (bpm) or None
    tz_minutes: int | None = None  # the device's UTC offset then, when it says


DriverEvent = DeviceInfo | SampleBlock | Gap | Reading


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
