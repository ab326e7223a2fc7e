"""KardiaMobile driver: serial bytes -> device info, lead-I sample blocks and gaps.

Framing lives in gateway.protocols.kardiamobile; this module adds the stream rules of the
spec's "What the receiver does": sessions by boot id, lost frames by seq, gaps by sample
counter, and holding frames that cannot be placed yet.
"""

from __future__ import annotations

import numpy as np

from gateway.core.blocks import ChannelInfo, DeviceInfo, DriverEvent, Gap, SampleBlock, StreamId
from gateway.drivers.base import Driver
from gateway.protocols import kardiamobile as proto

CHANNEL = "leadI"
HOLD_LIMIT_SAMPLES = 2 * proto.SAMPLING_FREQUENCY  # the spec's 2 s
_HALF = proto.COUNTER_MODULO // 2


def device_info(frame: proto.InfoFrame) -> DeviceInfo:
    """The core's view of a KardiaMobile device-info frame."""
    return DeviceInfo(
        device=frame.serial_number,
        session=f"{frame.boot_id:08x}",
        model="kardiamobile",
        firmware=frame.firmware,
        channels={CHANNEL: ChannelInfo(frame.sampling_frequency, units_per_mv=1e6 / frame.amplitude_resolution)},
        extra={"mains_frequency": frame.mains_frequency, "amplitude_resolution": frame.amplitude_resolution},
    )


class KardiaMobileDriver(Driver):
    """Decodes the KardiaMobile serial protocol into events for the core."""

    name = "kardiamobile"
    bytes_per_second = 834  # firmware_specs/kardiamobile.md: 12 sample frames of 66 bytes + one info frame
    ble_notify = (proto.BLE_FRAMES_UUID,)

    def __init__(self) -> None:
        super().__init__()
        self._decoder = proto.FrameDecoder()
        self._decoder.counters = self.counters  # one set of counters for framing and stream rules
        self._info: proto.InfoFrame | None = None
        self._stream: StreamId | None = None
        self._expected: int | None = None  # unwrapped counter of the next sample
        self._last_seq: int | None = None
        self._held: list[proto.SamplesFrame] = []
        # Coalescing: contiguous frames of one feed() leave as one block.
        self._run: list[np.ndarray] = []
        self._run_first = 0
        self._run_flags = 0

    def feed(self, data: bytes, arrival: float) -> list[DriverEvent]:
        """Decode bytes; return device info, blocks and gaps in stream order."""
        events: list[DriverEvent] = []
        for frame in self._decoder.feed(data):
            if isinstance(frame, proto.InfoFrame):
                self._on_info(frame, events, arrival)
            else:
                self._on_samples(frame, events, arrival)
        self._flush(events, arrival)
        return events

    def link_lost(self) -> list[DriverEvent]:
        """Drop a partial frame (its samples, which its header names, are a gap at once, so that the
        end of a session never loses them silently); keep the session so a resumed stream shows its gap."""
        events: list[DriverEvent] = []
        cut = self._decoder.partial()
        if cut is not None and cut[0] == proto.TYPE_SAMPLES and self._stream is not None and self._expected is not None \
                and not self._held:
            _, length, payload = cut
            n = (length - proto.SAMPLES_HEAD_LEN) // 2
            ahead = 0
            if len(payload) >= 4:  # its counter arrived: the gap runs to the frame's end
                ahead = (int.from_bytes(payload[:4], "little") - self._expected) % proto.COUNTER_MODULO
            if ahead < _HALF and 0 < ahead + n <= HOLD_LIMIT_SAMPLES:
                self._gap(ahead + n, events, 0.0)
                self._expected += ahead + n
                self.counters["truncated_frame_samples"] += n
        self._decoder.reset()
        return events

    # -- frames -------------------------------------------------------------------------

    def _on_info(self, frame: proto.InfoFrame, events: list[DriverEvent], arrival: float) -> None:
        held, self._held = self._held, []
        if self._info is None or frame.boot_id != self._info.boot_id:
            self._flush(events, arrival)
            self._info = frame
            info = device_info(frame)
            self._stream = info.stream(CHANNEL)
            self._expected = None
            self._last_seq = None  # seq restarts with the device
            events.append(info)
            for h in held:  # frames held since the restart belong to the new session
                self._count_seq(h.seq)
                self._place(h, events, arrival)
            if self._expected is None:  # the stream starts where the device says
                self._expected = frame.next_sample_counter
        else:
            for h in held:  # same session: a backwards counter was impossible
                self._count_seq(h.seq)
                self.counters["bad_frame:counter_regression"] += 1
            if self._expected is not None:
                ahead = (frame.next_sample_counter - self._expected) % proto.COUNTER_MODULO
                if 0 < ahead < _HALF:  # samples were lost before this info frame
                    self._gap(ahead, events, arrival)
                    self._expected += ahead
        self._count_seq(frame.seq)

    def _on_samples(self, frame: proto.SamplesFrame, events: list[DriverEvent], arrival: float) -> None:
        if self._info is None or self._held or self._backwards(frame.sample_counter):
            self._hold(frame)
            return
        self._count_seq(frame.seq)
        self._place(frame, events, arrival)

    def _backwards(self, counter: int) -> bool:
        return self._expected is not None and (counter - self._expected) % proto.COUNTER_MODULO >= _HALF

    def _hold(self, frame: proto.SamplesFrame) -> None:
        self._held.append(frame)
        while sum(len(h.samples) for h in self._held) > HOLD_LIMIT_SAMPLES:
            self._held.pop(0)
            self.counters["no_device_info"] += 1

    def _count_seq(self, seq: int) -> None:
        if self._last_seq is not None:
            missing = (seq - self._last_seq - 1) % proto.SEQ_MODULO
            if missing >= proto.SEQ_MODULO // 2:
                self.counters["seq_out_of_order"] += 1
            elif missing:
                self.counters["lost_frames"] += missing
        self._last_seq = seq

    def _place(self, frame: proto.SamplesFrame, events: list[DriverEvent], arrival: float) -> None:
        assert self._stream is not None
        if self._expected is None:
            first = frame.sample_counter
        else:
            diff = (frame.sample_counter - self._expected) % proto.COUNTER_MODULO
            if diff >= _HALF:  # only reachable for frames released from hold
                self.counters["bad_frame:counter_regression"] += 1
                return
            first = self._expected + diff
            if diff:
                self._gap(diff, events, arrival)
        if not self._run:
            self._run_first = first
        self._run.append(frame.samples)
        self._run_flags |= frame.flags
        n = len(frame.samples)
        self._expected = first + n
        self.counters["samples"] += n

    def _gap(self, missing: int, events: list[DriverEvent], arrival: float) -> None:
        assert self._stream is not None and self._expected is not None
        self._flush(events, arrival)
        events.append(Gap(self._stream, self._expected, missing))
        self.counters["gaps"] += 1
        self.counters["lost_samples"] += missing

    def _flush(self, events: list[DriverEvent], arrival: float) -> None:
        if not self._run:
            return
        assert self._stream is not None
        samples = self._run[0] if len(self._run) == 1 else np.concatenate(self._run)
        events.append(SampleBlock(self._stream, self._run_first, samples, arrival, self._run_flags))
        self._run = []
        self._run_flags = 0
