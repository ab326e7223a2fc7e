#!/usr/bin/env python3
"""One gateway, N devices: what it costs and whether everything arrives, for N = 1, 10, 100, 300, 1000.

For each N, as a clinic integrator would run it, three processes on loopback:
    wearable-sim fleet --devices N --config-out   N simulated KardiaMobiles on N ptys, in real time
    wearable-gateway run                          the gateway, `kardia` uplink, sync = "full", defaults
    wearable-sim cloud                            the emulators (the Kardia API the gateway uploads to)

After a warm-up (every device streaming, the first recordings acknowledged) it measures over a
window: the gateway's CPU (its process and its packaging worker, from /proc), their RSS, the
fleet's and the emulator's CPU, and p50/p99 of sample-to-durable and sample-to-ack from the
differences of the gateway's /metrics histograms over the window (each quantile is the upper
bound of its histogram bucket). Then the fleet ends its sessions, the gateway is stopped with
SIGTERM (it packages what is left) and every device's samples are checked at the receiver: the
recordings in the Kardia emulator's store (the table its API serves) against what the fleet sent,
sample for sample, each exactly once. One line per N, or --json.

    python scripts/bench_scale.py [--devices 1,10,100,300,1000] [--duration 120] [--warmup 45] [--window 60]
    python scripts/bench_scale.py --idle   # 3 devices: the idle figures (RSS, CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulators.devices.fleet import signal_bank  # noqa: E402
from simulators.reconcile import reconcile  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages (libraries) split among the processes that map them."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def histogram(text: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(upper bounds, cumulative counts) of a histogram without labels."""
    for fam in text_string_to_metric_families(text):
        if fam.name == name:
            buckets = [(float(s.labels["le"]), s.value) for s in fam.samples if s.name.endswith("_bucket")]
            buckets.sort()
            return np.array([b for b, _ in buckets]), np.array([c for _, c in buckets])
    raise KeyError(name)


def histogram_by(text: str, name: str, label: str, value: str) -> tuple[np.ndarray, np.ndarray]:
    for fam in text_string_to_metric_families(text):
        if fam.name == name:
            buckets = [(float(s.labels["le"]), s.value) for s in fam.samples
                       if s.name.endswith("_bucket") and s.labels.get(label) == value]
            buckets.sort()
            return np.array([b for b, _ in buckets]), np.array([c for _, c in buckets])
    return np.array([]), np.array([])


