"""Stream clock: wall time of every sample from the device's own sample counter.

A sample cannot arrive before it was taken, so for every block
    arrival - end_counter / fs  >=  true offset,
with equality only for a block that met no delay. The clock's offset is the smallest such
value seen: arrival jitter only ever adds to the observations and so never moves the
timestamps. To follow a device crystal that runs slow against the gateway (or a gateway
clock stepped forward by NTP) the offset may rise to the minimum over a sliding window; it
falls at once when an observation proves it too late.
"""

from __future__ import annotations

from collections import deque


class StreamClock:
    """Maps device sample counters to gateway wall time (Unix seconds)."""

    def __init__(self, sampling_frequency: float, window_s: float = 60.0) -> None:
        self.fs = float(sampling_frequency)
        self.window_s = window_s
        self.offset: float | None = None  # wall time of counter 0
        self._window: deque[tuple[float, float]] = deque()  # (arrival, observed offset), offsets increasing
        self._window_since: float | None = None

    def observe(self, end_counter: int, arrival: float) -> None:
        """Block ending just before `end_counter` arrived at wall time `arrival`."""
        obs = arrival - end_counter / self.fs
        win = self._window
        while win and win[-1][1] >= obs:
            win.pop()
        win.append((arrival, obs))
        while win[0][0] < arrival - self.window_s:
            win.popleft()
        if self._window_since is None:
            self._window_since = arrival
        if self.offset is None or obs < self.offset:
            self.offset = obs
        elif arrival - self._window_since >= self.window_s and win[0][1] > self.offset:
            # A whole window has passed without a single block as early as the offset says.
            self.offset = win[0][1]

    def time_of(self, counter: int) -> float:
        """Wall time at which the sample with this counter was taken."""
        if self.offset is None:
            raise RuntimeError("the clock has not observed any block yet")
        return self.offset + counter / self.fs

    def restore(self, offset: float) -> None:
        """Start from a previously saved offset (after a gateway restart)."""
        self.offset = offset
