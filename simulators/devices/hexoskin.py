"""A simulated Hexoskin-class shirt: ECG, two respiration bands and an accelerometer -> frames.

Transport-independent like the KardiaMobile model: it yields frames in signal-time order with
the time each ends at, and a front (serial_front) paces and writes them. Every block carries
the exact HexoTimestamp of its first sample: `session_start + position * ticks_per_sample`.
"""

from __future__ import annotations

import bisect
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from gateway.protocols import hexoskin as proto
from simulators.devices.kardiamobile import SimFrame
from simulators.physiology.ecg import EcgSynth
from simulators.physiology.replay import ReplaySource
from simulators.physiology.respiration import MotionSynth, RespirationSynth

ECG_BLOCK, RESP_BLOCK, ACCEL_BLOCK = 32, 16, 32  # samples per block: 8, 8 and 2 blocks a second
TICKS_PER_SAMPLE = {"respThoracic": 2, "respAbdominal": 2, "accel": 4}  # ECG leads: 1


@dataclass
class ShirtFrame(SimFrame):
    """A frame with the channel it carries and its first sample's HexoTimestamp."""

    channel: str = ""
    ts: int = 0


class HexoskinModel:
    """Frames of one session of a Hexoskin-class recorder."""

    def __init__(self, ecg: "EcgSynth | ReplaySource", respiration: RespirationSynth, motion: MotionSynth,
                 device_id: str = "HXSKIN12000001", firmware=(3, 1, 4), leads: int = 1,
                 session_id: int | None = None, session_start: int | None = None, battery_percent: int = 87) -> None:
        if ecg.fs != proto.ECG_RATE or respiration.fs != proto.RESPIRATION_RATE or motion.fs != proto.ACCELERATION_RATE:
            raise ValueError("the shirt samples ECG at 256 Hz, respiration at 128 Hz and acceleration at 64 Hz")
        if leads not in (1, 3):
            raise ValueError("leads must be 1 or 3")
        self.ecg, self.respiration, self.motion = ecg, respiration, motion
        self.device_id = device_id
        self.firmware = tuple(firmware)
        self.leads = leads
        self.channels = (proto.CH_ECG_I | (proto.CH_ECG_II | proto.CH_ECG_III if leads == 3 else 0)
                         | proto.CH_THORACIC | proto.CH_ABDOMINAL | proto.CH_ACCEL)
        self.session_id = session_id if session_id is not None else (secrets.randbits(32) or 1)
        self.session_start = session_start if session_start is not None else int(time.time() * proto.TICKS_PER_SECOND)
        self.battery_percent = battery_percent
        self.seq = 0
        self.saturated = 0

    def to_counts(self, mv: np.ndarray) -> np.ndarray:
        """mV -> 12-bit ECG counts (0.0064 mV each), clipped to the ADC's range."""
        lo, hi = proto.ECG_RANGE
        return np.clip(np.rint(mv / proto.ECG_MV_PER_COUNT), lo, hi).astype(np.int16)

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq = (self.seq + 1) % proto.framing.SEQ_MODULO
        return seq

    def _info(self, t: float) -> ShirtFrame:
        seq = self._next_seq()
        data = proto.encode_info(seq, self.device_id, self.firmware, self.channels, self.session_id,
                                 self.session_start, self.battery_percent)
        return ShirtFrame(data, "info", seq, 0, None, t, "info", self.session_start)

    def frames(self) -> Iterator[ShirtFrame]:
        """Device info first, then each second's blocks in time order, device info every second."""
        yield self._info(0.0)
        second = 0
        while True:
            mv = self.ecg.next(proto.ECG_RATE)
            if len(mv) < proto.ECG_RATE:  # a replayed record ended: the session ends on its last whole second
                return
            leads = [self.to_counts(mv)]
            if self.leads == 3:  # leads II and III: the same heart seen from other angles
                leads += [self.to_counts(1.4 * mv + 0.02), self.to_counts(0.6 * mv - 0.01)]
            resp = self.respiration.next(proto.RESPIRATION_RATE)
            accel = self.motion.next(proto.ACCELERATION_RATE)
            base = self.session_start + second * proto.TICKS_PER_SECOND
            # (signal time the block ends, channel, first sample's ts, samples, encoder)
            blocks: list[tuple[float, str, int, np.ndarray, object]] = []
            for k in range(0, proto.ECG_RATE, ECG_BLOCK):
                for lead, counts in enumerate(leads, start=1):
                    chunk = counts[k:k + ECG_BLOCK]
                    sat = bool(np.isin(chunk, proto.ECG_RANGE).any())
                    self.saturated += int(sat)
                    blocks.append((second + (k + ECG_BLOCK) / proto.ECG_RATE, ("leadI", "leadII", "leadIII")[lead - 1],
                                   base + k, chunk,
                                   lambda seq, ts, c, lead=lead, f=0x02 if sat else 0: proto.encode_ecg(seq, ts, lead, c, f)))
            for k in range(0, proto.RESPIRATION_RATE, RESP_BLOCK):
                for band, name in ((1, "respThoracic"), (2, "respAbdominal")):
                    blocks.append((second + (k + RESP_BLOCK) / proto.RESPIRATION_RATE, name, base + 2 * k,
                                   resp[k:k + RESP_BLOCK, band - 1],
                                   lambda seq, ts, c, band=band: proto.encode_respiration(seq, ts, band, c)))
            for k in range(0, proto.ACCELERATION_RATE, ACCEL_BLOCK):
                blocks.append((second + (k + ACCEL_BLOCK) / proto.ACCELERATION_RATE, "accel", base + 4 * k,
                               accel[k:k + ACCEL_BLOCK], proto.encode_acceleration))
            blocks.sort(key=lambda b: b[0])  # stable: at equal times ECG, then bands, then motion
            for t_end, channel, ts, chunk, encode in blocks:
                seq = self._next_seq()
                position = (ts - self.session_start) // TICKS_PER_SAMPLE.get(channel, 1)  # in its own samples
                yield ShirtFrame(encode(seq, ts, chunk), "samples", seq, position, chunk, t_end, channel, ts)
            second += 1
            yield self._info(float(second))


