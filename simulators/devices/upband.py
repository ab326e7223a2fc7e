"""A simulated UP-class band (firmware_specs/upband.md): a person's heart through a day, blood-pressure
measurements at set times and the cardiac events the wearer tags, served over BLE.

The day: asleep from 23:00 to 07:00 (local time), at rest otherwise, with a walk at 08:00-08:30
and a run at 18:00-18:45 by default. The heart rate approaches each activity's level with a
60 s time constant (faster going up than coming down is left out), with a little beat-to-beat
variability; RR intervals are the beats of each second. Blood pressure follows the time of day
(lower asleep, a morning rise) and the rate; each measurement's pulse is the heart rate then.
Times are the band's local clock: `start` is Unix seconds, `tz_minutes` the UTC offset.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from gateway.protocols import gatt, upband

LEVELS = {"sleep": 54.0, "rest": 66.0, "walk": 102.0, "run": 148.0}
DEFAULT_ACTIVITIES = ((8.0, 8.5, "walk"), (18.0, 18.75, "run"))
SLEEP = (23.0, 7.0)  # hours, local
TAU_S = 60.0


@dataclass(frozen=True)
class ScheduledEvent:
    """A cardiac event the wearer will tag at a local time of day (hours)."""

    hour: float
    title: str
    note: str = ""


@dataclass
class Second:
    """What the band measured in one second of its clock."""

    t: float  # Unix seconds at the end of the second
    heart: gatt.HeartRateMeasurement
    blood_pressure: gatt.BloodPressureMeasurement | None = None
    events: list[upband.CardiacEvent] = field(default_factory=list)


def parse_clock(text: str) -> float:
    """'HH:MM' -> hours."""
    hh, _, mm = text.partition(":")
    if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
        raise ValueError(f"{text!r} is not a time of day HH:MM")
    return int(hh) + int(mm) / 60


class UpBandModel:
    """One wearer's day, second by second."""

    def __init__(self, start: float, tz_minutes: int = 0, bp_at: tuple[float, ...] = (8.0, 20.0),
                 events: tuple[ScheduledEvent, ...] = (), activities=DEFAULT_ACTIVITIES, seed: int | None = None,
                 serial_number: str = "UP3-0000A1B2", battery_percent: int = 77) -> None:
        if not upband.TZ_RANGE[0] <= tz_minutes <= upband.TZ_RANGE[1]:
            raise ValueError("the UTC offset must be -720..840 minutes")
        self.start, self.tz_minutes = float(start), tz_minutes
        self.bp_at, self.events, self.activities = tuple(bp_at), tuple(events), tuple(activities)
        self.rng = np.random.default_rng(seed)
        self.serial_number, self.battery_percent = serial_number, battery_percent
        self.rate = None  # the current (smoothed) heart rate
        self._phase = 0.0  # fraction of the beat in progress
        self._tz = timezone(timedelta(minutes=tz_minutes))

    def local_hour(self, t: float) -> float:
        """The band's local time of day, in hours."""
        d = datetime.fromtimestamp(t, self._tz)
        return d.hour + d.minute / 60 + d.second / 3600

    def activity(self, t: float) -> str:
        """sleep, rest, walk or run at Unix time t."""
        h = self.local_hour(t)
        for a, b, kind in self.activities:
            if a <= h < b:
                return kind
        return "sleep" if h >= SLEEP[0] or h < SLEEP[1] else "rest"

    def _blood_pressure(self, t: float, rate: float) -> gatt.BloodPressureMeasurement:
        h = self.local_hour(t)
        morning = 6.0 if 6 <= h < 10 else 0.0  # the morning surge
        asleep = -10.0 if self.activity(t) == "sleep" else 0.0
        systolic = round(116 + morning + asleep + 0.3 * (rate - 66) + self.rng.normal(0, 3))
        diastolic = round(76 + morning / 2 + asleep / 2 + 0.1 * (rate - 66) + self.rng.normal(0, 2))
        stamp = datetime.fromtimestamp(int(t), self._tz).replace(tzinfo=None)
        return gatt.BloodPressureMeasurement(float(systolic), float(diastolic),
                                             round(diastolic + (systolic - diastolic) / 3, 1), time_stamp=stamp,
                                             pulse_rate=float(round(rate)), user_id=1, status=0)

    def seconds(self) -> Iterator[Second]:
        """Every second from the start: heart rate, and any measurement or event that falls in it."""
        k = 0
        while True:
            t0, t1 = self.start + k, self.start + k + 1
            target = LEVELS[self.activity(t1)]
            self.rate = target if self.rate is None else self.rate + (target - self.rate) * (1 - np.exp(-1 / TAU_S))
            rrs = []
            beat_s = 60.0 / self.rate
            self._phase += 1.0 / beat_s
            while self._phase >= 1.0:  # a beat ended in this second
                self._phase -= 1.0
                rrs.append(int(round(beat_s * (1 + self.rng.normal(0, 0.02)) * gatt.RR_UNITS_PER_SECOND)))
            heart = gatt.HeartRateMeasurement(int(round(self.rate)), sensor_contact=True, rr_intervals=rrs)
            second = Second(t1, heart)
            h0, h1 = self.local_hour(t0), self.local_hour(t1)

            def crossed(hour: float) -> bool:
                return h0 <= hour < h1 if h0 <= h1 else hour >= h0 or hour < h1  # midnight

            def at(hour: float) -> float:  # the Unix time the scheduled hour falls on, within this second
                return t0 + ((hour - h0) % 24) * 3600

            for hour in self.bp_at:
                if crossed(hour):
                    second.blood_pressure = self._blood_pressure(round(at(hour)), self.rate)
            second.events = [upband.CardiacEvent(round(at(e.hour)), self.tz_minutes, e.title, e.note,
                                                 int(round(self.rate)))
                             for e in self.events if crossed(e.hour)]
            yield second
            k += 1


