#!/usr/bin/env python3
"""Draw the README's before/after figure of the enhanced ECG (needs matplotlib: the bench extra).

    python scripts/plot_enhanced.py [--data ../shared/data] [--out docs/enhanced.png]

Top: a KardiaMobile recording from CinC 2017 (A00185, strong baseline wander), raw and
enhanced, with the R peaks the analysis found. Bottom: the simulator's ECG with 0.5 mV of
wander and 0.2 mV of 60 Hz hum, enhanced, over the clean ECG it was made from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import io as sio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.analysis.ecg import analyse_ecg  # noqa: E402
from simulators.physiology.ecg import EcgParams, EcgSynth  # noqa: E402


def main() -> None:
    """Render the figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "enhanced.png")
    args = ap.parse_args()

    fs = 300
    x = sio.loadmat(args.data / "cinc2017" / "A00185.mat")["val"][0].astype(float)
    a = analyse_ecg(x, fs, 60)
    span = slice(0, 8 * fs)
    t = np.arange(len(x))[span] / fs
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.6), dpi=90)
    top.plot(t, x[span] / 1000, lw=0.8, color="0.6", label="raw")
    top.plot(t, a.enhanced[span] / 1000, lw=0.9, color="C3", label="enhanced")
    p = a.peaks[a.peaks < span.stop]
    top.plot(p / fs, a.enhanced[p] / 1000, "v", ms=5, color="k", label="R peaks")
    top.set_title(f"CinC 2017 A00185 (KardiaMobile, 300 Hz): {a.determination}, {a.heart_rate} bpm", fontsize=10)
    top.set_ylabel("mV")
    top.legend(loc="upper right", fontsize=8, ncol=3)

    clean = EcgSynth(fs, EcgParams(seed=3)).next(fs * 8)
    dirty = EcgSynth(fs, EcgParams(seed=3, wander_mv=0.5, hum_mv=0.2)).next(fs * 8)
    out = analyse_ecg(np.rint(dirty * 2000), fs, 60).enhanced / 2000
    ts = np.arange(len(clean)) / fs
    bottom.plot(ts, dirty, lw=0.6, color="0.6", label="simulated, with wander and 60 Hz hum")
    bottom.plot(ts, clean, lw=2.2, color="C0", alpha=0.4, label="clean original")
    bottom.plot(ts, out, lw=0.9, color="C3", label="enhanced")
    bottom.set_xlabel("s")
    bottom.set_ylabel("mV")
    bottom.legend(loc="upper right", fontsize=8, ncol=3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
