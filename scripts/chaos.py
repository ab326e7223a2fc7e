#!/usr/bin/env python3
"""The chaos tier's long form: the figures of the README's durability section.

    python scripts/chaos.py kills [--kills 100] [--speed 4] [--min 1 --max 10]
    python scripts/chaos.py proxy [--minutes 10]
    python scripts/chaos.py receiver [--receiver-kills 7]
    python scripts/chaos.py cap [--cap-mb 2 --disk-mb 6]          (root: a tmpfs)
    python scripts/chaos.py all

`kills`: a KardiaMobile streams known samples at --speed x real time; the gateway is SIGKILLed
--kills times, --min..--max s apart, and restarted at once. The receiver's recordings are placed
against what the simulator sent: duplicates, corrupted (unmatched) recordings, lost samples,
those no recorded gap accounts for, and the loss per kill in seconds of signal.
`proxy`: uploads through a proxy injecting 500, 503, 429 + Retry-After, hangs, resets before
and after forwarding, truncated and garbage answers for --minutes; exactly once checked after.
`receiver`: the emulator SIGKILLed mid-ingest and restarted on its data; exactly once checked.
`cap`: max_mb on a small tmpfs with the uplink down; the largest the spool's files got.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulators.reconcile import reconcile  # noqa: E402
from tests.chain import start_simulator  # noqa: E402
from tests.chaos.harness import (CloudProcess, FaultProxy, Gateway, create_patient, gateway_toml,  # noqa: E402
                                 kill_storm, small_filesystem, spool_files, stored_recordings)


def kills(args, work: Path) -> dict:
    t = time.monotonic()
    r = kill_storm(work / "kills", kills=args.kills, interval=(args.min, args.max), speed=args.speed, seed=args.seed)
    return {"scenario": "kill storm", **r.as_dict(), "speed": args.speed, "interval_s": [args.min, args.max],
            "wall_s": round(time.monotonic() - t)}


def proxy(args, work: Path) -> dict:
    d = work / "proxy"
    d.mkdir(parents=True, exist_ok=True)
    cloud = CloudProcess(d / "cloud", logdir=d)
    cloud.start()
    duration = args.minutes * 60 * 4  # signal seconds at x4
    sim = start_simulator(duration=duration, speed=4, seed=args.seed, link=d / "kardia.pty", start=False)
    try:
        patient = create_patient(cloud.url + "/kardia")
        with FaultProxy(cloud.url, rate=0.4, seed=args.seed, hang_s=6.0) as p:
            cfg = d / "gateway.toml"
            cfg.write_text(gateway_toml(d / "spool.db", str(d / "kardia.pty"), p.url + "/kardia", patient,
                                        uplink_extra="timeout = 2"))
            gw = Gateway(cfg, d)
            gw.start()
            sim.thread.start()
            try:
                sim.join(duration + 600)
                sim.port.drain(120)
                p.healed = True
                gw.stop(300)
            finally:
                gw.close()
            counts = dict(p.counts)
        got = stored_recordings(cloud.url + "/kardia", patient)
    finally:
        sim.stop.set()
        sim.port.close()
        cloud.close()
    check = reconcile(sim.sent, got)
    return {"scenario": "flapping uplink", "minutes": args.minutes, "requests": counts, **check.as_dict(),
            "dead_letters": gw.logs().count("dead letter")}


def receiver(args, work: Path) -> dict:
    d = work / "receiver"
    d.mkdir(parents=True, exist_ok=True)
    cloud = CloudProcess(d / "cloud", logdir=d)
    cloud.start()
    rng = random.Random(args.seed)
    sim = start_simulator(duration=args.receiver_kills * 30 + 60, speed=8, seed=args.seed, link=d / "kardia.pty", start=False)
    try:
        patient = create_patient(cloud.url + "/kardia")
        cfg = d / "gateway.toml"
        cfg.write_text(gateway_toml(d / "spool.db", str(d / "kardia.pty"), cloud.url + "/kardia", patient,
                                    recording_seconds=2, uplink_extra="timeout = 3"))
        gw = Gateway(cfg, d)
        gw.start()
        sim.thread.start()
        try:
            for _ in range(args.receiver_kills):
                time.sleep(rng.uniform(1.0, 3.0))
                cloud.kill()
                time.sleep(rng.uniform(0.2, 2.0))
                cloud.start()
            sim.join(900)
            sim.port.drain(120)
            gw.stop(300)
        finally:
            gw.close()
        got = stored_recordings(cloud.url + "/kardia", patient)
    finally:
        sim.stop.set()
        sim.port.close()
        cloud.close()
    check = reconcile(sim.sent, got)
    return {"scenario": "receiver killed mid-ingest", "kills": args.receiver_kills, **check.as_dict(),
            "receiver_tracebacks": cloud.logs().count("Traceback")}


def cap(args, work: Path) -> dict:
    d = work / "cap"
    d.mkdir(parents=True, exist_ok=True)
    with small_filesystem(d / "fs", args.disk_mb) as fs:
        sim = start_simulator(duration=3600, speed=30, seed=args.seed, link=d / "kardia.pty", start=False)
        spool = fs / "spool.db"
        cfg = d / "gateway.toml"
        cfg.write_text(gateway_toml(spool, str(d / "kardia.pty"), "http://127.0.0.1:9/kardia", "p",
                                    spool_extra=f"max_mb = {args.cap_mb}"))
        gw = Gateway(cfg, d)
        gw.start()
        sim.thread.start()
        largest, alive = 0, True
        try:
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                largest = max(largest, spool_files(spool))
                alive = alive and gw.alive()
                time.sleep(0.05)
            sim.stop.set()
            gw.stop(120)
        finally:
            gw.close()
            sim.stop.set()
            sim.port.close()
    logs = gw.logs()
    return {"scenario": "cap on a small disk, uplink down", "cap_mb": args.cap_mb, "disk_mb": args.disk_mb,
            "largest_files_bytes": largest, "over_cap_bytes": largest - int(args.cap_mb * 1e6),
            "evictions": logs.count("evicted waveform package"), "stayed_up": alive,
            "tracebacks": logs.count("Traceback")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=("kills", "proxy", "receiver", "cap", "all"))
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument("--min", type=float, default=1.0)
    parser.add_argument("--max", type=float, default=10.0)
    parser.add_argument("--receiver-kills", type=int, default=7, help="times the receiver is killed")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--cap-mb", type=float, default=2.0)
    parser.add_argument("--disk-mb", type=float, default=6.0)
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the cap scenario streams")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", help="work directory (default: a new temporary one)")
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    todo = ["kills", "proxy", "receiver", "cap"] if args.scenario == "all" else [args.scenario]
    for name in todo:
        r = {"kills": kills, "proxy": proxy, "receiver": receiver, "cap": cap}[name](args, work)
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
