"""Fault injection for device simulators: garbage between frames, corrupt CRCs, dropped frames.

Faults touch sample frames only, and each is logged, so a test can compute exactly what the
gateway must count:
- garbage: 1-32 random bytes before a frame, never containing 0xA5 (so they cannot hold a
  sync marker and form a false frame);
- corrupt: one bit flipped in a sample byte (the header stays intact, the CRC fails);
- drop: the frame is not written at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.protocols.kardiamobile import HEADER_SIZE, SAMPLES_HEAD_LEN, SYNC0
from simulators.devices.kardiamobile import SimFrame


@dataclass
class FaultLog:
    """What was injected."""

    garbage_bytes: int = 0
    garbage_bursts: int = 0
    corrupted: list[SimFrame] = field(default_factory=list)
    dropped: list[SimFrame] = field(default_factory=list)

    @property
    def lost(self) -> list[SimFrame]:
        """Sample frames the receiver cannot decode, in stream order."""
        return sorted(self.corrupted + self.dropped, key=lambda f: f.counter)

    def summary(self) -> dict[str, int]:
        """Counts for printing."""
        return {"garbage_bursts": self.garbage_bursts, "garbage_bytes": self.garbage_bytes,
                "corrupted_frames": len(self.corrupted), "dropped_frames": len(self.dropped)}


class FaultInjector:
    """Applies each fault to a sample frame with its probability; deterministic for a seed."""

    def __init__(self, garbage: float = 0.0, corrupt: float = 0.0, drop: float = 0.0, seed: int | None = None) -> None:
        for name, p in (("garbage", garbage), ("corrupt", corrupt), ("drop", drop)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} probability must be between 0 and 1")
        self.p_garbage, self.p_corrupt, self.p_drop = garbage, corrupt, drop
        self.rng = np.random.default_rng(seed)
        self.log = FaultLog()

    @property
    def active(self) -> bool:
        """Whether any fault can happen."""
        return bool(self.p_garbage or self.p_corrupt or self.p_drop)

    def apply(self, frame: SimFrame) -> bytes:
        """The bytes to write for this frame (possibly none)."""
        if frame.kind != "samples" or not self.active:
            return frame.data
        prefix = b""
        if self.rng.random() < self.p_garbage:
            junk = self.rng.integers(0, 256, int(self.rng.integers(1, 33)), dtype=np.uint8)
            junk[junk == SYNC0] = 0x00
            prefix = junk.tobytes()
            self.log.garbage_bursts += 1
            self.log.garbage_bytes += len(prefix)
        if self.rng.random() < self.p_drop:
            self.log.dropped.append(frame)
            return prefix
        if self.rng.random() < self.p_corrupt:
            data = bytearray(frame.data)
            start = HEADER_SIZE + SAMPLES_HEAD_LEN  # first sample byte
            data[int(self.rng.integers(start, len(data) - 2))] ^= 1 << int(self.rng.integers(0, 8))
            self.log.corrupted.append(frame)
            return prefix + bytes(data)
        return prefix + frame.data