def standard_services(model: "HexoskinModel"):
    """The standard BLE services the shirt offers beside its frames: Heart Rate (with the chest as
    body sensor location), Device Information and Battery."""
    from gateway.protocols import gatt
    from simulators.devices.ble_front import CharacteristicSpec, ServiceSpec

    u = gatt.uuid16
    info = {0x2A29: "wearable-gateway simulator", 0x2A24: "Hexoskin-class shirt", 0x2A25: model.device_id,
            0x2A26: ".".join(map(str, model.firmware))}
    return (
        ServiceSpec(u(gatt.HEART_RATE_SERVICE), (CharacteristicSpec(u(gatt.HEART_RATE_MEASUREMENT), ("notify",)),
                                                 CharacteristicSpec(u(gatt.BODY_SENSOR_LOCATION), ("read",), b"\x01"))),
        ServiceSpec(u(gatt.DEVICE_INFORMATION), tuple(CharacteristicSpec(u(k), ("read",), v.encode())
                                                      for k, v in info.items())),
        ServiceSpec(u(gatt.BATTERY_SERVICE), (CharacteristicSpec(u(gatt.BATTERY_LEVEL), ("read",),
                                                                 bytes([model.battery_percent])),)),
    )


class ShirtHeartRate:
    """The Heart Rate Measurement the shirt notifies once a second: the rate of the last beats and the
    RR intervals (1/1024 s) of the beats in that second, from the ECG synthesiser's own beat times."""

    def __init__(self, ecg: EcgSynth, port) -> None:
        self.ecg = ecg
        self.port = port
        self._next = 0  # index in ecg.beat_times of the first beat not yet reported
        self.sent: list = []  # the measurements notified (for tests)

    def second(self, t: float) -> None:
        """Notify the measurement for the beats up to signal time t."""
        from gateway.protocols import gatt

        times = self.ecg.beat_times  # sorted; generated a little ahead of the signal
        end = bisect.bisect_right(times, t)
        if end < 2:
            return
        recent = np.diff(times[max(0, end - 6):end])
        fresh = np.diff(times[max(0, self._next - 1):end])
        self._next = end
        m = gatt.HeartRateMeasurement(int(round(60.0 / recent.mean())), sensor_contact=True,
                                      rr_intervals=[int(round(x * gatt.RR_UNITS_PER_SECOND)) for x in fresh])
        if self.port.notify(gatt.uuid16(gatt.HEART_RATE_MEASUREMENT), gatt.encode_heart_rate(m)):
            self.sent.append(m)
