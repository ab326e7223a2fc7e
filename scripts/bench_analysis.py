#!/usr/bin/env python3
"""Accuracy and speed of gateway.analysis on real recordings, against NeuroKit2 and wfdb XQRS.

    pip install -e '.[bench]'
    python scripts/bench_analysis.py [--data ../shared/data] [--rates 360 300 256]
                                     [--detectors ours neurokit2 xqrs] [--records 101 ...]

Prints markdown tables (the README quotes them):
1. R peaks on the MIT-BIH records: sensitivity and positive predictivity, 150 ms tolerance,
   whole records, channel 0, at each rate (resampled with a polyphase filter); ventricular
   flutter episodes ([ to ]) are left out of the count as ANSI/AAMI EC57 does, and the count
   with them is printed too. Speed: samples per second of detection alone, one core.
2. Heart rate per 30 s window against the rate from the beat annotations.
3. Rhythm on the CinC 2017 KardiaMobile recordings: AF F1, noisy called unreadable, clean
   called unreadable.
4. The simulator's synthetic ECG: asked rate and rhythm against what the analysis finds.
5. The enhanced filter: QRS peak-to-peak kept on real recordings, R height and residual error
   on the simulator's ECG, against the 0.5-40 Hz band-pass it replaced.
6. (--cv) Cross-validated against fitted: the rhythm and readability thresholds chosen by grouped
   5-fold cross-validation (gateway/analysis/crossval.py) on the CinC recordings, MIT-BIH 30 s
   windows at 300 Hz and those windows with NSTDB noise; the per-recording heartRate within
   2 bpm of the annotated beats on the MIT-BIH windows.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
from scipy import io as sio
from scipy import signal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.analysis import corpus, crossval, enhanced, evaluation, qrs, quality, rhythm  # noqa: E402
from gateway.analysis.ecg import analyse_ecg  # noqa: E402
from simulators.physiology.ecg import EcgParams, EcgSynth  # noqa: E402
from simulators.physiology.replay import load_record, resample  # noqa: E402

MITDB_RECORDS = ("101 102 104 106 107 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 "
                 "215 217 220 223 230").split()


def load_mitdb(data: Path, record: str) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Channel 0 in mV, the beat annotations, and the ventricular flutter spans."""
    x, _ = load_record(data / "mitdb" / record)
    beats, spans = evaluation.reference_beats(str(data / "mitdb" / record))
    return x, beats, spans


def detect_ours(x: np.ndarray, fs: float) -> np.ndarray:
    return qrs.detect_r_peaks(x, fs)


def detect_neurokit2(x: np.ndarray, fs: float) -> np.ndarray:
    import neurokit2 as nk
    cleaned = nk.ecg_clean(x, sampling_rate=int(fs))
    _, info = nk.ecg_peaks(cleaned, sampling_rate=int(fs))
    return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)


def detect_xqrs(x: np.ndarray, fs: float) -> np.ndarray:
    from wfdb import processing
    return np.asarray(processing.xqrs_detect(sig=x, fs=fs, verbose=False), dtype=np.int64)


DETECTORS = {"ours": detect_ours, "neurokit2": detect_neurokit2, "xqrs": detect_xqrs}
MODULES = {"neurokit2": "neurokit2", "xqrs": "wfdb"}


def installed_detectors() -> list[str]:
    """Ours, and each comparison detector whose library is installed (the bench extra installs both)."""
    return [n for n in DETECTORS if n not in MODULES or importlib.util.find_spec(MODULES[n]) is not None]


