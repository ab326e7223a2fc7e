"""Device simulators: synthetic ECG, the device model, replay of real records."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import serial

from gateway.core.blocks import SampleBlock
from gateway.drivers.kardiamobile import KardiaMobileDriver
from gateway.protocols import kardiamobile as proto
from simulators.devices.kardiamobile import KardiaMobileModel
from simulators.devices.serial_front import PtyPort, run_frames
from simulators.physiology.ecg import EcgParams, EcgSynth, check_rate, normalise_rhythm
from simulators.physiology.replay import ReplayError, ReplaySource, load_record, resample


def beats(rhythm: str, seconds: float = 120, **kw) -> tuple[np.ndarray, np.ndarray]:
    synth = EcgSynth(300, EcgParams(rhythm=rhythm, seed=3, **kw))
    signal = synth.next(int(seconds * 300))
    r = np.array(synth.beat_times)
    return signal, r[(r > 0.5) & (r < seconds - 0.5)]


@pytest.mark.parametrize("rhythm, rate", [("normal", 70), ("bradycardia", 45), ("tachycardia", 125),
                                          ("afib", 95), ("normal", 58)])
def test_each_rhythm_beats_at_the_asked_rate(rhythm, rate):
    signal, r = beats(rhythm, heart_rate=rate)
    assert 60 / np.diff(r).mean() == pytest.approx(rate, abs=1.0)
    # The R wave is where the beat times say: the largest value near each beat time.
    idx = np.rint(r * 300).astype(int)
    windows = np.stack([signal[i - 15:i + 15] for i in idx])
    assert np.all(np.abs(windows.argmax(axis=1) - 15) <= 2)
    assert 0.9 < np.median(windows.max(axis=1)) < 1.4


def test_sinus_is_regular_with_p_waves_and_af_is_irregular_without():
    normal, rn = beats("normal")
    afib, ra = beats("afib")
    cv = lambda r: np.diff(r).std() / np.diff(r).mean()  # noqa: E731
    assert cv(rn) < 0.06 and cv(ra) > 0.15
    # Mean amplitude 120-220 ms before each R: a P wave in sinus rhythm, none in AF.
    p_wave = lambda sig, r: np.mean([sig[int((t - 0.22) * 300):int((t - 0.12) * 300)].max() for t in r])  # noqa: E731
    assert p_wave(normal, rn) > 0.09
    assert p_wave(afib, ra) < 0.09


def test_mains_hum_wander_and_noise_are_where_asked():
    clean, _ = beats("normal", seconds=60)
    hum, _ = beats("normal", seconds=60, hum_mv=0.1, mains_frequency=50)
    spectrum = np.abs(np.fft.rfft(hum - clean)) / (len(hum) / 2)
    freqs = np.fft.rfftfreq(len(hum), 1 / 300)
    assert freqs[spectrum.argmax()] == pytest.approx(50.0, abs=0.05)
    assert spectrum.max() == pytest.approx(0.1, rel=0.05)
    noisy, _ = beats("normal", seconds=60, noise_mv=0.05)
    assert np.std(noisy - clean) == pytest.approx(0.05, rel=0.05)


def test_rhythm_names_and_rates_are_checked():
    assert normalise_rhythm("af") == "afib" and normalise_rhythm("brady") == "bradycardia"
    with pytest.raises(ValueError, match="unknown rhythm"):
        normalise_rhythm("vfib")
    with pytest.raises(ValueError, match="bradycardia means 30-50 bpm"):
        check_rate("bradycardia", 80)


def test_rendering_does_not_depend_on_chunk_size():
    a = EcgSynth(300, EcgParams(rhythm="afib", seed=9, noise_mv=0.0))
    b = EcgSynth(300, EcgParams(rhythm="afib", seed=9, noise_mv=0.0))
    whole = a.next(6000)
    parts = np.concatenate([b.next(n) for n in (1, 299, 1000, 7, 4693)])
    assert np.allclose(whole, parts)


def test_device_model_frames_info_cadence_and_adc_scaling():
    model = KardiaMobileModel(ReplaySource(np.full(900, 1.0), 300, 300), amplitude_resolution=500, boot_id=42)
    frames = list(model.frames())
    assert frames[0].kind == "info" and frames[0].counter == 0
    kinds = "".join("i" if f.kind == "info" else "s" for f in frames)
    assert kinds == "i" + ("s" * 12 + "i") * 3  # info first, then after every 300 samples
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert all(np.all(f.samples == 2000) for f in frames if f.kind == "samples")  # 1 mV = 2000 units of 500 nV
    sat = KardiaMobileModel(ReplaySource(np.array([20.0] * 25), 300, 300), boot_id=1)
    frame = [f for f in sat.frames() if f.kind == "samples"][0]
    assert frame.samples.max() == 32767 and proto.FrameDecoder().feed(frame.data)[0].flags == proto.FLAG_SATURATED


def test_replay_of_a_real_mitbih_record_arrives_exact_through_a_pty(shared_data):
    signal, fs = load_record(shared_data / "mitdb" / "101")
    assert fs == 360 and len(signal) == 650_000
    source = ReplaySource(signal[:360 * 20], fs, 300)
    expected = KardiaMobileModel(source).to_adc(resample(signal[:360 * 20], 360, 300))
    model = KardiaMobileModel(ReplaySource(signal[:360 * 20], fs, 300), boot_id=7)
    port = PtyPort()
    reader = serial.Serial(port.path, timeout=0.2)
    stats = []
    writer = threading.Thread(target=lambda: stats.append(run_frames(model.frames(), port, speed=None)))
    writer.start()
    driver, got = KardiaMobileDriver(), []
    while writer.is_alive() or reader.in_waiting:
        for ev in driver.feed(reader.read(65536), 0.0):
            if isinstance(ev, SampleBlock):
                got.append(ev.samples)
    writer.join()
    reader.close()
    port.close()
    assert stats[0].samples == 6000 == len(expected)
    assert np.array_equal(np.concatenate(got), expected)


def test_replay_of_cinc2017_mat_records_and_csv(shared_data, tmp_path):
    signal, fs = load_record(shared_data / "cinc2017" / "A00001.mat")
    assert fs == 300 and len(signal) == 9000 and signal[0] == pytest.approx(-0.127)
    two = tmp_path / "two.csv"
    two.write_text("time_s,ecg_mv\n" + "\n".join(f"{i / 250:.4f},{np.sin(i / 10):.5f}" for i in range(500)))
    values, rate = load_record(two)
    assert rate == pytest.approx(250.0) and len(values) == 500
    one = tmp_path / "one.csv"
    one.write_text("\n".join(str(v) for v in range(100)))
    with pytest.raises(ReplayError, match="needs the rate"):
        load_record(one)
    values, rate = load_record(one, rate=500, units="adc", gain=200)
    assert rate == 500 and values[10] == pytest.approx(0.05)
    with pytest.raises(ReplayError, match="not a readable WFDB record"):
        load_record(tmp_path / "missing")
