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
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos.harness import (capped_spool, flapping_uplink, kill_storm, receiver_killed,  # noqa: E402
                                 small_filesystem)


def kills(args, work: Path) -> dict:
    t = time.monotonic()
    r = kill_storm(work / "kills", kills=args.kills, interval=(args.min, args.max), speed=args.speed, seed=args.seed)
    return {"scenario": "kill storm", **r.as_dict(), "speed": args.speed, "interval_s": [args.min, args.max],
            "wall_s": round(time.monotonic() - t)}


def proxy(args, work: Path) -> dict:
    r = flapping_uplink(work / "proxy", signal_s=args.minutes * 60 * 4, speed=4, seed=args.seed, rate=0.4)
    return {"scenario": "flapping uplink", "minutes": args.minutes, **r.as_dict()}


def receiver(args, work: Path) -> dict:
    r = receiver_killed(work / "receiver", kills=args.receiver_kills, signal_s=args.receiver_kills * 30 + 60,
                        speed=8, seed=args.seed)
    return {"scenario": "receiver killed mid-ingest", **r.as_dict()}


def cap(args, work: Path) -> dict:
    with small_filesystem(work / "cap" / "fs", args.disk_mb) as fs:
        r = capped_spool(work / "cap", fs, cap_mb=args.cap_mb, seconds=args.seconds, seed=args.seed)
    return {"scenario": "cap on a small disk, uplink down", "disk_mb": args.disk_mb, **r.as_dict()}


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