def quantile(bounds: np.ndarray, counts: np.ndarray, q: float) -> float:
    """The upper bound of the bucket holding quantile q of a (delta of a) cumulative histogram."""
    if not len(counts) or counts[-1] <= 0:
        return float("nan")
    i = int(np.searchsorted(counts, q * counts[-1], side="left"))
    return float(bounds[min(i, len(bounds) - 1)])


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run_one(n: int, duration: float, warmup: float, window: float, workdir: Path, check: bool = True) -> dict:
    """One gateway with n devices: figures over the window and the receiver's check."""
    d = workdir / f"n{n}"
    d.mkdir(parents=True, exist_ok=True)
    cloud_port, status_port = free_port(), free_port()
    kardia = f"http://127.0.0.1:{cloud_port}/kardia"
    procs: list[subprocess.Popen] = []
    logs = {k: open(d / f"{k}.log", "w") for k in ("cloud", "fleet", "gateway")}
    try:
        cloud = subprocess.Popen([PY, "-m", "simulators.cli", "cloud", "--port", str(cloud_port), "--data-dir",
                                  str(d / "cloud")], stdout=logs["cloud"], stderr=subprocess.STDOUT, cwd=ROOT)
        procs.append(cloud)
        wait_http(f"http://127.0.0.1:{cloud_port}/kardia/v1/patients")
        cfg = d / "gateway.toml"
        fleet = subprocess.Popen([PY, "-m", "simulators.cli", "fleet", "--devices", str(n), "--duration",
                                  str(duration), "--seed", str(n), "--config-out", str(cfg), "--kardia-url", kardia,
                                  "--status-listen", f"127.0.0.1:{status_port}", "--spool", str(d / "spool.db"),
                                  "--json"], stdout=subprocess.PIPE, stderr=logs["fleet"], text=True, cwd=ROOT)
        procs.append(fleet)
        line = fleet.stdout.readline()
        if not line.startswith("CONFIG"):
            raise RuntimeError(f"the fleet did not start: {line!r}; see {d / 'fleet.log'}")
        gateway = subprocess.Popen([PY, "-m", "gateway.cli", "run", "--config", str(cfg)], stdout=logs["gateway"],
                                   stderr=subprocess.STDOUT, cwd=ROOT)
        procs.append(gateway)
        metrics_url = f"http://127.0.0.1:{status_port}/metrics"
        wait_http(metrics_url)
        time.sleep(warmup)
        m0 = httpx.get(metrics_url, timeout=30).text
        pids = [gateway.pid] + children(gateway.pid)
        c0 = {p: cpu_seconds(p) for p in pids}
        f0, k0, t0 = cpu_seconds(fleet.pid), cpu_seconds(cloud.pid), time.monotonic()
        rss = {"gateway": 0.0, "worker": 0.0, "worker_pss": 0.0}
        end = t0 + window
        while time.monotonic() < end:  # RSS: the largest seen in the window
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            rss["gateway"] = max(rss["gateway"], rss_mb(gateway.pid))
            for c in children(gateway.pid):
                rss["worker"] = max(rss["worker"], rss_mb(c))
                rss["worker_pss"] = max(rss["worker_pss"], pss_mb(c))
        pids = sorted(set(pids + children(gateway.pid)))
        elapsed = time.monotonic() - t0
        gw_cpu = sum(cpu_seconds(p) - c0.get(p, 0.0) for p in pids if Path(f"/proc/{p}").exists())
        main_cpu = cpu_seconds(gateway.pid) - c0[gateway.pid]
        fleet_cpu, cloud_cpu = cpu_seconds(fleet.pid) - f0, cpu_seconds(cloud.pid) - k0
        m1 = httpx.get(metrics_url, timeout=30).text
        status = httpx.get(f"http://127.0.0.1:{status_port}/api/status", timeout=30).json()
        b, c1 = histogram(m1, "wg_sample_to_durable_seconds")
        _, c0d = histogram(m0, "wg_sample_to_durable_seconds")
        ab, a1 = histogram_by(m1, "wg_sample_to_ack_seconds", "uplink", "kardia")
        _, a0 = histogram_by(m0, "wg_sample_to_ack_seconds", "uplink", "kardia")
        durable, acked = c1 - c0d, (a1 - a0) if len(a0) == len(a1) else a1
        tb, t1 = histogram(m1, "wg_ingest_tick_seconds")
        _, t0h = histogram(m0, "wg_ingest_tick_seconds")
        cb, k1 = histogram(m1, "wg_spool_commit_seconds")
        _, k0h = histogram(m0, "wg_spool_commit_seconds")
        backlog = status["spool"]["uplinks"].get("kardia", {}).get("pending", 0)
        out, _ = fleet.communicate(timeout=duration + 120)
        sent = json.loads(out.strip().splitlines()[-1])
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=300)
        result = {"devices": n, "window_s": round(elapsed, 1), "gateway_cpu_pct": round(100 * gw_cpu / elapsed, 1),
                  "daemon_cpu_pct": round(100 * main_cpu / elapsed, 1),
                  "fleet_cpu_pct": round(100 * fleet_cpu / elapsed, 1),
                  "cloud_cpu_pct": round(100 * cloud_cpu / elapsed, 1),
                  "rss_mb": round(rss["gateway"], 1), "worker_rss_mb": round(rss["worker"], 1),
                  "worker_pss_mb": round(rss["worker_pss"], 1),
                  "durable_p50_s": quantile(b, durable, 0.5), "durable_p99_s": quantile(b, durable, 0.99),
                  "durable_observations": int(durable[-1]) if len(durable) else 0,
                  "durable_histogram": {f"{b_:g}": int(c_) for b_, c_ in zip(b, durable)},
                  "tick_p50_s": quantile(tb, t1 - t0h, 0.5), "tick_p99_s": quantile(tb, t1 - t0h, 0.99),
                  "commit_p50_s": quantile(cb, k1 - k0h, 0.5), "commit_p99_s": quantile(cb, k1 - k0h, 0.99),
                  "interval_ms": status.get("ingest", {}).get("interval_ms"),
                  "ack_p50_s": quantile(ab, acked, 0.5), "ack_p99_s": quantile(ab, acked, 0.99),
                  "backlog_at_window_end": backlog, "fleet_deferred_writes": sent["deferred_writes"],
                  "gateway_exit": gateway.returncode}
        if check:
            result.update(check_receiver(d, n, sent, duration))
        return result
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        for f in logs.values():
            f.close()