@dataclass
class BandStats:
    """What a band run sent."""

    seconds: int = 0
    heart_rate_sent: int = 0
    heart_rate_unheard: int = 0  # measured while nobody listened: not kept, as the Heart Rate Service says
    blood_pressure_sent: int = 0
    events_sent: int = 0
    sent: dict[str, list] | None = None  # with record=True: every value that went out (the truth)

    def as_dict(self) -> dict:
        """The counts, for JSON output."""
        return {k: v for k, v in self.__dict__.items() if k != "sent"}


def run_band(model: UpBandModel, port, duration: float, speed: float, stop: threading.Event,
             on_second: Callable[[Second], None] | None = None, record: bool = False) -> BandStats:
    """Serve `duration` seconds of the band's day on a BLE port, paced at `speed` times real time.

    Heart rate goes out only while subscribed; measurements and events wait on the band until a
    central has confirmed their indication, then go out oldest first."""
    u = gatt.uuid16
    stats, pending_bp, pending_ev = BandStats(), [], []
    if record:
        # rr_intervals: the RR intervals (1/1024 s) of each heart rate sent, in the same order
        stats.sent = {"heart_rate": [], "rr_intervals": [], "blood_pressure": [], "cardiac_event": []}
    begin = time.monotonic()
    for second in model.seconds():
        if stats.seconds >= duration or stop.is_set():
            break
        delay = begin + (stats.seconds + 1) / speed - time.monotonic()
        if delay > 0 and stop.wait(delay):
            break
        stats.seconds += 1
        if port.notify(u(gatt.HEART_RATE_MEASUREMENT), gatt.encode_heart_rate(second.heart)):
            stats.heart_rate_sent += 1
            if stats.sent is not None:
                # with the subscription it went out on: one per connection
                stats.sent["heart_rate"].append([second.heart.heart_rate,
                                                 port.subscriptions(u(gatt.HEART_RATE_MEASUREMENT))])
                stats.sent["rr_intervals"].append(list(second.heart.rr_intervals))
        else:
            stats.heart_rate_unheard += 1
        if second.blood_pressure:
            pending_bp.append(second.blood_pressure)
        pending_ev += second.events
        while pending_bp and port.indicate(u(gatt.BLOOD_PRESSURE_MEASUREMENT),
                                           gatt.encode_blood_pressure(pending_bp[0])):
            m = pending_bp.pop(0)
            stats.blood_pressure_sent += 1
            if stats.sent is not None:
                stats.sent["blood_pressure"].append(
                    {"systolic": m.systolic, "diastolic": m.diastolic, "pulse_rate": m.pulse_rate,
                     "time": m.time_stamp.replace(tzinfo=model._tz).timestamp()})
        while pending_ev and port.indicate(upband.EVENT_UUID, upband.encode_event(pending_ev[0])):
            e = pending_ev.pop(0)
            stats.events_sent += 1
            if stats.sent is not None:
                stats.sent["cardiac_event"].append(asdict(e))
        if on_second:
            on_second(second)
    return stats


def band_services(model: UpBandModel):
    """The band's GATT services (firmware_specs/upband.md)."""
    from simulators.devices.ble_front import CharacteristicSpec, ServiceSpec

    u = gatt.uuid16
    info = {0x2A29: "wearable-gateway simulator", 0x2A24: "UP-class band", 0x2A25: model.serial_number,
            0x2A26: "4.2.0"}
    return (
        ServiceSpec(u(gatt.HEART_RATE_SERVICE), (CharacteristicSpec(u(gatt.HEART_RATE_MEASUREMENT), ("notify",)),
                                                 CharacteristicSpec(u(gatt.BODY_SENSOR_LOCATION), ("read",),
                                                                    bytes([upband.WRIST])))),
        ServiceSpec(u(gatt.BLOOD_PRESSURE_SERVICE),
                    (CharacteristicSpec(u(gatt.BLOOD_PRESSURE_MEASUREMENT), ("indicate",)),
                     CharacteristicSpec(u(gatt.BLOOD_PRESSURE_FEATURE), ("read",), (0x0004).to_bytes(2, "little")))),
        ServiceSpec(upband.EVENTS_SERVICE_UUID, (CharacteristicSpec(upband.EVENT_UUID, ("indicate",)),)),
        ServiceSpec(u(gatt.DEVICE_INFORMATION), tuple(CharacteristicSpec(u(k), ("read",), v.encode())
                                                      for k, v in info.items())),
        ServiceSpec(u(gatt.BATTERY_SERVICE), (CharacteristicSpec(u(gatt.BATTERY_LEVEL), ("read",),
                                                                 bytes([model.battery_percent])),)),
        ServiceSpec(u(gatt.CURRENT_TIME_SERVICE), (CharacteristicSpec(
            u(gatt.LOCAL_TIME_INFORMATION), ("read",), gatt.encode_local_time_information(model.tz_minutes)),)),
    )
