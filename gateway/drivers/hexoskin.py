"""Hexoskin-class shirt recorder driver: serial bytes -> device info, per-channel blocks, gaps.

Framing lives in gateway.protocols.hexoskin; this module adds the receiver's per-session and
per-channel rules of firmware_specs/hexoskin.md. A sample's position in its stream is its
HexoTimestamp offset from the session start in sample periods, so positions (and therefore
every HexoTimestamp downstream: `session_start + position * ticks_per_sample`) are exact.
Acceleration triples become three streams (accelX, accelY, accelZ) with the same positions.
"""

from __future__ import annotations

import numpy as np

from gateway.core.blocks import ChannelInfo, DeviceInfo, DriverEvent, Gap, SampleBlock
from gateway.drivers.base import Driver
from gateway.protocols import hexoskin as proto

LEADS = {1: "leadI", 2: "leadII", 3: "leadIII"}
BANDS = {1: "respThoracic", 2: "respAbdominal"}
AXES = ("accelX", "accelY", "accelZ")
# channel -> (bit in the device info's channel mask, rate, frame type)
CHANNELS: dict[str, tuple[int, int, int]] = {
    "leadI": (proto.CH_ECG_I, proto.ECG_RATE, proto.TYPE_ECG),
    "leadII": (proto.CH_ECG_II, proto.ECG_RATE, proto.TYPE_ECG),
    "leadIII": (proto.CH_ECG_III, proto.ECG_RATE, proto.TYPE_ECG),
    "respThoracic": (proto.CH_THORACIC, proto.RESPIRATION_RATE, proto.TYPE_RESPIRATION),
    "respAbdominal": (proto.CH_ABDOMINAL, proto.RESPIRATION_RATE, proto.TYPE_RESPIRATION),
    **{axis: (proto.CH_ACCEL, proto.ACCELERATION_RATE, proto.TYPE_ACCELERATION) for axis in AXES},
}
HOLD_LIMIT_BLOCKS = 64  # about 2 s of every channel before a device info arrives


def device_info(frame: proto.InfoFrame) -> DeviceInfo:
    """The core's view of a Hexoskin device-info frame."""
    channels = {}
    for name, (bit, rate, ftype) in CHANNELS.items():
        if frame.channels & bit:
            per_mv = 1 / proto.ECG_MV_PER_COUNT if ftype == proto.TYPE_ECG else None
            dtype = "<u2" if ftype == proto.TYPE_RESPIRATION else "<i2"  # bands are unsigned counts
            channels[name] = ChannelInfo(rate, units_per_mv=per_mv, dtype=dtype)
    return DeviceInfo(device=frame.device_id, session=f"{frame.session_id:08x}", model="hexoskin",
                      firmware=frame.firmware, channels=channels,
                      extra={"session_start": frame.session_start, "battery_percent": frame.battery_percent,
                             "ticks_per_second": proto.TICKS_PER_SECOND})


