#!/usr/bin/env python3
"""Throughput of the gateway's data path on one core: driver -> core -> packager -> spool.

The input is an hour (by default) of simulated KardiaMobile frames, encoded before timing
starts. It is fed to the real driver and the real pipeline, writing a real SQLite spool on
disk, in chunks of one second of frames (so the spool commits once per second of signal, as
it does in real time) or in bulk chunks. The process is pinned to one CPU, spool thread
included. Prints a table (or --json) of samples per second and times real time for one
300 Hz device.

    python scripts/bench_pipeline.py [--minutes 60] [--dir /var/tmp] [--json]
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
from gateway.drivers.kardiamobile import KardiaMobileDriver  # noqa: E402
from gateway.packagers.kardia import KardiaRecordingPackager  # noqa: E402
from gateway.pipeline import DevicePipeline  # noqa: E402
from gateway.spool import AsyncSpool  # noqa: E402
from simulators.devices.kardiamobile import KardiaMobileModel  # noqa: E402
from simulators.physiology.ecg import EcgParams, EcgSynth  # noqa: E402

FS = 300


def encode(minutes: float) -> tuple[bytes, int]:
    """Frames for `minutes` of ECG, and how many samples they hold."""
    model = KardiaMobileModel(EcgSynth(FS, EcgParams(noise_mv=0.02, seed=1)), boot_id=1)
    out, samples = bytearray(), 0
    for frame in model.frames():
        if frame.kind == "samples":
            if frame.t_end > minutes * 60:
                break
            samples += len(frame.samples)
        out += frame.data
    return bytes(out), samples


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def bench_driver(data: bytes, size: int) -> float:
    """Seconds to decode everything with the driver alone."""
    parts = chunks(data, size)
    driver = KardiaMobileDriver()
    t = time.perf_counter()
    for part in parts:
        driver.feed(part, 0.0)
    return time.perf_counter() - t


async def bench_pipeline(data: bytes, size: int, sync: str, directory: Path) -> dict:
    """Seconds for driver + pipeline + spool, and what the spool did."""
    parts = chunks(data, size)
    path = directory / f"bench-{sync}-{size}.db"
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    spool = AsyncSpool(path, sync)
    pipeline = DevicePipeline("bench", [KardiaRecordingPackager("kardia", "patient", 30.0)], spool, 1.0)
    driver = KardiaMobileDriver()
    arrival = 1_700_000_000.0
    t = time.perf_counter()
    for part in parts:
        events = driver.feed(part, arrival)
        arrival = next((e.arrival for e in events if isinstance(e, SampleBlock)), arrival)
        await pipeline.handle(events)
    await pipeline.close()
    elapsed = time.perf_counter() - t
    stats = await spool.call(spool.spool.stats)
    await spool.close()
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    return {"seconds": elapsed, "packages": pipeline.counters["packages"], "commits": pipeline.counters["commits"],
            "spool_bytes": stats["file_bytes"], "samples": driver.counters["samples"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of ECG to push through (default 60)")
    parser.add_argument("--dir", default=None, help="directory for the spool files (default: the system temp dir)")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the first allowed)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})  # before any thread starts: the spool thread inherits it
    directory = Path(args.dir or tempfile.gettempdir())
    directory.mkdir(parents=True, exist_ok=True)

    data, samples = encode(args.minutes)
    second = len(data) * FS // samples  # bytes of frames per second of signal
    rows = []
    dt = bench_driver(data, second)
    rows.append({"stage": "driver only (decode, gaps)", "chunk": "1 s of frames", "sync": "-", "seconds": dt})
    for size, label in ((second, "1 s of frames"), (65536, "64 KiB")):
        for sync in ("full", "normal"):
            r = asyncio.run(bench_pipeline(data, size, sync, directory))
            assert r["samples"] == samples, "the benchmark lost samples"
            rows.append({"stage": "driver + core + packager + spool", "chunk": label, "sync": sync, **r})
    for r in rows:
        r["samples_per_s"] = samples / r["seconds"]
        r["x_realtime"] = r["samples_per_s"] / FS
    result = {"minutes": args.minutes, "samples": samples, "bytes": len(data), "cpu": cpu,
              "spool_dir": str(directory), "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "python": sys.version.split()[0], "rows": rows}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{args.minutes:g} min of 300 Hz ECG = {samples} samples, {len(data)} bytes of frames; one CPU ({cpu});"
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
