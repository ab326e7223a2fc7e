#!/usr/bin/env python3
"""Throughput of the gateway's data path on one core: driver -> core -> packager -> spool.

The input is an hour (by default) of simulated KardiaMobile frames (or, with --device
hexoskin, a Hexoskin-class shirt's: ECG, two respiration bands, three acceleration axes),
encoded before timing starts. It is fed to the real driver and the real pipeline, writing a real SQLite spool on
disk, in chunks of one second of frames (so the spool commits once per second of signal, as
it does in real time) or in bulk chunks. The process is pinned to one CPU, spool thread
included. Prints a table (or --json) of samples per second and times real time for one
device (300 samples/s for the KardiaMobile, 704 for the shirt).

    python scripts/bench_pipeline.py [--device kardia|hexoskin] [--minutes 60] [--dir /var/tmp] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.core.blocks import SampleBlock  # noqa: E402
from gateway.drivers.hexoskin import HexoskinDriver  # noqa: E402
from gateway.drivers.kardiamobile import KardiaMobileDriver  # noqa: E402
from gateway.packagers.hexoskin import HexoskinDataPackager  # noqa: E402
from gateway.packagers.kardia import KardiaRecordingPackager  # noqa: E402
from gateway.packagers.worker import PackagingWorker  # noqa: E402
from gateway.pipeline import DevicePipeline  # noqa: E402
from gateway.spool import AsyncSpool  # noqa: E402
from simulators.devices.hexoskin import HexoskinModel  # noqa: E402
from simulators.devices.kardiamobile import KardiaMobileModel  # noqa: E402
from simulators.physiology.ecg import EcgParams, EcgSynth  # noqa: E402
from simulators.physiology.respiration import MotionSynth, RespirationSynth  # noqa: E402

# device -> (samples per second of signal, driver, packagers)
DEVICES = {
    "kardia": (300, KardiaMobileDriver, lambda: [KardiaRecordingPackager("kardia", "patient", 30.0)]),
    "hexoskin": (256 + 2 * 128 + 3 * 64, HexoskinDriver, lambda: [HexoskinDataPackager("hexoskin", 30.0)]),
}


def model_for(device: str):
    """The simulator model whose frames are benchmarked."""
    if device == "kardia":
        return KardiaMobileModel(EcgSynth(300, EcgParams(noise_mv=0.02, seed=1)), boot_id=1)
    ecg = EcgSynth(256, EcgParams(noise_mv=0.02, seed=1))
    return HexoskinModel(ecg, RespirationSynth(128, ecg.breathing_phase), MotionSynth(64, "walk", seed=1),
                         session_id=1, session_start=1_700_000_000 * 256)


def encode(minutes: float, device: str) -> tuple[bytes, int]:
    """Frames for `minutes` of signal, and how many samples they hold (every channel)."""
    model = model_for(device)
    out, samples = bytearray(), 0
    for frame in model.frames():
        if frame.kind == "samples":
            if frame.t_end > minutes * 60:
                break
            samples += frame.samples.size
        out += frame.data
    return bytes(out), samples


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def bench_driver(data: bytes, size: int, device: str) -> float:
    """Seconds to decode everything with the driver alone."""
    parts = chunks(data, size)
    driver = DEVICES[device][1]()
    t = time.perf_counter()
    for part in parts:
        driver.feed(part, 0.0)
    return time.perf_counter() - t


async def bench_pipeline(data: bytes, size: int, sync: str, directory: Path, device: str) -> dict:
    """Seconds for driver + pipeline + spool, and what the spool did."""
    parts = chunks(data, size)
    path = directory / f"bench-{sync}-{size}.db"
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    spool = AsyncSpool(path, sync)
    _, driver_cls, packagers = DEVICES[device]
    # Packaging inline: the whole path on the one pinned CPU, as it ran before the worker existed.
    pipeline = DevicePipeline("bench", packagers(), PackagingWorker("inline"), spool=spool)
    driver = driver_cls()
    arrival = 1_700_000_000.0
    t = time.perf_counter()
    for part in parts:
        events = driver.feed(part, arrival)
        arrival = next((e.arrival for e in events if isinstance(e, SampleBlock)), arrival)
        await pipeline.handle(events)
    await pipeline.finish()
    elapsed = time.perf_counter() - t
    stats = await spool.call(spool.spool.stats)
    await spool.close()
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    return {"seconds": elapsed, "packages": pipeline.counters["packages"], "commits": pipeline.counters["commits"],
            "spool_bytes": stats["file_bytes"], "samples": driver.counters["samples"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=sorted(DEVICES), default="kardia")
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of signal to push through (default 60)")
    parser.add_argument("--dir", default=None, help="directory for the spool files (default: the system temp dir)")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the first allowed)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})  # before any thread starts: the spool thread inherits it
    directory = Path(args.dir or tempfile.gettempdir())
    directory.mkdir(parents=True, exist_ok=True)

    # The analysis (and scipy) is imported where windows are first analysed: here, before the clock
    # starts, as the daemon's worker does once; otherwise the first timed row would carry the import.
    import gateway.analysis.breathing  # noqa: F401
    import gateway.analysis.ecg  # noqa: F401
    import gateway.analysis.heart_rate  # noqa: F401

    rate = DEVICES[args.device][0]
    data, samples = encode(args.minutes, args.device)
    second = len(data) * rate // samples  # bytes of frames per second of signal
    rows = []
    dt = bench_driver(data, second, args.device)
    rows.append({"stage": "driver only (decode, gaps)", "chunk": "1 s of frames", "sync": "-", "seconds": dt})
    for size, label in ((second, "1 s of frames"), (65536, "64 KiB")):
        for sync in ("full", "normal"):
            r = asyncio.run(bench_pipeline(data, size, sync, directory, args.device))
            assert r["samples"] == samples, "the benchmark lost samples"
            rows.append({"stage": "driver + core + packager + spool", "chunk": label, "sync": sync, **r})
    for r in rows:
        r["samples_per_s"] = samples / r["seconds"]
        r["x_realtime"] = r["samples_per_s"] / rate
    result = {"device": args.device, "minutes": args.minutes, "samples": samples, "bytes": len(data), "cpu": cpu,
              "spool_dir": str(directory), "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "python": sys.version.split()[0], "rows": rows}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{args.minutes:g} min of {args.device} ({rate} samples/s) = {samples} samples, {len(data)} bytes of frames;"
          f" one CPU ({cpu});"
          f" spool in {directory}")
    print("| stage | input chunks | spool sync | samples/s | x real time (one device) | commits | packages |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['stage']} | {r['chunk']} | {r['sync']} | {r['samples_per_s']:,.0f} | {r['x_realtime']:,.0f} |"
              f" {r.get('commits', '-')} | {r.get('packages', '-')} |")
    print(f"peak RSS {result['max_rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
