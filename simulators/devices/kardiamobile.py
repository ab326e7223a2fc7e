"""A simulated KardiaMobile: a signal source in mV -> frames of the serial protocol.

The model knows nothing of ports: it yields frames in order with the signal time they end at,
and a front (serial_front) decides when and where to write them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gateway.protocols import kardiamobile as proto


class SignalSource(Protocol):
    """Anything with `next(n)` returning up to n samples in mV at the device rate."""

    def next(self, n: int) -> np.ndarray: ...


@dataclass
class SimFrame:
    """One frame as sent, with what it carries (for pacing, faults and verification)."""

    data: bytes
    kind: str  # "info" or "samples"
    seq: int
    counter: int  # first sample counter (samples) or next sample counter (info)
    samples: np.ndarray | None
    t_end: float  # signal time (s) just after the frame's last sample


class KardiaMobileModel:
    """Frames of one power-up of a KardiaMobile-class recorder."""

    def __init__(self, source: SignalSource, serial_number: str = "KM1-SIM00001", firmware=(1, 2, 0),
                 mains_frequency: int = 60, amplitude_resolution: int = 500, boot_id: int | None = None,
                 samples_per_frame: int = proto.DEFAULT_SAMPLES_PER_FRAME, first_counter: int = 0) -> None:
        if not 1 <= samples_per_frame <= proto.MAX_SAMPLES:
            raise ValueError(f"samples per frame must be 1..{proto.MAX_SAMPLES}")
        if mains_frequency not in proto.MAINS_FREQUENCIES:
            raise ValueError("mains frequency must be 50 or 60 Hz")
        if not 1 <= amplitude_resolution <= 65535:
            raise ValueError("amplitude resolution must be 1..65535 nV per unit")
        self.source = source
        self.serial_number = serial_number
        self.firmware = tuple(firmware)
        self.mains_frequency = mains_frequency
        self.amplitude_resolution = amplitude_resolution
        self.boot_id = boot_id if boot_id is not None else (secrets.randbits(32) or 1)
        self.samples_per_frame = samples_per_frame
        self.fs = proto.SAMPLING_FREQUENCY
        self.first_counter = first_counter
        self.counter = first_counter
        self.seq = 0
        self.saturated = 0

    def to_adc(self, mv: np.ndarray) -> np.ndarray:
        """mV -> int16 ADC units, rounded and clipped to the ADC's range (frames flag full scale)."""
        return np.clip(np.rint(mv * (1e6 / self.amplitude_resolution)), -32768, 32767).astype(np.int16)

    def _info(self, t: float) -> SimFrame:
        data = proto.encode_info(self.seq, self.serial_number, self.firmware, self.mains_frequency,
                                 self.amplitude_resolution, self.boot_id, self.counter)
        frame = SimFrame(data, "info", self.seq, self.counter, None, t)
        self.seq = (self.seq + 1) % proto.SEQ_MODULO
        return frame

    def frames(self) -> Iterator[SimFrame]:
        """Device info first (as after power-up), then sample frames, info again every 300 samples."""
        n_frame = self.samples_per_frame
        yield self._info(0.0)
        since_info = 0
        while True:
            # Render a second at a time: vectorised synthesis, then cut into frames.
            mv = self.source.next(self.fs)
            if len(mv) == 0:
                return
            adc = self.to_adc(mv)
            for i in range(0, len(adc), n_frame):
                chunk = adc[i:i + n_frame]
                sat = bool(np.isin(chunk, (-32768, 32767)).any())
                self.saturated += int(sat)
                flags = proto.FLAG_SATURATED if sat else 0
                data = proto.encode_samples(self.seq, self.counter, chunk, flags)
                t_end = (self.counter + len(chunk) - self.first_counter) / self.fs
                yield SimFrame(data, "samples", self.seq, self.counter, chunk, t_end)
                self.seq = (self.seq + 1) % proto.SEQ_MODULO
                self.counter += len(chunk)
                since_info += len(chunk)
                if since_info >= proto.INFO_EVERY_SAMPLES:
                    since_info = 0
                    yield self._info(t_end)
