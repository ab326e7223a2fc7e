"""Ring buffer and stream clock."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.core.clock import StreamClock
from gateway.core.ring import RingBuffer, RingOverflow


def test_ring_wraps_and_reads_back_exact_samples():
    ring = RingBuffer(100)
    ring.reset(1_000)
    data = np.arange(1_000, 1_370, dtype=np.int16)
    for i in range(0, 370, 37):  # writes that straddle the wrap point
        ring.write(1_000 + i, data[i:i + 37])
        ring.release(1_000 + i + 37)
    assert (ring.start, ring.end, len(ring)) == (1_270, 1_370, 100)
    assert np.array_equal(ring.read(1_270, 1_370), data[270:])
    assert np.array_equal(ring.latest(5), data[-5:])
    with pytest.raises(IndexError):
        ring.read(1_269, 1_300)  # overwritten


def test_ring_refuses_to_overwrite_undurable_samples():
    ring = RingBuffer(50)
    ring.write(0, np.ones(40, np.int16))
    with pytest.raises(RingOverflow):
        ring.write(40, np.ones(11, np.int16))
    assert ring.end == 40  # the refused write changed nothing
    ring.release(20)
    ring.write(40, np.ones(30, np.int16))
    assert (ring.start, ring.end) == (20, 70)


def test_ring_rejects_noncontiguous_writes_and_unsafe_resets():
    ring = RingBuffer(10)
    ring.write(0, np.ones(5, np.int16))
    with pytest.raises(ValueError):
        ring.write(6, np.ones(1, np.int16))
    with pytest.raises(RingOverflow):
        ring.reset(100)
    ring.release(5)
    ring.reset(100)
    assert (ring.start, ring.end) == (100, 100)


def test_ring_memory_is_fixed():
    ring = RingBuffer(1_000)
    buf = ring._data
    for i in range(0, 100_000, 250):
        ring.write(i, np.full(250, i % 30_000, np.int16))
        ring.release(i + 250)
    assert ring._data is buf and ring._data.nbytes == 2_000


def test_clock_ignores_arrival_jitter():
    fs, true_offset = 300.0, 1_700_000_000.0
    rng = np.random.default_rng(1)
    clock = StreamClock(fs)
    for k in range(1, 2_000):  # 25-sample blocks, 0-80 ms of delay, a few with almost none
        end = 25 * k
        delay = rng.uniform(0, 0.08) if k % 50 else rng.uniform(0, 0.0005)
        clock.observe(end, true_offset + end / fs + delay)
    assert abs(clock.time_of(0) - true_offset) < 0.0005
    assert clock.time_of(300) - clock.time_of(0) == pytest.approx(1.0, abs=1e-9)


def test_clock_follows_a_slow_device_crystal_and_steps_back_at_once():
    fs, t0 = 300.0, 1_000.0
    clock = StreamClock(fs, window_s=10.0)
    drift = 100e-6  # the device's 300 Hz is really 299.97 Hz
    for k in range(1, 12 * 600):  # ten minutes
        end = 25 * k
        clock.observe(end, t0 + end / (fs * (1 - drift)) + 0.002)
    truth = t0 + 25 * (12 * 600 - 1) / (fs * (1 - drift))
    # error = 2 ms transport latency - at most one window of drift (1 ms); without following it is -58 ms
    assert abs(clock.time_of(25 * (12 * 600 - 1)) - truth) < 0.003
    clock.observe(25 * 12 * 600, t0)  # an observation 10 minutes "early": the gateway clock stepped back
    assert clock.time_of(25 * 12 * 600) == pytest.approx(t0)
