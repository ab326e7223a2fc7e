"""A fixed-capacity numpy ring buffer addressed by absolute sample counter."""

from __future__ import annotations

import numpy as np


class RingOverflow(RuntimeError):
    """A write would overwrite samples that are not yet durable."""


class RingBuffer:
    """Holds the most recent `capacity` samples of one contiguous run of a stream.

    Positions are the device's absolute sample counters. Samples at or after `protected`
    are not yet durable and may never be overwritten: a write that would do so raises
    RingOverflow instead of losing data. Memory is allocated once.
    """

    def __init__(self, capacity: int, dtype: np.dtype | type = np.int16) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._data = np.zeros(capacity, dtype=dtype)
        self.start = 0  # oldest retained counter
        self.end = 0  # one past the newest counter
        self.protected = 0  # counters >= this must not be overwritten

    def __len__(self) -> int:
        return self.end - self.start

    def reset(self, at: int) -> None:
        """Empty the buffer; the next write starts at counter `at` (after a gap or a new session)."""
        if self.protected < self.end:
            raise RingOverflow(f"reset would discard samples {self.protected}..{self.end} that are not durable")
        self.start = self.end = self.protected = at

    def write(self, first: int, samples: np.ndarray) -> None:
        """Append samples starting at counter `first`, which must equal `end`."""
        n = len(samples)
        if first != self.end:
            raise ValueError(f"write at {first} is not contiguous with end {self.end}; reset at a gap")
        new_end = self.end + n
        if new_end - self.protected > self.capacity:
            raise RingOverflow(
                f"{new_end - self.protected} undurable samples exceed the ring's capacity {self.capacity}")
        i = self.end % self.capacity
        head = min(n, self.capacity - i)
        self._data[i:i + head] = samples[:head]
        if head < n:
            self._data[:n - head] = samples[head:]
        self.end = new_end
        self.start = max(self.start, new_end - self.capacity)

    def read(self, a: int, b: int) -> np.ndarray:
        """A copy of the samples at counters a..b-1."""
        if not self.start <= a <= b <= self.end:
            raise IndexError(f"{a}..{b} is outside the retained {self.start}..{self.end}")
        n = b - a
        out = np.empty(n, dtype=self._data.dtype)
        i = a % self.capacity
        head = min(n, self.capacity - i)
        out[:head] = self._data[i:i + head]
        if head < n:
            out[head:] = self._data[:n - head]
        return out

    def release(self, upto: int) -> None:
        """Samples before `upto` are durable: the buffer may reuse their space."""
        if upto > self.end:
            raise ValueError(f"cannot release {upto} beyond end {self.end}")
        self.protected = max(self.protected, upto)

    def latest(self, n: int) -> np.ndarray:
        """A copy of the newest n samples (fewer if fewer are held)."""
        n = min(n, len(self))
        return self.read(self.end - n, self.end)