class HexoskinDriver(Driver):
    """Decodes the Hexoskin serial protocol into events for the core."""

    name = "hexoskin"
    bytes_per_second = 2030  # firmware_specs/hexoskin.md, one ECG lead (3,406 with three)
    ble_notify = (proto.BLE_FRAMES_UUID,)

    def __init__(self) -> None:
        super().__init__()
        self._decoder = proto.FrameDecoder()
        self._decoder.counters = self.counters  # one set of counters for framing and stream rules
        self._info: proto.InfoFrame | None = None
        self._device: DeviceInfo | None = None
        self._expected: dict[str, int] = {}  # channel -> position of its next sample
        self._held: list[proto.Frame] = []
        self._last_seq: int | None = None
        # Coalescing: contiguous blocks of one channel in one feed() leave as one SampleBlock.
        self._runs: dict[str, tuple[int, list[np.ndarray]]] = {}  # channel -> (first position, parts)

    def feed(self, data: bytes, arrival: float) -> list[DriverEvent]:
        """Decode bytes; return device info, blocks and gaps, each channel in order."""
        events: list[DriverEvent] = []
        for frame in self._decoder.feed(data):
            self._count_seq(frame.seq)
            if isinstance(frame, proto.InfoFrame):
                self._on_info(frame, events, arrival)
            elif self._info is None:
                self._hold(frame)
            else:
                self._on_block(frame, events, arrival)
        self._flush(events, arrival)
        return events

    def link_lost(self) -> list[DriverEvent]:
        """Drop a partial frame; keep the session so a resumed stream shows its gaps."""
        self._decoder.reset()
        return []

    # -- frames -------------------------------------------------------------------------

    def _count_seq(self, seq: int) -> None:
        if self._last_seq is not None:
            missing = (seq - self._last_seq - 1) % proto.framing.SEQ_MODULO
            if missing >= proto.framing.SEQ_MODULO // 2:
                self.counters["seq_out_of_order"] += 1
            elif missing:
                self.counters["lost_frames"] += missing
        self._last_seq = seq

    def _hold(self, frame: proto.Frame) -> None:
        self._held.append(frame)
        if len(self._held) > HOLD_LIMIT_BLOCKS:
            self._held.pop(0)
            self.counters["no_device_info"] += 1

    def _on_info(self, frame: proto.InfoFrame, events: list[DriverEvent], arrival: float) -> None:
        if self._info is not None and frame.session_id == self._info.session_id:
            return  # the once-a-second repeat
        self._flush(events, arrival)
        self._info = frame
        self._device = device_info(frame)
        self._expected = {}
        events.append(self._device)
        held, self._held = self._held, []
        for h in held:  # blocks that came before the info belong to the new session
            self._on_block(h, events, arrival)

    def _on_block(self, frame: proto.Frame, events: list[DriverEvent], arrival: float) -> None:
        assert self._info is not None and self._device is not None
        if isinstance(frame, proto.EcgBlock):
            ftype, channels, columns = proto.TYPE_ECG, [LEADS[frame.lead]], [frame.samples]
        elif isinstance(frame, proto.RespirationBlock):
            ftype, channels, columns = proto.TYPE_RESPIRATION, [BANDS[frame.band]], [frame.samples]
        else:
            ftype, channels = proto.TYPE_ACCELERATION, list(AXES)
            columns = [np.ascontiguousarray(frame.samples[:, i]) for i in range(3)]
        if channels[0] not in self._device.channels:
            self.counters["bad_frame:unlisted_channel"] += 1
            return
        offset = frame.ts - self._info.session_start
        tps = proto.TICKS_PER_SAMPLE[ftype]
        if offset < 0 or offset % tps:
            self.counters["bad_frame:misaligned_ts"] += 1
            return
        first = offset // tps
        expected = self._expected.get(channels[0])
        if expected is not None and first < expected:
            self.counters["bad_frame:ts_regression"] += 1
            return
        n = len(columns[0])
        for channel, column in zip(channels, columns):
            if expected is not None and first > expected:
                self._gap(channel, expected, first - expected, events, arrival)
            self._append(channel, first, column)
            self._expected[channel] = first + n
        self.counters["samples"] += n * len(channels)

    def _append(self, channel: str, first: int, samples: np.ndarray) -> None:
        # Runs are contiguous: a gap flushes its channel first.
        self._runs.setdefault(channel, (first, []))[1].append(samples)

    def _gap(self, channel: str, start: int, missing: int, events: list[DriverEvent], arrival: float) -> None:
        assert self._device is not None
        self._flush_channel(channel, events, arrival)
        events.append(Gap(self._device.stream(channel), start, missing))
        self.counters["gaps"] += 1
        self.counters["lost_samples"] += missing

    def _flush_channel(self, channel: str, events: list[DriverEvent], arrival: float) -> None:
        run = self._runs.pop(channel, None)
        if run is None:
            return
        assert self._device is not None
        first, parts = run
        samples = parts[0] if len(parts) == 1 else np.concatenate(parts)
        events.append(SampleBlock(self._device.stream(channel), first, samples, arrival))

    def _flush(self, events: list[DriverEvent], arrival: float) -> None:
        for channel in list(self._runs):
            self._flush_channel(channel, events, arrival)