def bench_peaks(data: Path, records: list[str], rates: list[int], names: list[str]) -> dict:
    """Table 1 and the per-window heart rates of table 2."""
    rows = []
    hr_windows = {}
    cache = {r: load_mitdb(data, r) for r in records}
    for fs in rates:
        for name in names:
            total = evaluation.RecordScore()
            seconds = n = 0
            for r in records:
                x, beats, spans = cache[r]
                x = resample(x, 360, fs)
                ref, spans_fs = evaluation.at_rate(beats, spans, 360, fs)
                t0 = time.perf_counter()
                found = DETECTORS[name](x, fs)
                seconds += time.perf_counter() - t0
                n += len(x)
                total += evaluation.score_record(ref, spans_fs, found, fs, len(x))
            score, with_vf = total.beats, total.with_flutter
            rows.append((fs, name, score, with_vf, n / seconds))
            hr_windows[(fs, name)] = (total.hr_within, total.hr_windows)
            print(f"  {name} at {fs} Hz: Se {100 * score.sensitivity:.2f} % +P "
                  f"{100 * score.positive_predictivity:.2f} %", file=sys.stderr)
    return {"rows": rows, "hr": hr_windows}


def bench_cinc(data: Path) -> evaluation.RhythmScore:
    """Table 3: rhythm on the CinC 2017 recordings."""
    d = data / "cinc2017"
    labels = dict(csv.reader(open(d / "REFERENCE.csv")))
    score = evaluation.RhythmScore()
    for name, label in sorted(labels.items()):
        x = sio.loadmat(d / f"{name}.mat")["val"][0].astype(float)  # ADC units, as the device sends
        score.add(label, analyse_ecg(x, 300, with_enhanced=False).rhythm)
    return score


def bench_synthetic() -> list[tuple]:
    """Table 4: the simulator's rhythms through the analysis, at both device rates."""
    rows = []
    cases = [("normal", 60), ("normal", 85), ("bradycardia", 45), ("tachycardia", 120), ("afib", 80), ("afib", 120)]
    for fs in (300, 256):
        for name, rate in cases:
            synth = EcgSynth(fs, EcgParams(rhythm=name, heart_rate=rate, noise_mv=0.02, wander_mv=0.2, hum_mv=0.05,
                                           seed=7))
            x = synth.next(int(60 * fs))
            a = analyse_ecg(np.rint(x * 2000), fs, 60, with_enhanced=False)
            rows.append((fs, name, rate, a.heart_rate, a.rhythm))
    return rows


def bench_enhanced(data: Path) -> dict:
    """Table 5: QRS peak-to-peak kept by the enhanced filter (median over beats, per recording)."""
    d = data / "cinc2017"
    labels = dict(csv.reader(open(d / "REFERENCE.csv")))
    old = np.vstack([signal.butter(2, 0.5, "highpass", fs=300, output="sos"),
                     signal.tf2sos(*signal.iirnotch(60, 30, fs=300)),
                     signal.butter(4, 40, "lowpass", fs=300, output="sos")])
    new_ratio, old_ratio = [], []
    seconds = n = 0
    w = int(0.06 * 300)
    for name, label in sorted(labels.items()):
        if label == "~":
            continue
        x = sio.loadmat(d / f"{name}.mat")["val"][0].astype(float)
        peaks = qrs.detect_r_peaks(x, 300)
        t0 = time.perf_counter()
        e = enhanced.enhance(x, 300, 60).astype(float)
        seconds += time.perf_counter() - t0
        n += len(x)
        o = signal.sosfiltfilt(old, x - np.median(x))
        raw, _ = quality.segments(x, peaks, w, w)
        for out, ratios in ((e, new_ratio), (o, old_ratio)):
            filt, _ = quality.segments(out, peaks, w, w)
            ratios.append(float(np.median(np.ptp(filt, axis=1) / np.ptp(raw, axis=1))))
    # The simulator's ECG under 0.5 mV of wander and 0.2 mV of hum, against the clean original.
    clean = EcgSynth(300, EcgParams(seed=3)).next(300 * 30)
    dirty = EcgSynth(300, EcgParams(seed=3, wander_mv=0.5, hum_mv=0.2)).next(300 * 30)
    peaks = qrs.detect_r_peaks(clean, 300)[1:-1]
    top, _ = quality.segments(clean, peaks, 12, 12)
    synthetic = {}
    for label, out in (("new", enhanced.enhance(np.rint(dirty * 2000), 300, 60) / 2000),
                       ("old", signal.sosfiltfilt(old, dirty - np.median(dirty)))):
        rows, _ = quality.segments(out, peaks, 12, 12)
        synthetic[label] = (float(np.median(rows.max(axis=1) / top.max(axis=1))),
                            float(np.sqrt(np.mean((out - clean) ** 2))))
    return {"new": np.percentile(new_ratio, [5, 50, 95]), "old": np.percentile(old_ratio, [5, 50, 95]),
            "speed": n / seconds, "synthetic": synthetic}