def check_receiver(d: Path, n: int, sent: dict, duration: float) -> dict:
    """Every device's samples in the emulator's store: exact, each once."""
    sig = signal_bank(n, seed=n)
    per_device = int(round(duration * 300))
    patients = [line.split('"')[1] for line in (d / "gateway.toml").read_text().splitlines()
                if line.startswith("patient_id")]
    db = sqlite3.connect(f"file:{d / 'cloud' / 'kardia.db'}?mode=ro", uri=True)
    exact = dup = missing = recs = 0
    try:
        for i, patient in enumerate(patients):
            rows = db.execute("SELECT raw FROM recordings WHERE patient_id = ? ORDER BY recorded_at", (patient,))
            got = [np.frombuffer(r[0], dtype="<i4") for r in rows]
            recs += len(got)
            r = reconcile(sig.expected(i, 0, per_device), got)
            exact += r.delivered == r.sent and not r.duplicates and not r.unmatched
            dup += r.duplicates
            missing += r.missing
    finally:
        db.close()
    return {"recordings": recs, "devices_exact": exact, "samples_sent": n * per_device, "missing_samples": missing,
            "duplicate_samples": dup, "complete": exact == n}


def fsync_ms(directory: Path, n: int = 500) -> tuple[float, float, float]:
    """Median, p99 and largest time (ms) of an fdatasync of 24 KiB rewritten in place (what a commit
    of a few devices waits for with sync=full), every 10 ms: the disk's own tail, with nothing else on it."""
    path = directory / "fsync-probe"
    times = []
    block = os.urandom(24 << 10)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        for i in range(n):
            os.pwrite(fd, block, (i % 64) * len(block))
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
            time.sleep(0.01)
    finally:
        os.close(fd)
        path.unlink()
    ms = np.asarray(times) * 1000
    return float(np.median(ms)), float(np.percentile(ms, 99)), float(ms.max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="1,10,100,300,1000")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of signal per device")
    parser.add_argument("--warmup", type=float, default=45.0)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--dir", help="work directory (default: a new temporary one)")
    parser.add_argument("--idle", action="store_true", help="3 devices only: the idle figures")
    parser.add_argument("--no-check", action="store_true", help="skip the receiver check")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="bench-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ns = [3] if args.idle else [int(x) for x in args.devices.split(",")]
    load = os.getloadavg()
    rows = []
    fsync = fsync_ms(workdir)
    print(f"bench_scale: {os.cpu_count()} CPUs, load {load[0]:.2f} before; fdatasync of 24 KiB {fsync[0]:.2f} ms"
          f" median, {fsync[1]:.1f} ms p99, {fsync[2]:.0f} ms largest, in {workdir}", file=sys.stderr)
    for n in ns:
        r = run_one(n, args.duration, args.warmup, args.window, workdir, check=not args.no_check)
        rows.append(r)
        if not args.json:
            print(f"N={r['devices']:>5}  gateway {r['gateway_cpu_pct']:5.1f} % CPU ({r['daemon_cpu_pct']:.1f} %"
                  f" daemon)  RSS {r['rss_mb']:5.1f} MB (+ worker {r['worker_rss_mb']:.0f} MB, PSS {r['worker_pss_mb']:.0f})"
                  f"  durable p50/p99 {r['durable_p50_s']:.3f}/{r['durable_p99_s']:.3f} s"
                  f"  ack p50/p99 {r['ack_p50_s']:.0f}/{r['ack_p99_s']:.0f} s  backlog {r['backlog_at_window_end']}"
                  f"  fleet {r['fleet_cpu_pct']:.1f} %  cloud {r['cloud_cpu_pct']:.1f} %"
                  + (f"  complete {r['devices_exact']}/{r['devices']} ({r['missing_samples']} missing,"
                     f" {r['duplicate_samples']} duplicated)" if "complete" in r else ""), flush=True)
    if args.json:
        print(json.dumps({"load_before": load, "fdatasync_ms": fsync, "rows": rows}, indent=1))
    return 0 if all(r.get("complete", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
