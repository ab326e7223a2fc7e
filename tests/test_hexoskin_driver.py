"""The Hexoskin driver on frames from the shirt simulator: exact samples and positions per
channel, gaps by timestamp, and every stream rule of firmware_specs/hexoskin.md."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.core.blocks import DeviceInfo, Gap, SampleBlock
from gateway.drivers.hexoskin import HexoskinDriver
from gateway.protocols import hexoskin as proto
from simulators.devices.hexoskin import HexoskinModel
from simulators.physiology.ecg import EcgParams, EcgSynth
from simulators.physiology.respiration import BreathingParams, MotionSynth, RespirationSynth

START = 1795426200 * 256


def model(leads: int = 1, session: int = 0x5E55, seed: int = 3, activity: str = "walk") -> HexoskinModel:
    """A shirt with a known session."""
    ecg = EcgSynth(256, EcgParams(heart_rate=72, breathing_rate=14, noise_mv=0.01, seed=seed))
    return HexoskinModel(ecg, RespirationSynth(128, ecg.breathing_phase, BreathingParams(seed=seed)),
                         MotionSynth(64, activity, seed=seed), leads=leads, session_id=session, session_start=START)


def take(m: HexoskinModel, seconds: int) -> list:
    """The frames of the first `seconds` of signal (and the info that follows them)."""
    out = []
    for f in m.frames():
        out.append(f)
        if f.kind == "info" and f.t_end >= seconds:
            return out
    raise AssertionError


def by_channel(events) -> dict[str, tuple[list[int], np.ndarray]]:
    """Per channel: the block start positions and all samples in order."""
    out: dict[str, tuple[list[int], list[np.ndarray]]] = {}
    for e in events:
        if isinstance(e, SampleBlock):
            firsts, parts = out.setdefault(e.stream.channel, ([], []))
            firsts.append(e.first)
            parts.append(e.samples)
    return {k: (f, np.concatenate(p)) for k, (f, p) in out.items()}


@pytest.mark.parametrize("chunk", [None, 1, 97])
def test_every_channel_arrives_exact_with_exact_positions(chunk):
    m = model(leads=3)
    frames = take(m, 4)
    data = b"".join(f.data for f in frames)
    d = HexoskinDriver()
    events = []
    if chunk is None:
        events += d.feed(data, 0.0)
    else:
        for i in range(0, len(data), chunk):
            events += d.feed(data[i:i + chunk], 0.0)
    infos = [e for e in events if isinstance(e, DeviceInfo)]
    assert len(infos) == 1  # the once-a-second repeat is not a new session
    info = infos[0]
    assert (info.device, info.session, info.model) == ("HXSKIN12000001", "00005e55", "hexoskin")
    assert info.extra["session_start"] == START and info.channels["leadI"].sampling_frequency == 256
    assert info.channels["respThoracic"].dtype == "<u2" and info.channels["accelX"].sampling_frequency == 64
    got = by_channel(events)
    for channel in ("leadI", "leadII", "leadIII", "respThoracic", "respAbdominal"):
        sent = np.concatenate([f.samples for f in frames if f.channel == channel])
        assert np.array_equal(got[channel][1], sent), channel
        assert got[channel][0][0] == 0
    accel = np.concatenate([f.samples for f in frames if f.channel == "accel"])
    for i, axis in enumerate(("accelX", "accelY", "accelZ")):
        assert np.array_equal(got[axis][1], accel[:, i])
    assert len(got["leadI"][1]) == 4 * 256 and len(got["respThoracic"][1]) == 4 * 128 and len(got["accelY"][1]) == 256
    assert d.counters["samples"] == 4 * (3 * 256 + 2 * 128 + 3 * 64) and not d.counters.get("gaps")


def test_a_sample_position_is_its_hexotimestamp_offset():
    frames = take(model(), 2)
    d = HexoskinDriver()
    events = []
    for f in frames:  # one frame per feed: one block per frame
        events += d.feed(f.data, 0.0)
    blocks = [e for e in events if isinstance(e, SampleBlock)]
    sent = [f for f in frames if f.kind == "samples"]
    per_tick = {"leadI": 1, "respThoracic": 2, "respAbdominal": 2, "accelX": 4, "accelY": 4, "accelZ": 4}
    for b in blocks:
        f = next(f for f in sent if (f.channel == b.stream.channel or (f.channel == "accel"
                                                                          and b.stream.channel.startswith("accel")))
                 and f.ts == START + b.first * per_tick[b.stream.channel])
        assert len(f.samples) == len(b.samples)


def test_lost_blocks_are_gaps_of_exactly_the_missing_samples():
    frames = take(model(), 3)
    lost = [f for f in frames if f.channel == "leadI"][5:7]  # two ECG blocks of 32 samples
    lost += [f for f in frames if f.channel == "accel"][2:3]
    d = HexoskinDriver()
    events = d.feed(b"".join(f.data for f in frames if f not in lost), 0.0)
    gaps = [(g.stream.channel, g.start, g.missing) for g in events if isinstance(g, Gap)]
    assert ("leadI", 5 * 32, 64) in gaps
    assert {("accelX", 64, 32), ("accelY", 64, 32), ("accelZ", 64, 32)} <= set(gaps)
    assert len(gaps) == 4 and d.counters["lost_frames"] == 3 and d.counters["lost_samples"] == 64 + 3 * 32
    got = by_channel(events)
    assert len(got["leadI"][1]) == 3 * 256 - 64 and len(got["respThoracic"][1]) == 3 * 128


def _block(ts: int, lead: int = 1, seq: int = 50) -> bytes:
    return proto.encode_ecg(seq, ts, lead, np.arange(8, dtype=np.int16))


def test_stream_rules_drop_and_count():
    info = proto.encode_info(0, "HXSKIN1", (1, 0, 0), proto.CH_ECG_I | proto.CH_THORACIC, 9, START)
    d = HexoskinDriver()
    events = d.feed(info + _block(START) + _block(START + 8), 0.0)
    assert sum(len(e.samples) for e in events if isinstance(e, SampleBlock)) == 16
    assert d.feed(_block(START + 4), 0.0) == [] and d.counters["bad_frame:ts_regression"] == 1
    assert d.feed(_block(START - 8), 0.0) == [] and d.counters["bad_frame:misaligned_ts"] == 1
    assert d.feed(_block(START + 16, lead=2), 0.0) == [] and d.counters["bad_frame:unlisted_channel"] == 1
    odd = proto.encode_respiration(51, START + 3, 1, np.arange(4, dtype=np.uint16))  # 128 Hz: even ticks only
    assert d.feed(odd, 0.0) == [] and d.counters["bad_frame:misaligned_ts"] == 2
    assert d.counters["samples"] == 16


def test_blocks_before_the_device_info_are_held_then_placed():
    frames = take(model(), 2)
    info, rest = frames[0], frames[1:]
    d = HexoskinDriver()
    assert d.feed(b"".join(f.data for f in rest[:10]), 0.0) == []  # no session yet: held
    events = d.feed(info.data + b"".join(f.data for f in rest[10:]), 0.0)
    assert isinstance(events[0], DeviceInfo)
    got = by_channel(events)
    assert np.array_equal(got["leadI"][1], np.concatenate([f.samples for f in frames if f.channel == "leadI"]))


def test_a_new_session_restarts_positions():
    d = HexoskinDriver()
    first = d.feed(b"".join(f.data for f in take(model(session=1), 1)), 0.0)
    second = d.feed(b"".join(f.data for f in take(model(session=2, seed=4), 1)), 0.0)
    assert [e.session for e in first + second if isinstance(e, DeviceInfo)] == ["00000001", "00000002"]
    assert by_channel(second)["leadI"][0][0] == 0 and not d.counters.get("bad_frame:ts_regression")
