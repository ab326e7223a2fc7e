"""UP cardiac events (vendor-docs/up-band-cardiac-api.md) from an UP-class band.

- Heart rate: one event per window of the `heart_rate` stream (the device's recording_seconds,
  60 s for a band), titled "Heart rate", with the mean of the window's readings; a window
  without one reading (the band off the wrist) makes no event.
- Blood pressure: one event per measurement, with the pulse as its heart rate.
- Cardiac event: the wearer's title and note, with the heart rate at the tag.
`time_created` is the measurement's time, `tz` an Olson name for the band's offset (see
gateway.vendors.up.olson_name). Bodies are form-encoded, as the document's create shows.
"""

from __future__ import annotations

from datetime import tzinfo

import numpy as np

from gateway.core.blocks import HEART_RATE_CHANNEL, DeviceInfo, Reading, StreamId
from gateway.packagers.base import TimedPackager
from gateway.spool import Package
from gateway.vendors import up

HEART_RATE_TITLE, BLOOD_PRESSURE_TITLE = "Heart rate", "Blood pressure"


def _rate(value: float | None) -> int | None:
    """A heart rate the UP API takes, or None."""
    if value is None:
        return None
    r = int(round(value))
    return r if up.HEART_RATE[0] <= r <= up.HEART_RATE[1] else None


class UpCardiacEventPackager(TimedPackager):
    """Cardiac events for the UP API: heart-rate windows, blood pressures and tagged events."""

    kind = "up.cardiac_event"

    def __init__(self, uplink: str, recording_seconds: float = 60.0, tz: tzinfo | None = None) -> None:
        super().__init__(uplink, recording_seconds, tz)

    def channels(self, info: DeviceInfo) -> tuple[str, ...]:
        """The heart-rate stream, if the device has one."""
        return (HEART_RATE_CHANNEL,) if HEART_RATE_CHANNEL in info.channels else ()

    def package(self, info: DeviceInfo, stream: StreamId, first: int, samples: np.ndarray,
                start_time: float, analyse: bool = True) -> Package | None:
        """A 'Heart rate' event: the mean of the window's readings (0 is 'no reading')."""
        rates = samples[samples > 0]
        if not len(rates):
            return None
        body = up.create_body(title=HEART_RATE_TITLE, heart_rate=_rate(float(rates.mean())),
                              note=f"mean of {len(rates)} readings over {len(samples)} s",
                              time_created=int(start_time),
                              tz=up.olson_name(info.extra.get("tz_minutes"), start_time, self.tz))
        return self._package(stream, first, len(samples), start_time, body, content_type=up.FORM)

    def reading(self, reading: Reading) -> Package | None:
        """A blood pressure or a tagged event as one cardiac event."""
        f = reading.fields
        tz = up.olson_name(reading.tz_minutes, reading.time, self.tz)
        if reading.kind == "blood_pressure":
            body = up.create_body(title=BLOOD_PRESSURE_TITLE, systolic_pressure=int(round(f["systolic"])),
                                  diastolic_pressure=int(round(f["diastolic"])), heart_rate=_rate(f["pulse_rate"]),
                                  time_created=int(reading.time), tz=tz)
        elif reading.kind == "cardiac_event":
            # Without a heart rate (tagged off the wrist) the UP API refuses it: it is kept as a
            # dead letter with the API's reason, not dropped here.
            body = up.create_body(title=f["title"], note=f["note"], heart_rate=_rate(f["heart_rate"]),
                                  time_created=int(reading.time), tz=tz)
        else:
            return None
        return self._reading_package(reading, self.kind, body, up.FORM)
