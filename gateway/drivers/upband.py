"""UP-class band driver (firmware_specs/upband.md): BLE values -> a heart-rate stream and readings.

What each characteristic becomes:
- Device Information and Local Time Information, read at each connection: who the band is
  and its UTC offset.
- Heart Rate Measurement: one sample of channel `heart_rate` (1 Hz, uint16 bpm). The value
  carries no counter or time, so a session is one connection (counters restart at 0) and the
  core's clock stamps samples from their arrival. 0 means "no reading": the band reports no
  skin contact, or a rate outside 20-300 bpm.
- Blood Pressure Measurement: a `blood_pressure` Reading in mmHg, placed in time by its local
  time stamp and the band's offset (the gateway's time zone when the band does not say).
- Cardiac event: a `cardiac_event` Reading.
A band repeats indications it could not have confirmed; a repeat has the same key and is dropped
here, and receivers drop it by that key after a gateway restart.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import OrderedDict
from datetime import timedelta, timezone

import numpy as np

from gateway.core.blocks import HEART_RATE_CHANNEL, ChannelInfo, DeviceInfo, DriverEvent, Reading, SampleBlock
from gateway.drivers.base import Driver
from gateway.protocols import gatt, upband

log = logging.getLogger(__name__)

MODEL = "upband"
HR_RANGE = (20, 300)
KPA_TO_MMHG = 7.500617
SEEN_LIMIT = 4096  # reading keys remembered for dropping repeats

u = gatt.uuid16
SERIAL, MODEL_NUMBER, FIRMWARE = u(0x2A25), u(0x2A24), u(0x2A26)
LOCAL_TIME = u(gatt.LOCAL_TIME_INFORMATION)
HRM, BPM, EVENT = u(gatt.HEART_RATE_MEASUREMENT), u(gatt.BLOOD_PRESSURE_MEASUREMENT), upband.EVENT_UUID


class UpBandDriver(Driver):
    """Decodes an UP-class band's GATT values into a heart-rate stream and readings."""

    name = "upband"
    bytes_per_second = 64  # a heart rate a second and an occasional indication
    ble_read = (SERIAL, MODEL_NUMBER, FIRMWARE, LOCAL_TIME)
    ble_notify = (HRM, BPM, EVENT)

    def __init__(self) -> None:
        super().__init__()
        self._serial: str | None = None
        self._model = MODEL
        self._firmware = ""
        self._tz_minutes: int | None = None
        self._info: DeviceInfo | None = None
        self._count = 0
        self._seen: OrderedDict[str, None] = OrderedDict()

    def feed(self, data: bytes, arrival: float) -> list[DriverEvent]:
        """One notification or read value (a `Notification`); plain bytes are refused: a band is BLE only."""
        char = getattr(data, "characteristic", None)
        if char is None:
            self.counters["untagged_bytes"] += len(data)
            return []
        events: list[DriverEvent] = []
        try:
            if char in self.ble_read:
                self._on_read(char, bytes(data))
                return events
            if char not in self.ble_notify:
                self.counters["unknown_characteristic"] += 1
                return events
            if self._info is None:
                self._info = self._session(arrival)
                events.append(self._info)
            if char == HRM:
                self._on_heart_rate(bytes(data), arrival, events)
            elif char == BPM:
                self._on_blood_pressure(bytes(data), arrival, events)
            else:
                self._on_event(bytes(data), events)
        except gatt.GattError as exc:
            kind = {HRM: "heart_rate", BPM: "blood_pressure", EVENT: "cardiac_event"}.get(char, "read")
            self.counters[f"bad_frame:{kind}"] += 1
            log.warning("%s: refused a %s value %s: %s", self._serial or "band", kind, bytes(data).hex(), exc)
        return events

    def link_lost(self) -> list[DriverEvent]:
        """The connection ended: the next one is a new session of the heart-rate stream."""
        self._info = None
        self._count = 0
        return []

    # -- per characteristic ---------------------------------------------------------------

    def _on_read(self, char: str, data: bytes) -> None:
        if char == LOCAL_TIME:
            self._tz_minutes = gatt.decode_local_time_information(data)
        elif char == SERIAL:
            self._serial = gatt.decode_string(data, "serial number") or None
        elif char == MODEL_NUMBER:
            self._model = gatt.decode_string(data, "model number") or MODEL
        else:
            self._firmware = gatt.decode_string(data, "firmware revision")

    def _session(self, arrival: float) -> DeviceInfo:
        if self._serial is None:
            self.counters["no_serial_number"] += 1
            log.warning("band without a Device Information serial number: its data is filed as 'upband-unknown'")
        return DeviceInfo(device=self._serial or "upband-unknown", session=f"{int(arrival * 1000):x}",
                          model=self._model, firmware=self._firmware,
                          channels={HEART_RATE_CHANNEL: ChannelInfo(1, dtype="<u2")},
                          extra={"tz_minutes": self._tz_minutes})

    def _on_heart_rate(self, data: bytes, arrival: float, events: list[DriverEvent]) -> None:
        m = gatt.decode_heart_rate(data)
        rate = m.heart_rate
        if m.sensor_contact is False:
            self.counters["no_contact"] += 1
            rate = 0
        elif not HR_RANGE[0] <= rate <= HR_RANGE[1]:
            self.counters["implausible_heart_rate"] += 1
            rate = 0
        assert self._info is not None
        events.append(SampleBlock(self._info.stream(HEART_RATE_CHANNEL), self._count, np.array([rate], "<u2"), arrival))
        self.counters["heart_rates"] += 1
        self._count += 1

    def _on_blood_pressure(self, data: bytes, arrival: float, events: list[DriverEvent]) -> None:
        m = gatt.decode_blood_pressure(data)
        scale = KPA_TO_MMHG if m.kpa else 1.0
        values = [m.systolic, m.diastolic, m.mean_arterial]
        if not all(isinstance(v, float) and math.isfinite(v) for v in values):
            raise gatt.GattError(f"blood pressure measurement: pressures {values} are not all numbers")
        systolic, diastolic, mean = (round(v * scale, 1) for v in values)
        if not 30 <= diastolic < systolic <= 300:
            raise gatt.GattError(f"blood pressure measurement: {systolic}/{diastolic} mmHg cannot be")
        if m.time_stamp is None:
            when, tz_minutes = arrival, self._tz_minutes
        else:
            zone = timezone(timedelta(minutes=self._tz_minutes)) if self._tz_minutes is not None else \
                (self.local_zone or timezone.utc)
            stamped = m.time_stamp.replace(tzinfo=zone)
            when = stamped.timestamp()
            offset = stamped.utcoffset()
            tz_minutes = int(offset.total_seconds() // 60) if offset is not None else None
        pulse = m.pulse_rate if isinstance(m.pulse_rate, float) and math.isfinite(m.pulse_rate) else None
        self._reading(events, "blood_pressure", when, f"{int(when)}",
                      {"systolic": systolic, "diastolic": diastolic, "mean_arterial": mean,
                       "pulse_rate": round(pulse) if pulse is not None else None}, tz_minutes)

    def _on_event(self, data: bytes, events: list[DriverEvent]) -> None:
        e = upband.decode_event(data)
        title = hashlib.sha256(e.title.encode()).hexdigest()[:12]
        self._reading(events, "cardiac_event", float(e.time), f"{e.time}/{title}",
                      {"title": e.title, "note": e.note or None, "heart_rate": e.heart_rate or None}, e.tz_minutes)

    def _reading(self, events: list[DriverEvent], kind: str, when: float, ident: str, fields: dict,
                 tz_minutes: int | None) -> None:
        assert self._info is not None
        key = f"{self._info.device}/{kind}/{ident}"
        if key in self._seen:
            self.counters["repeated_readings"] += 1
            return
        self._seen[key] = None
        if len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)
        self.counters[f"readings:{kind}"] += 1
        events.append(Reading(self._info.device, self._info.model, kind, when, key, fields, tz_minutes))