def bench_cv(data: Path) -> None:
    """Table 6: cross-validated and fitted figures of the rhythm and readability decisions."""
    t0 = time.perf_counter()
    cinc = corpus.cinc(data)
    windows = corpus.mitdb_windows(data, 300.0)
    clean = [w for w in windows if w.group != "118"][::12]  # 118's noise made the em record
    noisy = corpus.with_noise(clean, corpus.noise_records(data), (-6, 0, 6, 12))
    examples = cinc + windows + noisy
    results = [analyse_ecg(e.x * 1000.0, e.fs, with_enhanced=False) for e in examples]
    feats = [r.features if r.features is not None else rhythm.RhythmFeatures(None, 0, 0, 0, 0) for r in results]
    t = crossval.Table.of(examples, feats)
    print(f"  cv: {len(examples)} examples analysed in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    truth = crossval.noisy_truth(t)
    unr_cv, unr_folds, unr_all = crossval.cross_validate(t, crossval.unreadable_calls, crossval.UNREADABLE_GRID,
                                                         crossval.unreadable_objective, truth >= 0)
    af_use = ((t.sources == "cinc") & (t.labels != "~")) | (t.sources == "mitdb")
    af_cv, af_folds, af_all = crossval.cross_validate(t, crossval.af_calls, crossval.AF_GRID, crossval.af_objective,
                                                      af_use)
    hr = np.array([np.nan if f.heart_rate is None else f.heart_rate for f in feats])
    gates = (np.array([f.clean_intervals >= rhythm.MIN_CLEAN_INTERVALS and f.readable_intervals >= rhythm.MIN_INTERVALS
                       for f in feats]) & (hr >= rhythm.AF_RATE[0]) & (hr <= rhythm.AF_RATE[1]))
    af_cv_final = af_cv & ~unr_cv & gates
    fitted = np.array([r.rhythm for r in results])
    is_a = t.labels == "A"

    def pct(x: np.ndarray) -> str:
        return f"{100 * x.mean():.1f} %" if len(x) else "-"

    rows = []
    for name, mask in (("CinC 2017, whole recordings", t.sources == "cinc"), ("MIT-BIH 30 s windows", t.sources == "mitdb")):
        m = mask  # AF against everything else, noisy recordings included
        rows.append((f"AF F1, {name}", f"{crossval.f1(af_cv_final[m], is_a[m]):.3f}",
                     f"{crossval.f1(fitted[m] == 'afib', is_a[m]):.3f}"))
    for name, mask in (("CinC noisy (~) called unreadable", (t.sources == "cinc") & (t.labels == "~")),
                       ("CinC clean (N, A, O) called unreadable", (t.sources == "cinc") & (t.labels != "~")),
                       ("MIT-BIH windows called unreadable", t.sources == "mitdb")):
        rows.append((name, pct(unr_cv[mask]), pct(fitted[mask] == "unreadable")))
    for snr in (-6, 0, 6, 12):
        mask = (t.sources == "noise") & (t.snr == snr)
        rows.append((f"MIT-BIH + NSTDB noise (em, ma, bw) at {snr} dB called unreadable", pct(unr_cv[mask]),
                     pct(fitted[mask] == "unreadable")))
    ref = np.array([np.nan if e.reference_rate is None else e.reference_rate for e in examples])
    m = (t.sources == "mitdb") & ~np.isnan(ref)
    within = np.abs(np.nan_to_num(np.array([np.nan if r.heart_rate is None else r.heart_rate for r in results])[m],
                                  nan=1e9) - ref[m]) <= evaluation.HR_TOLERANCE_BPM
    rows.append(("heartRate within 2 bpm of the annotated beats, MIT-BIH 30 s windows at 300 Hz (no threshold fitted)",
                 pct(within), pct(within)))
    print("\n### Cross-validated (grouped 5-fold, by recording) and fitted (shipped thresholds, same data)\n")
    print("| measure | cross-validated | fitted |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nThresholds each fold chose: AF {af_folds}; unreadable {unr_folds}.")
    print(f"Chosen on everything: AF {af_all}, unreadable {unr_all}; shipped: {crossval.shipped()}.")


def main() -> None:
    """Run the benchmarks and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--rates", type=int, nargs="+", default=[360, 300, 256])
    ap.add_argument("--detectors", nargs="+", default=None, choices=list(DETECTORS),
                    help="default: ours and each comparison whose library is installed")
    ap.add_argument("--records", nargs="+", default=list(MITDB_RECORDS))
    ap.add_argument("--cv", action="store_true", help="only the cross-validated table (needs wfdb, not neurokit2)")
    args = ap.parse_args()
    if args.cv:
        bench_cv(args.data)
        return

    names = args.detectors or installed_detectors()
    for missing in sorted(set(DETECTORS) - set(names)):
        print(f"  {missing} left out: {MODULES[missing]} is not installed (pip install -e '.[bench]')", file=sys.stderr)
    peaks = bench_peaks(args.data, args.records, args.rates, names)
    print(f"### R peaks, MIT-BIH ({len(args.records)} records, channel 0, whole records, 150 ms)\n")
    print("| rate | detector | Se % | +P % | Se / +P % with VF episodes | samples/s |")
    print("|---|---|---|---|---|---|")
    for fs, name, s, v, speed in peaks["rows"]:
        print(f"| {fs} Hz | {name} | {100 * s.sensitivity:.2f} | {100 * s.positive_predictivity:.2f} | "
              f"{100 * v.sensitivity:.2f} / {100 * v.positive_predictivity:.2f} | {speed / 1e6:.2f} M |")
    print("\n### Heart rate per 30 s window within 2 bpm of the annotations\n")
    print("| rate | detector | windows within 2 bpm |")
    print("|---|---|---|")
    for (fs, name), (ok, total) in peaks["hr"].items():
        print(f"| {fs} Hz | {name} | {ok}/{total} = {100 * ok / total:.1f} % |")

    cinc = bench_cinc(args.data)
    print("\n### Rhythm, CinC 2017 KardiaMobile recordings\n")
    print(f"- AF F1: {cinc.af_f1:.3f} (TP {cinc.tp}, FP {cinc.fp}, FN {cinc.fn})")
    print(f"- noisy called unreadable: {cinc.noisy_unreadable}/{cinc.noisy} = "
          f"{100 * cinc.noisy_unreadable / cinc.noisy:.0f} %")
    print(f"- clean (N, A, O) called unreadable: {cinc.clean_unreadable}/{cinc.clean} = "
          f"{100 * cinc.clean_unreadable / cinc.clean:.1f} %")

    print("\n### The simulator's ECG (60 s, noise, wander, hum)\n")
    print("| rate | asked | found |")
    print("|---|---|---|")
    for fs, name, rate, hr, found in bench_synthetic():
        print(f"| {fs} Hz | {name} {rate} bpm | {found} {hr} bpm |")

    enh = bench_enhanced(args.data)
    print("\n### Enhanced ECG, QRS peak-to-peak kept (CinC clean recordings, 5th / 50th / 95th percentile)\n")
    print(f"- enhanced (notches, 60 Hz low-pass, spline through PR levels): "
          f"{' / '.join(f'{100 * v:.1f} %' for v in enh['new'])}; {enh['speed'] / 1e6:.2f} M samples/s")
    print(f"- the 0.5-40 Hz band-pass it replaced: {' / '.join(f'{100 * v:.1f} %' for v in enh['old'])}")
    for label, name in (("new", "enhanced"), ("old", "0.5-40 Hz band-pass")):
        kept, err = enh["synthetic"][label]
        print(f"- simulator's ECG + 0.5 mV wander + 0.2 mV hum, {name}: R height kept {100 * kept:.1f} %, "
              f"residual error {1000 * err:.0f} uV RMS")


if __name__ == "__main__":
    main()
